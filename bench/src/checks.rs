//! The proof that a run's requests succeeded. Load generators count
//! transport-level success: h2load calls an HTTP 200 a success even when its
//! `grpc-status` is an error, and a degraded homepage is still a 200. These
//! checks add what the response bytes and the servers' own counters say.

use anyhow::ensure;

use crate::load::{GrpcOutcome, HttpOutcome};

/// What a gRPC server counted during a run, for the method under load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CallCounts {
    /// Calls that ended OK.
    pub ok: f64,
    /// Calls, whatever their status.
    pub all: f64,
}

/// Every one of `calls` succeeded: h2load completed each with HTTP 200, the
/// DATA bytes are exactly one OK response (`response_bytes`, frame header
/// included) per call, since an error ends the call with trailers only, and
/// the server, when it counts (`counted`), counted `calls` OK calls and no
/// other.
pub fn grpc_run(
    name: &str,
    calls: u64,
    response_bytes: u64,
    outcome: &GrpcOutcome,
    counted: Option<CallCounts>,
) -> anyhow::Result<()> {
    let summary = outcome.summary;
    ensure!(
        summary.done == calls && summary.succeeded == calls && summary.failed == 0,
        "{name}: h2load completed {} of {calls} calls, {} with HTTP success, {} failed",
        summary.done,
        summary.succeeded,
        summary.failed
    );
    ensure!(
        outcome.non_200 == 0,
        "{name}: {} calls were not HTTP 200",
        outcome.non_200
    );
    let expected = calls * response_bytes;
    ensure!(
        summary.data_bytes == expected,
        "{name}: {calls} calls returned {} bytes, not {expected} ({response_bytes} per OK response): some calls ended with a gRPC error",
        summary.data_bytes,
    );
    if let Some(counted) = counted {
        ensure!(
            counted.ok == calls as f64 && counted.all == counted.ok,
            "{name} counted {} OK calls of {}, not {calls}",
            counted.ok,
            counted.all
        );
    }
    Ok(())
}

/// What the marketplace and recommendations counted during a homepage run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PageCounts {
    /// Homepages answered 200.
    pub ok: f64,
    /// Homepages answered, whatever the status.
    pub all: f64,
    /// Pages rendered without recommendations.
    pub degraded: f64,
    /// Recommend calls recommendations answered OK.
    pub recommended: f64,
}

/// Every page wrk got was whole: no status other than 2xx (wrk counts 3xx
/// as success, so the marketplace's count must show only 200s), no socket
/// error, no degraded page, and one OK Recommend per page. When wrk stops,
/// each of its `connections` may drop a page whose Recommend was already
/// answered. Returns the pages served: the marketplace's count when there is
/// one, else wrk's.
pub fn pages(
    name: &str,
    outcome: &HttpOutcome,
    connections: u32,
    counted: Option<PageCounts>,
) -> anyhow::Result<u64> {
    ensure!(
        outcome.non_2xx_3xx == 0 && outcome.socket_errors == 0,
        "{name}: {} responses were not 2xx or 3xx and {} socket errors",
        outcome.non_2xx_3xx,
        outcome.socket_errors
    );
    let Some(c) = counted else {
        return Ok(outcome.requests);
    };
    let seen = outcome.requests as f64;
    let answered = c.ok..=c.ok + f64::from(connections);
    ensure!(
        c.all == c.ok && c.ok >= seen && c.degraded == 0.0 && answered.contains(&c.recommended),
        "{name}: wrk saw {seen} pages; the marketplace served {}, {} of them 200, {} degraded; recommendations answered {} Recommend calls OK",
        c.all,
        c.ok,
        c.degraded,
        c.recommended
    );
    Ok(c.ok as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{H2loadSummary, Latency};

    const LATENCY: Latency = Latency {
        p50_us: 900.0,
        p99_us: 3000.0,
    };

    fn grpc(done: u64, data_bytes: u64, non_200: u64) -> GrpcOutcome {
        GrpcOutcome {
            summary: H2loadSummary {
                rate: 90_000.0,
                done,
                succeeded: done,
                failed: 0,
                data_bytes,
            },
            latency: LATENCY,
            non_200,
        }
    }

    #[test]
    fn a_clean_grpc_run_passes() {
        let counted = CallCounts {
            ok: 1000.0,
            all: 1000.0,
        };

        grpc_run("svc", 1000, 128, &grpc(1000, 128_000, 0), Some(counted)).expect("all OK");
        grpc_run("bare", 1000, 128, &grpc(1000, 128_000, 0), None).expect("all OK");
    }

    #[test]
    fn a_grpc_error_behind_http_200_is_caught_by_the_bytes() {
        // One call of 1000 ended INVALID_ARGUMENT: trailers only, no message.
        let err = grpc_run("bare", 1000, 128, &grpc(1000, 127_872, 0), None)
            .expect_err("one call carried no message");

        assert!(
            err.to_string()
                .contains("some calls ended with a gRPC error"),
            "{err}"
        );
    }

    #[test]
    fn the_servers_own_count_must_match() {
        let counted = CallCounts {
            ok: 999.0,
            all: 1000.0,
        };

        let err = grpc_run("svc", 1000, 128, &grpc(1000, 128_000, 0), Some(counted))
            .expect_err("the server saw a failure");

        assert!(
            err.to_string().contains("counted 999 OK calls of 1000"),
            "{err}"
        );
    }

    #[test]
    fn unfinished_or_non_200_calls_fail() {
        assert!(grpc_run("bare", 1000, 128, &grpc(990, 126_720, 0), None).is_err());
        assert!(grpc_run("bare", 1000, 128, &grpc(1000, 128_000, 3), None).is_err());
    }

    fn http(requests: u64, non_2xx_3xx: u64) -> HttpOutcome {
        HttpOutcome {
            rate: 30_000.0,
            requests,
            latency: LATENCY,
            non_2xx_3xx,
            socket_errors: 0,
        }
    }

    fn counts(ok: f64, degraded: f64, recommended: f64) -> PageCounts {
        PageCounts {
            ok,
            all: ok,
            degraded,
            recommended,
        }
    }

    #[test]
    fn whole_pages_pass_and_the_servers_count_is_used() {
        let served = pages("web", &http(1000, 0), 64, Some(counts(1010.0, 0.0, 1012.0)))
            .expect("every page whole");

        assert_eq!(served, 1010);
        assert_eq!(
            pages("bare", &http(1000, 0), 64, None).expect("clean"),
            1000
        );
    }

    #[test]
    fn a_degraded_page_fails_though_it_is_a_200() {
        let err = pages("web", &http(1000, 0), 64, Some(counts(1000.0, 1.0, 999.0)))
            .expect_err("one page had no recommendations");

        assert!(err.to_string().contains("1 degraded"), "{err}");
    }

    #[test]
    fn pages_without_their_recommend_call_or_with_errors_fail() {
        assert!(pages("web", &http(1000, 0), 64, Some(counts(1000.0, 0.0, 900.0))).is_err());
        assert!(pages("web", &http(1000, 0), 64, Some(counts(1000.0, 0.0, 1100.0))).is_err());
        assert!(pages("web", &http(1000, 2), 64, None).is_err());
        let mut redirected = counts(1000.0, 0.0, 1000.0);
        redirected.all = 1005.0;
        assert!(pages("web", &http(1000, 0), 64, Some(redirected)).is_err());
    }
}
