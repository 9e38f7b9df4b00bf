//! Every setting of the recommendations server: a command-line flag, each
//! also read from an environment variable. Defaults live here and only here.

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;
use service_kit::{
    cli::ServiceArgs,
    lifecycle::ServiceSettings,
    limits::{GrpcLimits, with_env_prefix},
    tls::{ClientAuth, ServerFiles},
};

/// The recommendations server's command line: its settings, and
/// `healthcheck`.
pub type Cli = service_kit::cli::Cli<Settings>;

impl ServiceArgs for Settings {
    const NAME: &'static str = "recommendations";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "Recommends books by category over gRPC (the bookstore's \
        Recommendations service). Serves the versioned bookstore.recommendations.v1 API and the \
        tutorial's original `Recommendations` contract side by side, with gRPC health and \
        reflection, and an admin HTTP listener for /metrics.";
    const HEALTHCHECK: &'static str = "Exit 0 if the server on --listen reports SERVING over \
        gRPC health, 1 otherwise (for container HEALTHCHECKs; needs no curl or grpcurl)";
    const ENV_PREFIX: &'static str = "RECOMMENDATIONS";

    fn with_env_prefix(command: clap::Command) -> clap::Command {
        let command = with_env_prefix::<GrpcLimits>(command, Self::ENV_PREFIX);
        with_env_prefix::<ServiceSettings<8951>>(command, Self::ENV_PREFIX)
    }
}

/// The server's settings.
#[derive(Clone, Debug, Parser)]
#[command(name = "recommendations")]
pub struct Settings {
    /// Address of the gRPC listener.
    #[arg(long, env = "RECOMMENDATIONS_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,

    /// Catalog file to serve (.csv or .json; docs/catalog.md has the format).
    /// Without it the built-in catalog of 72 books is served.
    #[arg(long, env = "RECOMMENDATIONS_CATALOG", value_name = "PATH")]
    pub catalog: Option<PathBuf>,

    /// Largest catalog file accepted, in bytes; a larger one stops start-up
    /// with an error. The default fits a million books (about 55 MB of
    /// CSV), which take about 1.5 times the file's size in memory.
    #[arg(
        long,
        env = "RECOMMENDATIONS_CATALOG_MAX_BYTES",
        value_name = "BYTES",
        default_value_t = 128 * 1024 * 1024
    )]
    pub catalog_max_bytes: u64,

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
    /// signed by this CA, for client authentication, with one of
    /// --tls-client-names (mutual TLS). Requires --tls-cert.
    #[arg(
        long,
        env = "RECOMMENDATIONS_TLS_CLIENT_CA",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,

    /// Under mutual TLS, the client names allowed, comma-separated: a client
    /// certificate must carry one of them, as a DNS subject alternative name
    /// or, when it has none, as its subject's common name (CN); and its
    /// extended key usage, if it has one, must include client authentication.
    #[arg(
        long,
        env = "RECOMMENDATIONS_TLS_CLIENT_NAMES",
        value_name = "NAMES",
        value_delimiter = ',',
        default_value = "marketplace"
    )]
    pub tls_client_names: Vec<String>,

    /// The gRPC listener's limits.
    #[command(flatten)]
    pub limits: GrpcLimits,

    /// What every service has: admin listener, drain, runtime, logs.
    #[command(flatten)]
    pub service: ServiceSettings<8951>,
}

impl Settings {
    /// The files TLS is read from, when --tls-cert and --tls-key are set.
    pub fn server_tls_files(&self) -> Option<ServerFiles> {
        let (cert, key) = self.tls_cert.clone().zip(self.tls_key.clone())?;
        let clients = self.tls_client_ca.clone().map(|ca| ClientAuth {
            ca,
            names: self.tls_client_names.clone(),
        });
        Some(ServerFiles { cert, key, clients })
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
    use std::time::Duration;

    use super::*;

    /// docs/settings.md shows `--help` (it must not drift from the code),
    /// clap finds the definition consistent, and every setting is read from
    /// a variable of this service.
    #[test]
    fn the_command_line_is_consistent_documented_and_prefixed() {
        service_kit::testing::docs::assert_command_line(
            env!("CARGO_MANIFEST_DIR"),
            Cli::command_with_env(),
            &["RECOMMENDATIONS_"],
        );
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let settings = Settings::try_parse_from(["recommendations"]).expect("defaults parse");

        assert_eq!(settings.listen.to_string(), "0.0.0.0:50051");
        assert_eq!(settings.service.admin_listen.to_string(), "0.0.0.0:8951");
        assert_eq!(settings.service.drain_timeout, Duration::from_secs(25));
        assert_eq!(settings.limits.max_message_bytes, 65_536);
        assert_eq!(settings.limits.concurrency_limit, 1024);
        assert_eq!(settings.limits.max_connection_age, Duration::from_secs(300));
        assert_eq!(
            settings.limits.max_connection_age_grace,
            Duration::from_secs(30)
        );
        assert!(settings.catalog.is_none());
    }
}
