//! What `/readyz` reports: whether the process wants new traffic.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

/// Whether the process wants new traffic. It turns false as soon as shutdown
/// begins, so that load balancers stop sending requests before the drain.
/// Cloning shares the flag.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// A flag that starts ready.
    pub fn new() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }

    /// Reports not ready from now on.
    pub fn set_not_ready(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}
