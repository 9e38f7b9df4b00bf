//! Well-behaved clients that measure what an attack or an overload leaves
//! to everyone else: calls made back to back on a connection of their own,
//! each timed and judged.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::load::{Latency, percentiles};

/// The calls a probe made.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// Latency of each successful call, in microseconds.
    pub ok: Vec<u64>,
    /// Calls that failed.
    pub failed: u64,
}

impl Tally {
    /// Calls made.
    pub fn calls(&self) -> u64 {
        self.ok.len() as u64 + self.failed
    }

    /// The share of calls that succeeded (1 when none was made).
    pub fn ok_ratio(&self) -> f64 {
        match self.calls() {
            0 => 1.0,
            calls => self.ok.len() as f64 / calls as f64,
        }
    }

    /// Median and 99th percentile of the successful calls.
    pub fn latency(&self) -> Option<Latency> {
        percentiles(self.ok.clone())
    }

    /// The slowest successful call, in microseconds.
    pub fn max_us(&self) -> u64 {
        self.ok.iter().copied().max().unwrap_or(0)
    }
}

/// Tells probes to stop; cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Probes stop after their call in progress.
    pub fn now(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Makes `call` back to back, `pause` apart, until `calls` were made or
/// `stop` is set; `call` says whether it succeeded.
pub async fn repeat<F, Fut>(mut call: F, pause: Duration, calls: usize, stop: Stop) -> Tally
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut tally = Tally::default();
    while tally.calls() < calls as u64 && !stop.is_set() {
        let started = Instant::now();
        if call().await {
            tally
                .ok
                .push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        } else {
            tally.failed += 1;
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_probe_counts_and_times_its_calls() {
        let mut n = 0;
        let tally = repeat(
            || {
                n += 1;
                let ok = n % 4 != 0;
                async move { ok }
            },
            Duration::ZERO,
            8,
            Stop::default(),
        )
        .await;

        assert_eq!(tally.calls(), 8);
        assert_eq!(tally.failed, 2);
        assert!((tally.ok_ratio() - 0.75).abs() < 1e-9);
        assert!(tally.latency().is_some());
    }

    #[tokio::test]
    async fn a_stopped_probe_makes_no_more_calls() {
        let stop = Stop::default();
        stop.now();

        let tally = repeat(|| async { true }, Duration::ZERO, 100, stop).await;

        assert_eq!(tally.calls(), 0);
        assert_eq!(tally.ok_ratio(), 1.0);
    }
}
