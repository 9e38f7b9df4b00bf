//! How many retries the client may add to the load: a share of the calls
//! made, plus a small floor per second, as linkerd's retry budgets (and
//! Finagle's before them) do it. When every replica is sick, retries would
//! otherwise double the load on them just when they can least take it.
//!
//! Owned, in place of tower's `TpsBudget` (tower 0.5.3 checked), for what it
//! does differently (the conformance tests below run the same cases against
//! both, so an upgrade shows any change):
//! - the ratio is exact: `TpsBudget` withdraws a whole number of deposits
//!   per retry, `1 / ratio` rounded down, so `--retry-budget-ratio 0.4`
//!   allows 0.5 retries per call and 0.6 allows one per call;
//! - the floor is per second: `TpsBudget` holds `min_per_second × ttl`
//!   retries in reserve at once, so a client that has made no calls may
//!   retry a whole window's worth in a burst (100 with our defaults) just
//!   when every replica is down;
//! - deposits are capped (ten seconds of the floor, or 100 retries) rather
//!   than expiring after a window, and no lock or clock read is taken per
//!   call (`TpsBudget` locks a mutex, and panics if it is poisoned).

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

/// Thousandths of a retry.
const MILLI: u64 = 1000;

/// The budget: each call deposits `ratio` of a retry, each retry withdraws
/// one; `min_per_second` retries a second are allowed even with nothing
/// deposited (so that a quiet client can still retry). Deposits are capped
/// at ten seconds' worth of the floor or 100 retries, whichever is more, so
/// that a long quiet spell does not save up a burst.
#[derive(Debug)]
pub struct RetryBudget {
    /// Per call, in thousandths of a retry.
    deposit: u64,
    cap: u64,
    min_per_second: u64,
    /// In thousandths of a retry.
    balance: AtomicU64,
    started: Instant,
    /// The second (since `started`) the floor is counted for, and the
    /// retries taken from it, packed as `second << 32 | taken`.
    floor: AtomicU64,
}

impl RetryBudget {
    /// A budget of `ratio` retries per call (0.2: one retry per five
    /// calls) and at least `min_per_second` retries a second.
    pub fn new(ratio: f64, min_per_second: u32) -> Self {
        let deposit = (ratio.clamp(0.0, 1000.0) * MILLI as f64).round() as u64;
        let min_per_second = u64::from(min_per_second);
        Self {
            deposit,
            cap: (10 * min_per_second).max(100) * MILLI,
            min_per_second,
            balance: AtomicU64::new(0),
            started: Instant::now(),
            floor: AtomicU64::new(0),
        }
    }

    /// Records a call (a first attempt).
    pub fn deposit(&self) {
        let cap = self.cap;
        let deposit = self.deposit;
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |balance| {
                (balance < cap).then(|| (balance + deposit).min(cap))
            });
    }

    /// Takes one retry from the budget, if there is one.
    pub fn try_withdraw(&self) -> bool {
        let from_balance = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |balance| {
                balance.checked_sub(MILLI)
            })
            .is_ok();
        from_balance || self.try_floor()
    }

    fn try_floor(&self) -> bool {
        let second = self.started.elapsed().as_secs() & 0xffff_ffff;
        self.floor
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |packed| {
                let (counted, taken) = (packed >> 32, packed & 0xffff_ffff);
                let taken = if counted == second { taken } else { 0 };
                (taken < self.min_per_second).then_some(second << 32 | (taken + 1))
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn withdrawals(budget: &RetryBudget) -> usize {
        std::iter::from_fn(|| budget.try_withdraw().then_some(()))
            .take(10_000)
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_share_of_the_calls_plus_a_floor_per_second() {
        let budget = RetryBudget::new(0.2, 10);
        for _ in 0..100 {
            budget.deposit();
        }

        // 20 from the 100 calls, 10 from this second's floor.
        assert_eq!(withdrawals(&budget), 30);

        // The next second brings the floor back, and only the floor.
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        assert_eq!(withdrawals(&budget), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_spell_does_not_save_up_a_burst() {
        let budget = RetryBudget::new(0.2, 10);
        for _ in 0..100_000 {
            budget.deposit();
        }

        // Capped at 100 retries, plus the floor.
        assert_eq!(withdrawals(&budget), 110);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_budget_allows_only_the_floor() {
        let budget = RetryBudget::new(0.0, 0);
        for _ in 0..100 {
            budget.deposit();
        }

        assert_eq!(withdrawals(&budget), 0);
    }

    /// What tower's `TpsBudget` allows in the same case: deposits last its
    /// 10 s window, and `min_per_second` is its reserve per second of it.
    fn tower_withdrawals(ratio: f32, min_per_second: u32, calls: usize) -> usize {
        use tower::retry::budget::{Budget as _, TpsBudget};
        let budget = TpsBudget::new(std::time::Duration::from_secs(10), min_per_second, ratio);
        for _ in 0..calls {
            budget.deposit();
        }
        std::iter::from_fn(|| budget.withdraw().then_some(()))
            .take(10_000)
            .count()
    }

    fn our_withdrawals(ratio: f64, min_per_second: u32, calls: usize) -> usize {
        let budget = RetryBudget::new(ratio, min_per_second);
        for _ in 0..calls {
            budget.deposit();
        }
        withdrawals(&budget)
    }

    /// The same cases against both budgets: (ratio, floor, calls) and the
    /// retries each allows. Where the two differ, the module docs say why.
    #[tokio::test(start_paused = true)]
    async fn conformance_with_towers_tps_budget() {
        let cases: [(f32, u32, usize, usize, usize); 6] = [
            // Ratios that are whole fractions: the same.
            (0.2, 0, 100, 20, 20),
            (0.5, 0, 100, 50, 50),
            (1.0, 0, 50, 50, 50),
            // Other ratios: tower rounds 1 / ratio down.
            (0.4, 0, 100, 40, 50),
            (0.6, 0, 100, 60, 100),
            // No calls yet: our floor is this second's, tower's the window's.
            (0.2, 10, 0, 10, 100),
        ];
        for (ratio, floor, calls, ours, towers) in cases {
            assert_eq!(
                (
                    our_withdrawals(f64::from(ratio), floor, calls),
                    tower_withdrawals(ratio, floor, calls)
                ),
                (ours, towers),
                "ratio {ratio}, floor {floor}, {calls} calls: (ours, tower's)"
            );
        }
    }
}
