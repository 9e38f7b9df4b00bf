//! The settings every service has, flattened into each service's own with
//! clap: the admin listener, the drain, the runtime, logs and traces.

use std::{net::SocketAddr, num::NonZeroUsize, time::Duration};

use clap::Args;

use crate::{limits::AdminLimits, telemetry::LogFormat, trace::TraceSettings};

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

    /// How often the files the service serves from (its catalog, its TLS
    /// certificates and keys) are checked for a change on disk, which reloads
    /// them; SIGHUP reloads them at once (e.g. 10s, 500ms).
    #[arg(long, env = "RELOAD_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub reload_interval: Duration,

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
