//! The tokio runtime both services run on.

use std::num::NonZeroUsize;

use anyhow::Context;
use tokio::runtime::Runtime;

/// A multi-threaded runtime with `worker_threads` workers, or by default one
/// per CPU this process may use: its CPU affinity and cgroup quota count, so
/// a container limited to one CPU (as in kubernetes.yaml) gets one worker.
pub fn build(worker_threads: Option<NonZeroUsize>) -> anyhow::Result<Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = worker_threads {
        builder.worker_threads(threads.get());
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_count_is_the_one_asked_for() {
        let runtime = build(NonZeroUsize::new(3)).expect("a runtime");

        assert_eq!(runtime.metrics().num_workers(), 3);
    }

    #[test]
    fn by_default_there_is_a_worker_per_usable_cpu() {
        let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);

        let runtime = build(None).expect("a runtime");

        assert_eq!(runtime.metrics().num_workers(), cpus);
    }
}
