//! Every setting of the recommendations server: a command-line flag, each
//! also read from an environment variable. Defaults live here and only here.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};
use operations::LogFormat;

/// Recommends books by category over gRPC (the bookstore's Recommendations
/// service). Serves the versioned bookstore.recommendations.v1 API and the
/// tutorial's original `Recommendations` contract side by side, with gRPC
/// health and reflection, and an admin HTTP listener for /metrics.
#[derive(Debug, Parser)]
#[command(name = "recommendations", version)]
pub struct Cli {
    /// What to do; without a command, serve.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The server's settings (the health check uses them too).
    #[command(flatten)]
    pub settings: Settings,
}

/// The commands besides serving.
#[derive(Clone, Copy, Debug, Subcommand)]
pub enum Command {
    /// Exit 0 if the server on --listen reports SERVING over gRPC health, 1
    /// otherwise (for container HEALTHCHECKs; needs no curl or grpcurl).
    Healthcheck,
}

/// The server's settings.
#[derive(Clone, Debug, Parser)]
#[command(name = "recommendations")]
pub struct Settings {
    /// Address of the gRPC listener.
    #[arg(long, env = "RECOMMENDATIONS_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,

    /// Address of the admin HTTP listener (/metrics, /healthz, /readyz).
    #[arg(
        long,
        env = "RECOMMENDATIONS_ADMIN_LISTEN",
        default_value = "0.0.0.0:9051"
    )]
    pub admin_listen: SocketAddr,

    /// Catalog file to serve (.csv or .json; see the README for the format).
    /// Without it the built-in catalog of 72 books is served.
    #[arg(long, env = "RECOMMENDATIONS_CATALOG", value_name = "PATH")]
    pub catalog: Option<PathBuf>,

    /// PEM certificate (chain) to serve TLS with; requires --tls-key.
    /// Without it the gRPC listener is plaintext.
    #[arg(
        long,
        env = "RECOMMENDATIONS_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(
        long,
        env = "RECOMMENDATIONS_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s): with it, clients must present a certificate
    /// signed by this CA (mutual TLS). Requires --tls-cert.
    #[arg(
        long,
        env = "RECOMMENDATIONS_TLS_CLIENT_CA",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,

    /// How long in-flight calls may take to finish after SIGTERM or SIGINT
    /// before the server exits anyway (e.g. 25s, 500ms).
    #[arg(long, env = "RECOMMENDATIONS_DRAIN_TIMEOUT", default_value = "25s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Age at which a connection is asked to close (HTTP/2 GOAWAY): its
    /// client reconnects, and behind a load balancer may land on another
    /// replica, so that even clients that do not balance spread out over
    /// time. Calls in flight finish.
    #[arg(long, env = "RECOMMENDATIONS_MAX_CONNECTION_AGE", default_value = "5m", value_parser = humantime::parse_duration)]
    pub max_connection_age: Duration,

    /// How long calls in flight may go on after the maximum connection age
    /// before the connection is closed anyway.
    #[arg(long, env = "RECOMMENDATIONS_MAX_CONNECTION_AGE_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub max_connection_age_grace: Duration,

    /// Largest request message accepted, in bytes; larger ones get
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "RECOMMENDATIONS_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// Most calls handled at once across all connections; calls beyond it
    /// get RESOURCE_EXHAUSTED at once instead of waiting.
    #[arg(long, env = "RECOMMENDATIONS_CONCURRENCY_LIMIT", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency_limit: u32,

    /// Runtime worker threads. Default: one per CPU this process may use
    /// (CPU affinity and cgroup quota count: one under kubernetes.yaml's
    /// limit of one CPU).
    #[arg(long, env = "RECOMMENDATIONS_WORKER_THREADS")]
    pub worker_threads: Option<std::num::NonZeroUsize>,

    /// Log format on stdout. Filtering follows RUST_LOG (default: info).
    #[arg(long, env = "RECOMMENDATIONS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Settings {
    /// The TLS configuration, when --tls-cert and --tls-key are set; fails
    /// on a missing, unreadable or mismatched file, naming it.
    pub fn server_tls(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                operations::tls::server_config(cert, key, self.tls_client_ca.as_deref()).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Settings for tests: both listeners on a free loopback port, the
    /// built-in catalog, a short drain.
    pub fn for_tests() -> Self {
        Self::parse_from([
            "recommendations",
            "--listen=127.0.0.1:0",
            "--admin-listen=127.0.0.1:0",
            "--drain-timeout=5s",
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ones() {
        let settings = Settings::try_parse_from(["recommendations"]).expect("defaults parse");

        assert_eq!(settings.listen.to_string(), "0.0.0.0:50051");
        assert_eq!(settings.admin_listen.to_string(), "0.0.0.0:9051");
        assert_eq!(settings.drain_timeout, Duration::from_secs(25));
        assert_eq!(settings.max_message_bytes, 65_536);
        assert_eq!(settings.concurrency_limit, 1024);
        assert_eq!(settings.max_connection_age, Duration::from_secs(300));
        assert_eq!(settings.max_connection_age_grace, Duration::from_secs(30));
        assert!(settings.catalog.is_none());
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn healthcheck_is_a_subcommand_that_reads_the_same_settings() {
        let cli =
            Cli::try_parse_from(["recommendations", "--listen=127.0.0.1:6000", "healthcheck"])
                .expect("parses");

        assert!(matches!(cli.command, Some(Command::Healthcheck)));
        assert_eq!(cli.settings.listen.port(), 6000);
    }
}
