//! The metrics of reloads, by source, named as Prometheus names its own
//! (`prometheus_config_last_reload_successful`, ...): whether the last
//! reload succeeded, when the last one that did succeeded, and how many
//! failed. The sources are few and fixed (the catalog, the certificates),
//! so the label set is bounded.

use std::{
    sync::atomic::AtomicU64,
    time::{SystemTime, UNIX_EPOCH},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// The label of a reload's source.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

/// The reload metrics of one service. Cloning shares them.
#[derive(Clone, Debug, Default)]
pub struct ReloadMetrics {
    successful: Family<SourceLabel, Gauge>,
    success_time: Family<SourceLabel, Gauge<f64, AtomicU64>>,
    failures: Family<SourceLabel, Counter>,
}

impl ReloadMetrics {
    /// Registers `{prefix}_last_reload_successful`,
    /// `{prefix}_last_reload_success_timestamp_seconds` and
    /// `{prefix}_reload_failures` (a counter: `_total`).
    pub fn register(registry: &mut Registry, prefix: &str) -> Self {
        let metrics = Self::default();
        registry.register(
            format!("{prefix}_last_reload_successful"),
            "Whether the last reload of each source succeeded (1) or kept the previous (0)",
            metrics.successful.clone(),
        );
        registry.register(
            format!("{prefix}_last_reload_success_timestamp_seconds"),
            "When each source was last loaded successfully, at start or by a reload",
            metrics.success_time.clone(),
        );
        registry.register(
            format!("{prefix}_reload_failures"),
            "Reloads of each source that failed and kept what was served",
            metrics.failures.clone(),
        );
        metrics
    }

    /// `source` was loaded, at start or by a reload.
    pub fn succeeded(&self, source: &'static str) {
        let label = SourceLabel { source };
        self.successful.get_or_create(&label).set(1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        self.success_time.get_or_create(&label).set(now);
    }

    /// A reload of `source` failed; what was served stays.
    pub fn failed(&self, source: &'static str) {
        let label = SourceLabel { source };
        self.successful.get_or_create(&label).set(0);
        self.failures.get_or_create(&label).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::encode;

    #[test]
    fn a_failure_after_a_success_keeps_the_success_time() {
        let mut registry = Registry::default();
        let metrics = ReloadMetrics::register(&mut registry, "test");

        metrics.succeeded("catalog");
        metrics.failed("catalog");
        let text = encode(&registry).expect("encodes");

        assert!(
            text.contains("test_last_reload_successful{source=\"catalog\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("test_reload_failures_total{source=\"catalog\"} 1"),
            "{text}"
        );
        let time = text
            .lines()
            .find(|line| line.starts_with("test_last_reload_success_timestamp_seconds{"))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<f64>().ok())
            .expect("a success time");
        assert!(time > 1.7e9, "{time}");
    }
}
