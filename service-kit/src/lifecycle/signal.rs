//! The signals that stop a service: SIGTERM (Kubernetes, Docker) and
//! SIGINT (Ctrl-C).

use std::future::Future;

/// Resolves on the first SIGTERM (Kubernetes, Docker) or SIGINT (Ctrl-C).
/// The handlers are installed by this call, not when the future is first
/// polled: a signal that comes right after the service says it is serving
/// starts a drain rather than killing the process. If a handler cannot be
/// installed, that is logged and only the other signal stops the process.
/// Must be called within the runtime.
pub fn signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let install = |kind: SignalKind, name: &'static str| -> Option<Signal> {
            signal(kind)
                .inspect_err(|err| tracing::error!(cause = %err, "cannot listen for {name}"))
                .ok()
        };
        let interrupt = install(SignalKind::interrupt(), "SIGINT");
        let terminate = install(SignalKind::terminate(), "SIGTERM");
        let received = |signal: Option<Signal>| async move {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        async move {
            tokio::select! {
                () = received(interrupt) => tracing::info!(signal = "SIGINT", "shutdown requested"),
                () = received(terminate) => tracing::info!(signal = "SIGTERM", "shutdown requested"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(cause = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!(signal = "SIGINT", "shutdown requested");
    }
}
