//! The skeleton every service shares: the settings common to all (flattened
//! into each service's own with clap), the admin listener with its readiness,
//! and the run that serves until a signal and then drains in order.
//!
//! A service's `main` parses its settings, starts logging and builds its
//! application; the application binds its data listener and a [`Service`],
//! and its run hands [`Service::serve`] the future that serves the data
//! listener until told to stop.

use std::{
    future::Future, net::SocketAddr, num::NonZeroUsize, pin::Pin, sync::Arc, time::Duration,
};

use clap::Args;
use prometheus_client::registry::Registry;

use crate::{
    AdminServer, LogFormat, Readiness,
    limits::AdminLimits,
    shutdown::{self, Stopped},
    trace::TraceSettings,
};

/// The settings of every service. `ADMIN_PORT` is the admin listener's
/// default port, distinct for each service so that they can share a host.
/// The environment variables take the service's prefix (see
/// [`crate::limits::with_env_prefix`]): `MARKETPLACE_DRAIN_TIMEOUT`.
#[derive(Args, Clone, Debug)]
pub struct ServiceSettings<const ADMIN_PORT: u16> {
    /// Address of the admin HTTP listener (/metrics, /healthz, /readyz).
    #[arg(long, env = "ADMIN_LISTEN", default_value_t = SocketAddr::from(([0, 0, 0, 0], ADMIN_PORT)))]
    pub admin_listen: SocketAddr,

    /// The admin listener's limits.
    #[command(flatten)]
    pub admin_limits: AdminLimits,

    /// How long what is in flight may take to finish after SIGTERM or SIGINT
    /// before the service exits anyway (e.g. 25s, 500ms).
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "25s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Runtime worker threads. Default: half the CPUs this process may use,
    /// at least one (CPU affinity and cgroup quota count: one under
    /// kubernetes.yaml's limit of one CPU). One is tokio's current-thread
    /// scheduler, the cheapest per request. A service with N CPUs to itself
    /// (a large machine or CPU limit, its peer elsewhere) sets N: see
    /// docs/operations.md, "CPU".
    #[arg(long, env = "WORKER_THREADS")]
    pub worker_threads: Option<NonZeroUsize>,

    /// Log format on stdout. Filtering follows RUST_LOG (default:
    /// info,h2=warn,hyper=warn,tower=warn).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Span export and sampling (the standard `OTEL_*` variables).
    #[command(flatten)]
    pub trace: TraceSettings,
}

/// What a service does as it stops, after /readyz turned 503 and before its
/// listener closes (e.g. gRPC health turning NOT_SERVING).
type GoingAway = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A service's admin listener, bound, with the readiness it reports, and
/// how long its drain may take.
#[derive(Debug)]
pub struct Service {
    name: &'static str,
    admin: AdminServer,
    readiness: Readiness,
    drain_timeout: Duration,
}

impl Service {
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
    pub async fn serve<S, E>(
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
        let (stop, stopped) = shutdown::trigger();
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
        shutdown::serve_until_stopped(
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
