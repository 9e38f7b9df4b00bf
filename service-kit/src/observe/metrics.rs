//! The metrics observer: counts and times every gRPC call.

use super::{RpcEnd, RpcObserver};
use crate::metrics::RpcMetrics;

/// Records every call in [`RpcMetrics`]: the in-flight gauge while it runs,
/// then the count by method and status and the latency by method.
#[derive(Clone, Debug)]
pub struct RpcMeter {
    metrics: RpcMetrics,
}

impl RpcMeter {
    /// Records into `metrics`.
    pub fn new(metrics: RpcMetrics) -> Self {
        Self { metrics }
    }
}

impl RpcObserver for RpcMeter {
    fn on_start(&self) {
        self.metrics.started();
    }

    fn on_end(&self, end: &RpcEnd<'_>) {
        self.metrics.finished(end.method, end.code, end.elapsed);
    }
}
