//! The bounds every scenario checks: memory, fairness to well-behaved
//! clients, attackers' connections closed, probes answered.

use super::*;

impl Siege {
    /// Checks that a well-behaved client was served and health answered
    /// in time while an attack went on.
    pub(super) fn check_fairness(&mut self, scenario: &'static str, calls: &Tally, health: &Tally) {
        self.check(
            scenario,
            calls.ok_ratio() >= MIN_FAIR_SHARE,
            format!(
                "a client on another connection: {} of {} calls OK (≥ {:.0} %), p99 {}",
                calls.ok.len(),
                calls.calls(),
                MIN_FAIR_SHARE * 100.0,
                p99(calls)
            ),
        );
        self.check(
            scenario,
            health.failed == 0,
            format!(
                "health: {} of {} checks SERVING",
                health.ok.len(),
                health.calls()
            ),
        );
        self.check_latency(
            scenario,
            Duration::from_micros(health.max_us()) < MAX_HEALTH_LATENCY,
            format!(
                "health: slowest answer {} (< {})",
                micros(health.max_us() as f64),
                micros(MAX_HEALTH_LATENCY.as_micros() as f64)
            ),
        );
    }

    pub(super) fn check_closures(
        &mut self,
        scenario: &'static str,
        listener: &str,
        closures: Closures,
        timeout: Duration,
    ) {
        self.check(
            scenario,
            closures.closed == closures.attempted,
            format!(
                "{listener}: {} of {} connections closed, the last after {:.1} s (timeout {} s)",
                closures.closed,
                closures.attempted,
                closures.longest.as_secs_f64(),
                timeout.as_secs()
            ),
        );
    }

    /// Checks that every health probe was answered within the kubelet's
    /// timeout, and reports their p99.
    pub(super) fn check_probes(&mut self, scenario: &'static str, probes: &[(&str, &Tally)]) {
        for (name, tally) in probes {
            self.check(
                scenario,
                tally.failed == 0,
                format!(
                    "{name}: {} of {} probes answered within {} s, p99 {}, slowest {}",
                    tally.ok.len(),
                    tally.calls(),
                    PROBE_TIMEOUT.as_secs(),
                    p99(tally),
                    micros(tally.max_us() as f64)
                ),
            );
        }
    }

    /// Checks the peak RSS of `server` against [`MAX_PEAK_RSS`].
    pub(super) fn check_memory(
        &mut self,
        scenario: &'static str,
        server: &Server,
    ) -> anyhow::Result<u64> {
        let peak = server.usage(self.ticks)?.peak_rss;
        self.check(
            scenario,
            peak <= MAX_PEAK_RSS,
            format!(
                "{} peak RSS {} (≤ {})",
                server.name(),
                mib(peak),
                mib(MAX_PEAK_RSS)
            ),
        );
        Ok(peak)
    }
}
