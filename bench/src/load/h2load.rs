//! h2load: a fixed number of gRPC calls, with its report and its log of
//! every request parsed.

use std::path::Path;

use anyhow::Context;

use super::{Latency, percentiles};
use crate::process::pinned;

/// A fixed number of gRPC calls made by h2load.
#[derive(Clone, Debug)]
pub struct GrpcLoad<'a> {
    /// `http://host:port/package.Service/Method`.
    pub url: String,
    /// The request body: one length-prefixed gRPC message.
    pub body: &'a Path,
    /// Calls to make in all.
    pub calls: u64,
    /// HTTP/2 connections.
    pub connections: u32,
    /// Concurrent streams per connection.
    pub streams: u32,
    /// Where h2load writes one line per call.
    pub log: &'a Path,
    /// The CPUs h2load runs on (see [`crate::process::pinned`]).
    pub cpus: Option<&'a str>,
}

/// What h2load saw.
#[derive(Clone, Debug, PartialEq)]
pub struct GrpcOutcome {
    /// h2load's summary.
    pub summary: H2loadSummary,
    /// Per-call latency, from `--log-file`.
    pub latency: Latency,
    /// Calls whose HTTP status was not 200 (or that failed), from the log.
    pub non_200: u64,
}

/// The figures of h2load's summary this suite uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct H2loadSummary {
    /// Calls per second over the run.
    pub rate: f64,
    /// Calls completed.
    pub done: u64,
    /// Calls answered with a 2xx or 3xx HTTP status. An HTTP 200 may still
    /// carry a gRPC error: see the suite's other checks.
    pub succeeded: u64,
    /// Calls failed, errored or timed out.
    pub failed: u64,
    /// Response body bytes (DATA frames) received.
    pub data_bytes: u64,
}

/// Runs h2load; fails if it does not run or reports nothing.
pub async fn h2load(load: &GrpcLoad<'_>) -> anyhow::Result<GrpcOutcome> {
    let output = pinned("h2load", load.cpus)
        .args(["-n", &load.calls.to_string()])
        .args(["-c", &load.connections.to_string()])
        .args(["-m", &load.streams.to_string()])
        .args(["-t", "1"])
        .arg("-d")
        .arg(load.body)
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg("--log-file")
        .arg(load.log)
        .arg(&load.url)
        .output()
        .await
        .context("cannot run h2load; install it with `apt-get install nghttp2-client`")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = parse_h2load(&stdout).with_context(|| {
        format!(
            "h2load against {} gave no summary ({}):\n{stdout}{}",
            load.url,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let log = std::fs::read_to_string(load.log)
        .with_context(|| format!("cannot read h2load's log {}", load.log.display()))?;
    let (durations, non_200) = parse_h2load_log(&log)
        .with_context(|| format!("unreadable h2load log {}", load.log.display()))?;
    let latency = percentiles(durations)
        .with_context(|| format!("h2load logged no calls in {}", load.log.display()))?;
    Ok(GrpcOutcome {
        summary,
        latency,
        non_200,
    })
}

/// Parses h2load's summary: the `finished in`, `requests:` and `traffic:`
/// lines.
pub fn parse_h2load(stdout: &str) -> Option<H2loadSummary> {
    let finished = stdout
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))?;
    let rate = finished
        .split(", ")
        .find_map(|part| part.strip_suffix(" req/s"))?
        .parse()
        .ok()?;
    let requests = stdout.lines().find_map(|l| l.strip_prefix("requests: "))?;
    let count = |what: &str| -> Option<u64> {
        requests
            .split(", ")
            .find_map(|part| part.strip_suffix(what))?
            .trim()
            .parse()
            .ok()
    };
    let traffic = stdout.lines().find_map(|l| l.strip_prefix("traffic: "))?;
    // "... headers (space savings 95.77%), 12.94MB (13570692) data"
    let data = traffic.rsplit_once(", ")?.1.strip_suffix(" data")?;
    let data_bytes = data.split_once('(')?.1.split_once(')')?.0.parse().ok()?;
    Some(H2loadSummary {
        rate,
        done: count(" done")?,
        succeeded: count(" succeeded")?,
        failed: count(" failed")? + count(" errored")? + count(" timeout")?,
        data_bytes,
    })
}

/// Parses h2load's `--log-file`: tab-separated start time (µs since the
/// epoch), HTTP status (-1 when the stream failed) and duration (µs).
/// Returns the durations and the number of calls whose status was not 200.
pub fn parse_h2load_log(log: &str) -> Option<(Vec<u64>, u64)> {
    let mut durations = Vec::new();
    let mut non_200 = 0;
    for line in log.lines().filter(|line| !line.is_empty()) {
        let mut columns = line.split('\t');
        let _start = columns.next()?;
        let status: i32 = columns.next()?.parse().ok()?;
        let duration: u64 = columns.next()?.parse().ok()?;
        if status != 200 {
            non_200 += 1;
        }
        durations.push(duration);
    }
    Some((durations, non_200))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H2LOAD: &str = "\
starting benchmark...
spawning thread #0: 8 total client(s). 100000 total requests
progress: 100% done

finished in 1.05s, 95404.92 req/s, 15.17MB/s
requests: 100000 total, 100000 started, 99990 done, 99980 succeeded, 10 failed, 3 errored, 2 timeout
status codes: 100000 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 15.90MB (16671636) total, 293.42KB (300464) headers (space savings 95.77%), 12.94MB (13570692) data
                     min         max         mean         sd        +/- sd
time for request:       28us     12.21ms      1.17ms       622us    80.44%
";

    #[test]
    fn h2load_summary_is_parsed() {
        let summary = parse_h2load(H2LOAD).expect("a summary");

        assert_eq!(
            summary,
            H2loadSummary {
                rate: 95404.92,
                done: 99990,
                succeeded: 99980,
                failed: 15,
                data_bytes: 13570692,
            }
        );
        assert_eq!(parse_h2load("connect: Connection refused\n"), None);
    }

    #[test]
    fn h2load_log_gives_durations_and_failed_streams() {
        let log =
            "1795247373063225\t200\t584\n1795247373063218\t-1\t652\n1795247373063220\t200\t651\n";

        let (durations, non_200) = parse_h2load_log(log).expect("a valid log");

        assert_eq!(durations, [584, 652, 651]);
        assert_eq!(non_200, 1);
        assert_eq!(parse_h2load_log("17952\tOK\t1\n"), None);
    }
}
