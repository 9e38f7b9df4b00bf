//! The shutdown signal and the bounded drain that follows it.

use std::{future::Future, time::Duration};

/// Resolves on the first SIGTERM (Kubernetes, Docker) or SIGINT (Ctrl-C).
/// If a handler cannot be installed, that is logged and only the other
/// signal stops the process.
pub async fn signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(cause = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(err) => {
                tracing::error!(cause = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = interrupt => tracing::info!(signal = "SIGINT", "shutdown requested"),
        () = terminate => tracing::info!(signal = "SIGTERM", "shutdown requested"),
    }
}

/// Waits for `drain` (a server finishing its in-flight work) for at most
/// `grace`. Returns `None`, and says so in the log, when the drain was cut
/// short.
pub async fn bounded_drain<F: Future>(what: &str, grace: Duration, drain: F) -> Option<F::Output> {
    match tokio::time::timeout(grace, drain).await {
        Ok(output) => {
            tracing::info!(server = what, "drained");
            Some(output)
        }
        Err(_) => {
            tracing::warn!(
                server = what,
                grace_secs = grace.as_secs_f64(),
                "drain timeout reached; dropping the requests still in flight"
            );
            None
        }
    }
}
