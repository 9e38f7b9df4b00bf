//! hyper's timer for every listener: tokio's sleeps, and a cheap clock for
//! what hyper reads on every frame.
//!
//! With HTTP/2 keep-alive on, hyper notes the time of every frame it reads
//! (`Timer::now`), to know how long the peer has been silent: about four
//! clock reads per Recommend call. The kernel's coarse clock (the time of
//! its last tick, also read through the vDSO) costs a fraction of the
//! precise monotonic one, and keep-alive counts in seconds
//! (docs/benchmarks/history.md, "hyper's clock").
//!
//! Owned around hyper-util's `TokioTimer` (hyper-util 0.1.21 checked), whose
//! sleeps it keeps; only `now` is ours, as hyper-util has no cheaper clock.

use std::{
    pin::Pin,
    sync::OnceLock,
    time::{Duration, Instant},
};

use hyper::rt::{Sleep, Timer};
use hyper_util::rt::TokioTimer;

/// A [`TokioTimer`] whose `now` is [`coarse_now`].
#[derive(Clone, Debug, Default)]
pub struct CoarseTimer(TokioTimer);

impl CoarseTimer {
    /// The timer; sleeps are tokio's.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.0.sleep(duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.0.sleep_until(deadline)
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        self.0.reset(sleep, new_deadline);
    }

    fn now(&self) -> Instant {
        coarse_now()
    }
}

/// Now, within one kernel tick (1 to 10 ms) of `Instant::now()`: the
/// kernel's coarse monotonic clock, as an offset from a first reading of
/// both clocks. Monotonic, like the clock it reads.
pub fn coarse_now() -> Instant {
    static EPOCH: OnceLock<(Instant, coarsetime::Instant)> = OnceLock::new();
    let &(precise, coarse) = EPOCH.get_or_init(|| {
        (
            Instant::now(),
            coarsetime::Instant::now_without_cache_update(),
        )
    });
    // Not `coarsetime::Instant::now`, which also stores the reading in a
    // global for `recent()`, which nothing here uses.
    let now = coarsetime::Instant::now_without_cache_update();
    precise + Duration::from(now.duration_since(coarse))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel ticks at 100 to 1,000 Hz: one tick is at most 10 ms.
    const TICK: Duration = Duration::from_millis(10);

    #[test]
    fn the_coarse_clock_keeps_to_the_precise_one_within_a_tick() {
        for _ in 0..3 {
            let before = Instant::now();
            let coarse = coarse_now();
            let after = Instant::now();
            assert!(coarse + TICK >= before, "{coarse:?} lags {before:?}");
            assert!(coarse <= after + TICK, "{coarse:?} leads {after:?}");
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    #[test]
    fn the_coarse_clock_advances_and_never_goes_back() {
        let start = coarse_now();
        let mut last = start;
        while last < start + 3 * TICK {
            let now = coarse_now();
            assert!(now >= last, "{now:?} before {last:?}");
            last = now;
        }
    }
}
