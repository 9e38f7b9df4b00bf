//! A service running in the test's own runtime, on a task: the real
//! application with every layer, stopped as SIGTERM would stop it, or
//! aborted if the test ends first.

use std::{future::Future, pin::Pin};

use tokio::{sync::oneshot, task::JoinHandle};

/// What tells a running service to stop: it resolves on
/// [`Running::begin_shutdown`] (or when the handle is dropped).
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A service's run on a task of this runtime.
#[derive(Debug)]
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Spawns `run`, given the future that tells it to stop (a service's
    /// `run_until_stopped`).
    pub fn spawn<F>(run: impl FnOnce(Shutdown) -> F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(Box::pin(async {
            let _ = stopped.await;
        })));
        Self {
            stop: Some(stop),
            task,
        }
    }

    /// Begins the shutdown sequence, as SIGTERM does in production.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down, waits, and returns how the run ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.begin_shutdown();
        (&mut self.task)
            .await
            .expect("the service's task does not panic")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.begin_shutdown();
        self.task.abort();
    }
}
