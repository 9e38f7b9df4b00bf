//! Stopping a server in order: telling balancers we are going, then a drain
//! bounded in time.

use std::{future::Future, pin::pin, time::Duration};

use tokio::sync::oneshot;

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
