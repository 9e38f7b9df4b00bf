//! The tokio runtime both services run on.

use std::{future::Future, num::NonZeroUsize, time::Duration};

use anyhow::Context;
use tokio::runtime::{Builder, Runtime};

/// A runtime with `worker_threads` workers, or by default
/// [`default_workers`] for the CPUs this process may use: its CPU affinity
/// and cgroup quota count, so a container limited to one CPU (as in
/// kubernetes.yaml) gets one worker.
///
/// One worker means tokio's current-thread scheduler: every task runs on
/// the thread that calls `block_on`, with no work stealing and no wakeups
/// across threads, the cheapest way to use one CPU. More workers mean the
/// multi-thread scheduler.
///
/// `io_events_per_tick` bounds the I/O events (ready sockets) a worker
/// takes from the driver at a time, before it runs the tasks they woke;
/// `None` keeps tokio's default (1024).
pub fn build(
    worker_threads: Option<NonZeroUsize>,
    io_events_per_tick: Option<NonZeroUsize>,
) -> anyhow::Result<Runtime> {
    let workers = worker_threads
        .or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .map(default_workers)
        })
        .map_or(1, NonZeroUsize::get);
    let mut builder = if workers == 1 {
        Builder::new_current_thread()
    } else {
        let mut builder = Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    if let Some(events) = io_events_per_tick {
        builder.max_io_events_per_tick(events.get());
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The workers a process that may use `cpus` CPUs gets by default: half
/// of them, at least one.
///
/// The multi-thread scheduler costs a page more CPU than the current-thread
/// one (work stealing, wakeups across threads), so its workers pay only on
/// CPUs that would otherwise idle. The two services run side by side
/// (docker compose, `cargo dev`, one machine), and a worker per CPU each
/// puts two threads on every CPU, which served fewer pages per second than
/// half as many (docs/benchmarks/history.md, "The runtime's default"). A
/// service with CPUs to itself sets `--worker-threads` (docs/operations.md,
/// "CPU").
pub fn default_workers(cpus: NonZeroUsize) -> NonZeroUsize {
    NonZeroUsize::new(cpus.get() / 2).unwrap_or(NonZeroUsize::MIN)
}

/// Longest the exit waits for blocking threads once `main`'s future is
/// done: a system resolver or a file read that hangs must not hold it up.
pub const BLOCKING_EXIT_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs `main` on a runtime from [`build`], then shuts the runtime down
/// without waiting more than [`BLOCKING_EXIT_TIMEOUT`] for blocking threads
/// (dropping a runtime would wait for them without end).
pub fn run<T>(
    worker_threads: Option<NonZeroUsize>,
    io_events_per_tick: Option<NonZeroUsize>,
    main: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let runtime = build(worker_threads, io_events_per_tick)?;
    let result = runtime.block_on(main);
    runtime.shutdown_timeout(BLOCKING_EXIT_TIMEOUT);
    result
}

#[cfg(test)]
mod tests {
    use tokio::runtime::RuntimeFlavor;

    use super::*;

    #[test]
    fn the_worker_count_is_the_one_asked_for() {
        let runtime = build(NonZeroUsize::new(3), None).expect("a runtime");

        assert_eq!(
            runtime.handle().runtime_flavor(),
            RuntimeFlavor::MultiThread
        );
        assert_eq!(runtime.metrics().num_workers(), 3);
    }

    #[test]
    fn one_worker_is_the_current_thread_scheduler() {
        let runtime = build(NonZeroUsize::new(1), None).expect("a runtime");

        assert_eq!(
            runtime.handle().runtime_flavor(),
            RuntimeFlavor::CurrentThread
        );
        assert_eq!(runtime.metrics().num_workers(), 1);
    }

    #[test]
    fn by_default_there_is_a_worker_per_two_usable_cpus() {
        let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);

        let runtime = build(None, None).expect("a runtime");

        assert_eq!(runtime.metrics().num_workers(), (cpus / 2).max(1));
    }

    #[test]
    fn up_to_three_cpus_the_default_is_the_current_thread_scheduler() {
        let workers = |cpus: usize| {
            NonZeroUsize::new(cpus)
                .map(default_workers)
                .map(NonZeroUsize::get)
        };

        assert_eq!(
            [1, 2, 3, 4, 8, 64].map(workers),
            [1, 1, 1, 2, 4, 32].map(Some)
        );
    }

    #[test]
    fn one_io_event_per_tick_still_serves_many_ready_connections() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let runtime = build(NonZeroUsize::new(1), NonZeroUsize::new(1)).expect("a runtime");

        // 32 connections ready at once, each echoed, over real sockets.
        let echoed = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a free port");
            let addr = listener.local_addr().expect("bound");
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        let mut byte = [0; 1];
                        if socket.read_exact(&mut byte).await.is_ok() {
                            let _ = socket.write_all(&byte).await;
                        }
                    });
                }
            });
            let clients = (0..32u8).map(|n| {
                tokio::spawn(async move {
                    let mut socket = tokio::net::TcpStream::connect(addr).await.ok()?;
                    socket.write_all(&[n]).await.ok()?;
                    let mut byte = [0; 1];
                    socket.read_exact(&mut byte).await.ok()?;
                    Some(byte[0])
                })
            });
            let mut echoed = Vec::new();
            for client in clients.collect::<Vec<_>>() {
                echoed.push(client.await.ok().flatten());
            }
            echoed
        });

        assert_eq!(echoed, (0..32u8).map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn a_blocking_thread_that_hangs_does_not_hold_up_the_exit() {
        let (_release, hang) = std::sync::mpsc::channel::<()>();

        let result = run(NonZeroUsize::new(1), None, async move {
            tokio::task::spawn_blocking(move || hang.recv());
            Ok(7)
        });

        // Without the timeout, `run` would wait for `_release`, dropped only
        // after it returns: the test would never end.
        assert_eq!(result.ok(), Some(7));
    }
}
