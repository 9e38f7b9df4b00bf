//! Shutting down in order: the signal, telling balancers we are going, then
//! a drain bounded in time.

use std::{future::Future, pin::pin, time::Duration};

use tokio::sync::oneshot;

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

/// Tells a server to stop accepting; see [`trigger`].
#[derive(Debug)]
pub struct Trigger(oneshot::Sender<()>);

impl Trigger {
    /// Fires the paired [`Stopped`] future. Firing twice is impossible;
    /// firing after the server is gone is harmless.
    pub fn fire(self) {
        let _ = self.0.send(());
    }
}

/// Resolves when its [`Trigger`] fires or is dropped: give it to a server as
/// its "stop accepting and drain" signal.
pub type Stopped = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A trigger and the future it resolves.
pub fn trigger() -> (Trigger, Stopped) {
    let (sender, receiver) = oneshot::channel();
    (
        Trigger(sender),
        Box::pin(async move {
            let _ = receiver.await;
        }),
    )
}

/// Runs `server` until `shutdown` resolves, then shuts it down in order:
/// `going_away` first (readiness and health turn "not serving" while the
/// server still answers), then `stop` (the server stops accepting and
/// finishes what is in flight), bounded by `grace`.
///
/// Returns the server's own error if it failed before or during the drain;
/// a drain cut short is logged, not an error.
pub async fn run_until_stopped<S, E, G>(
    what: &str,
    server: S,
    shutdown: impl Future<Output = ()>,
    going_away: G,
    stop: Trigger,
    grace: Duration,
) -> Result<(), E>
where
    S: Future<Output = Result<(), E>>,
    G: Future<Output = ()>,
{
    let mut server = pin!(server);
    tokio::select! {
        result = &mut server => return result,
        () = shutdown => {}
    }
    going_away.await;
    stop.fire();
    bounded_drain(what, grace, server).await.unwrap_or(Ok(()))
}

/// The whole shutdown sequence of a service: [`run_until_stopped`], then
/// the admin listener stops last, so that `/metrics` and `/readyz` cover the
/// drain. Returns the server's error, if it failed, as "the `what` server
/// failed".
pub(crate) async fn serve_until_stopped<S, E, G>(
    what: &str,
    server: S,
    shutdown: impl Future<Output = ()>,
    going_away: G,
    stop: Trigger,
    grace: Duration,
    admin: crate::AdminHandle,
) -> anyhow::Result<()>
where
    S: Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
    G: Future<Output = ()>,
{
    let served = run_until_stopped(what, server, shutdown, going_away, stop, grace).await;
    admin.stop().await?;
    anyhow::Context::with_context(served, || format!("the {what} server failed"))?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn going_away_happens_before_the_server_is_told_to_stop() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = trigger();
        let server = {
            let order = order.clone();
            async move {
                stopped.await;
                order.lock().expect("not poisoned").push("stopped");
                Ok::<(), ()>(())
            }
        };
        let going_away = {
            let order = order.clone();
            async move { order.lock().expect("not poisoned").push("going away") }
        };

        let result = run_until_stopped(
            "test",
            server,
            async {},
            going_away,
            stop,
            Duration::from_secs(5),
        )
        .await;

        assert_eq!(result, Ok(()));
        assert_eq!(
            *order.lock().expect("not poisoned"),
            ["going away", "stopped"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_that_overruns_the_grace_period_is_cut_short() {
        let (stop, _stopped) = trigger();
        let never_drains = std::future::pending::<Result<(), ()>>();

        let result = run_until_stopped(
            "test",
            never_drains,
            async {},
            async {},
            stop,
            Duration::from_secs(1),
        )
        .await;

        assert_eq!(result, Ok(()));
    }
}
