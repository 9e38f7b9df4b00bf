//! Calls that find no replica to take them: failed at once with
//! UNAVAILABLE, so that the caller answers without them (a page renders
//! degraded) rather than waiting a deadline on a replica already known to
//! be out. Counted; and the pool's passing into and out of "no replica in
//! rotation" is logged once each way, however many calls meet it.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::counter::Counter;
use tonic::Status;

use super::ReplicaPool;

/// The calls failed for want of a replica, and whether every member is
/// out of rotation now (as the last call found it).
#[derive(Debug, Default)]
pub(super) struct Unsent {
    calls: Counter,
    every_member_out: AtomicBool,
}

impl<C> ReplicaPool<C> {
    /// The count of calls failed at once for want of a replica, to
    /// register with the metrics.
    pub fn unsent_calls(&self) -> Counter {
        self.unsent.calls.clone()
    }

    /// Notes that a call found a replica: if the last one found none with
    /// every member out, says that one is back. A load on the hot path.
    pub(crate) fn found_replica(&self) {
        let unsent = &self.unsent.every_member_out;
        if unsent.load(Ordering::Relaxed) && unsent.swap(false, Ordering::Relaxed) {
            tracing::info!(
                "a {} replica is back in rotation: calls go out again",
                self.service
            );
        }
    }

    /// Counts a call that found no replica, and the status it fails with:
    /// none known yet, every one out of rotation (logged at the first such
    /// call), or those in rotation on probation with their one call in
    /// flight (resilience4j's half-open state refuses the rest alike).
    pub(crate) fn no_replica(&self) -> Status {
        self.unsent.calls.inc();
        let members = self.snapshot();
        if members.is_empty() {
            return Status::unavailable(format!("no {} replica is known yet", self.service));
        }
        if !members.iter().all(|member| member.is_down()) {
            return Status::unavailable(format!(
                "no {} replica can take a call now: those in rotation are on probation, \
                 one call at a time",
                self.service
            ));
        }
        if !self.unsent.every_member_out.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                replicas = members.len(),
                "every {} replica is out of rotation: calls fail at once, without waiting \
                 for a deadline, until a health check puts one back",
                self.service
            );
        }
        Status::unavailable(format!(
            "every {} replica is out of rotation (ejected, or failing health checks)",
            self.service
        ))
    }
}
