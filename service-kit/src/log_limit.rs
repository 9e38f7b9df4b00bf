//! Log lines that a client can cause, a bounded number a second.
//!
//! Each gRPC call and each web request writes a line, and a call that ends
//! with an error a client caused (an unknown method, a bad argument, a page
//! that does not exist) writes it at INFO. A client sending nothing but
//! such calls would otherwise have a line written per call: hundreds of
//! thousands a second, costing more than the calls and drowning what an
//! operator needs to see. [`LogLimiter`] lets a few lines a second through
//! at each level and moves the rest down to DEBUG (so `RUST_LOG=debug`
//! still shows every call); the next line let through says how many were
//! moved (`held_back`). The metrics still count every call.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use tracing::Level;

/// At most a number of lines a second, and how many were held back.
#[derive(Debug)]
pub struct LineBudget {
    per_second: u32,
    started: Instant,
    /// The current second since `started` (high 32 bits) and the lines
    /// written in it (low 32 bits), in one word so that both change at once.
    window: AtomicU64,
    /// Lines held back since the last one written.
    held: AtomicU64,
}

impl LineBudget {
    /// A budget of `per_second` lines a second.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            started: Instant::now(),
            window: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// Takes a line from the budget: `Some` with the number of lines held
    /// back since the last one taken when it may be written, else `None`
    /// (and it counts as held back).
    pub fn take(&self) -> Option<u64> {
        self.take_at(self.started.elapsed())
    }

    fn take_at(&self, since_start: Duration) -> Option<u64> {
        let second = since_start.as_secs().min(u64::from(u32::MAX));
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (window, used) = (current >> 32, current & u64::from(u32::MAX));
            let next = if second > window {
                (second << 32) | 1
            } else if used < u64::from(self.per_second) {
                current + 1
            } else {
                self.held.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(self.held.swap(0, Ordering::Relaxed)),
                Err(actual) => current = actual,
            }
        }
    }
}

/// A [`LineBudget`] for each of INFO, WARN and ERROR, for the lines of one
/// source (one side's calls, one server's requests): a flood of client
/// errors at INFO holds back no ERROR line.
#[derive(Debug)]
pub struct LogLimiter {
    info: LineBudget,
    warn: LineBudget,
    error: LineBudget,
}

impl LogLimiter {
    /// Lines let through a second at each level.
    pub const LINES_PER_SECOND: u32 = 10;

    /// A limiter with a fresh budget at each level.
    pub fn new() -> Self {
        Self {
            info: LineBudget::new(Self::LINES_PER_SECOND),
            warn: LineBudget::new(Self::LINES_PER_SECOND),
            error: LineBudget::new(Self::LINES_PER_SECOND),
        }
    }

    /// The level at which to write a line that wants `level`, and how many
    /// lines that wanted `level` were written at DEBUG since the last one
    /// written at `level` (when any): `level` itself within its budget,
    /// DEBUG beyond it. DEBUG and TRACE lines are never limited.
    pub fn level(&self, level: Level) -> (Level, Option<u64>) {
        self.level_with(level, LineBudget::take)
    }

    #[cfg(test)]
    fn level_at(&self, level: Level, since_start: Duration) -> (Level, Option<u64>) {
        self.level_with(level, |budget| budget.take_at(since_start))
    }

    fn level_with(
        &self,
        level: Level,
        take: impl FnOnce(&LineBudget) -> Option<u64>,
    ) -> (Level, Option<u64>) {
        let budget = match level {
            Level::INFO => &self.info,
            Level::WARN => &self.warn,
            Level::ERROR => &self.error,
            _ => return (level, None),
        };
        match take(budget) {
            Some(held_back) => (level, (held_back > 0).then_some(held_back)),
            None => (Level::DEBUG, None),
        }
    }
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new()
    }
}

/// `tracing::event!` at a level known only at run time, such as the one
/// [`LogLimiter::level`] gives: the macro wants a constant level, so this
/// writes one call site per level and picks one.
#[macro_export]
macro_rules! event_at {
    ($level:expr, $($event:tt)+) => {
        match $level {
            ::tracing::Level::ERROR => ::tracing::event!(::tracing::Level::ERROR, $($event)+),
            ::tracing::Level::WARN => ::tracing::event!(::tracing::Level::WARN, $($event)+),
            ::tracing::Level::INFO => ::tracing::event!(::tracing::Level::INFO, $($event)+),
            ::tracing::Level::DEBUG => ::tracing::event!(::tracing::Level::DEBUG, $($event)+),
            _ => ::tracing::event!(::tracing::Level::TRACE, $($event)+),
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds)
    }

    #[test]
    fn a_budget_lets_its_lines_through_each_second_and_counts_the_rest() {
        let budget = LineBudget::new(3);
        let first: Vec<_> = (0..5).map(|_| budget.take_at(at(0.1))).collect();
        assert_eq!(first, [Some(0), Some(0), Some(0), None, None]);
        // The same second: still nothing, still counted.
        assert_eq!(budget.take_at(at(0.9)), None);
        // The next second: the first line says three were held back.
        assert_eq!(budget.take_at(at(1.0)), Some(3));
        assert_eq!(budget.take_at(at(1.5)), Some(0));
        assert_eq!(budget.take_at(at(1.6)), Some(0));
        assert_eq!(budget.take_at(at(1.7)), None);
        // A quiet stretch, then a line: only what was held back since.
        assert_eq!(budget.take_at(at(60.0)), Some(1));
    }

    #[test]
    fn a_late_reading_of_the_clock_counts_against_the_current_second() {
        let budget = LineBudget::new(1);
        assert_eq!(budget.take_at(at(5.0)), Some(0));
        // A thread that read the clock before the second turned.
        assert_eq!(budget.take_at(at(4.9)), None);
        assert_eq!(budget.take_at(at(6.0)), Some(1));
    }

    #[test]
    fn a_budget_shared_by_threads_lets_exactly_its_lines_through() {
        let budget = LineBudget::new(10);
        let written: u64 = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        (0..1_000)
                            .filter(|_| budget.take_at(at(0.5)).is_some())
                            .count() as u64
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|thread| thread.join().expect("no panic"))
                .sum()
        });
        assert_eq!(written, 10);
        assert_eq!(budget.take_at(at(1.0)), Some(3_990));
    }

    #[test]
    fn each_level_has_its_own_budget_and_debug_is_never_limited() {
        let limiter = LogLimiter::new();
        let level = |level| limiter.level_at(level, at(0.5));
        for _ in 0..LogLimiter::LINES_PER_SECOND {
            assert_eq!(level(Level::INFO), (Level::INFO, None));
        }
        assert_eq!(level(Level::INFO), (Level::DEBUG, None));
        assert_eq!(level(Level::INFO), (Level::DEBUG, None));
        assert_eq!(level(Level::ERROR), (Level::ERROR, None));
        assert_eq!(level(Level::WARN), (Level::WARN, None));
        for _ in 0..100 {
            assert_eq!(level(Level::DEBUG), (Level::DEBUG, None));
        }
        assert_eq!(
            limiter.level_at(Level::INFO, at(1.0)),
            (Level::INFO, Some(2))
        );
    }
}
