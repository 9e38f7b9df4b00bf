//! The load generators: h2load for gRPC (HTTP/2 POSTs carrying one framed
//! request message) in [`h2load`], and wrk for HTTP/1.1 pages in [`wrk`], run
//! as processes, with their reports parsed.

mod h2load;
mod wrk;

pub use h2load::{GrpcLoad, GrpcOutcome, H2loadSummary, h2load, parse_h2load, parse_h2load_log};
pub use wrk::{HttpLoad, HttpOutcome, parse_wrk, wrk};

/// Median and 99th percentile latency.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Latency {
    /// 50th percentile, in microseconds.
    pub p50_us: f64,
    /// 99th percentile, in microseconds.
    pub p99_us: f64,
}

/// The nearest-rank median and 99th percentile of `micros`.
pub fn percentiles(mut micros: Vec<u64>) -> Option<Latency> {
    if micros.is_empty() {
        return None;
    }
    micros.sort_unstable();
    let rank = |p: f64| {
        let index = ((p * micros.len() as f64).ceil() as usize).clamp(1, micros.len()) - 1;
        micros[index] as f64
    };
    Some(Latency {
        p50_us: rank(0.50),
        p99_us: rank(0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let latency = percentiles((1..=1000).rev().collect()).expect("samples");

        assert_eq!(
            latency,
            Latency {
                p50_us: 500.0,
                p99_us: 990.0
            }
        );
        assert_eq!(
            percentiles(vec![7]),
            Some(Latency {
                p50_us: 7.0,
                p99_us: 7.0
            })
        );
        assert_eq!(percentiles(Vec::new()), None);
    }
}
