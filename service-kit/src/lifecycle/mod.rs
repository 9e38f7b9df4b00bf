//! A service's life, from serving to stopped, in one place:
//!
//! - [`settings`]: the settings every service has ([`ServiceSettings`]);
//! - [`signal`]: SIGTERM and SIGINT;
//! - [`readiness`]: what `/readyz` reports;
//! - [`drain`]: the ordered stop and its bounded drain;
//! - [`Lifecycle`]: the admin listener and readiness of a service, and its
//!   run: serve until a signal, then stop in order.
//!
//! A service's `main` parses its settings, starts logging and builds its
//! application; the application binds its data listener and a
//! [`Lifecycle`], and its run hands [`Lifecycle::run`] the future that serves
//! the data listener until told to stop.

pub mod drain;
pub mod readiness;
pub mod settings;
pub mod signal;

pub use drain::{Stopped, Trigger, bounded_drain, trigger};
pub use readiness::Readiness;
pub use settings::ServiceSettings;
pub use signal::signal;

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use prometheus_client::registry::Registry;

use crate::admin::{AdminHandle, AdminServer};

/// What a service does as it stops, after /readyz turned 503 and before its
/// listener closes (e.g. gRPC health turning NOT_SERVING).
type GoingAway = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A service's admin listener, bound, with the readiness it reports, and
/// how long its drain may take.
#[derive(Debug)]
pub struct Lifecycle {
    name: &'static str,
    admin: AdminServer,
    readiness: Readiness,
    drain_timeout: Duration,
}

impl Lifecycle {
    /// Binds the admin listener of `settings`, serving `registry`, with the
    /// span export's metrics added, at /metrics. `name` names the data
    /// listener in logs and errors ("grpc", "http").
    pub async fn bind<const P: u16>(
        name: &'static str,
        settings: &ServiceSettings<P>,
        mut registry: Registry,
    ) -> anyhow::Result<Self> {
        crate::trace::register_metrics(&mut registry);
        let readiness = Readiness::new();
        let admin = AdminServer::bind(
            settings.admin_listen,
            Arc::new(registry),
            readiness.clone(),
            &settings.admin_limits,
        )
        .await?;
        Ok(Self {
            name,
            admin,
            readiness,
            drain_timeout: settings.drain_timeout,
        })
    }

    /// The address the admin listener is bound to.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// Serves: the admin listener, and the data listener through `serve`,
    /// which is given the future that tells it to stop. When `shutdown`
    /// resolves, in order: /readyz turns 503 and `going_away` runs, so that
    /// balancers stop routing here; the data listener is told to stop and
    /// what is in flight finishes, for at most the drain timeout; the admin
    /// listener stops last, so that /metrics covers the drain.
    pub async fn run<S, E>(
        self,
        serve: impl FnOnce(Stopped) -> S,
        going_away: impl Future<Output = ()> + Send + 'static,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()>
    where
        S: Future<Output = Result<(), E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let admin = self.admin.spawn();
        let (stop, stopped) = trigger();
        let readiness = self.readiness;
        let name = self.name;
        let going_away: GoingAway = Box::pin(async move {
            readiness.set_not_ready();
            going_away.await;
            tracing::info!(
                listener = name,
                "readiness is 503; draining what is in flight"
            );
        });
        stop_in_order(
            name,
            serve(stopped),
            shutdown,
            going_away,
            stop,
            self.drain_timeout,
            admin,
        )
        .await
    }
}

/// The whole shutdown sequence of a service: [`run_until_stopped`], then
/// the admin listener stops last, so that `/metrics` and `/readyz` cover the
/// drain. Returns the server's error, if it failed, as "the `what` server
/// failed".
async fn stop_in_order<S, E, G>(
    what: &str,
    server: S,
    shutdown: impl Future<Output = ()>,
    going_away: G,
    stop: Trigger,
    grace: Duration,
    admin: AdminHandle,
) -> anyhow::Result<()>
where
    S: Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
    G: Future<Output = ()>,
{
    let served = drain::run_until_stopped(what, server, shutdown, going_away, stop, grace).await;
    admin.stop().await?;
    anyhow::Context::with_context(served, || format!("the {what} server failed"))?;
    tracing::info!("stopped");
    Ok(())
}
