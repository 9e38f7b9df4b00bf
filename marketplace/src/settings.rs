//! Every setting of the marketplace: a command-line flag, each also read
//! from an environment variable. Defaults live here and only here.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use service_kit::{
    cli::ServiceArgs,
    lifecycle::ServiceSettings,
    limits::{HttpLimits, with_env_prefix},
    tls::{ClientFiles, ServerName},
};

/// The marketplace's command line: its settings, and `healthcheck`.
pub type Cli = service_kit::cli::Cli<Settings>;

impl ServiceArgs for Settings {
    const NAME: &'static str = "marketplace";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "The Online Books For You web app. Renders the bookstore's pages from the \
        recommendations service, reached over long-lived gRPC channels (one per replica) shared \
        by every request; serves /metrics, /healthz and /readyz on an admin listener of its own.";
    const HEALTHCHECK: &'static str = "Exit 0 if /healthz on --admin-listen answers 200, 1 \
        otherwise (for container HEALTHCHECKs; needs no curl)";
    const ENV_PREFIX: &'static str = "MARKETPLACE";

    fn with_env_prefix(command: clap::Command) -> clap::Command {
        let command = with_env_prefix::<HttpLimits>(command, Self::ENV_PREFIX);
        with_env_prefix::<ServiceSettings<8950>>(command, Self::ENV_PREFIX)
    }
}

/// The web app's settings.
#[derive(Clone, Debug, Parser)]
#[command(name = "marketplace")]
pub struct Settings {
    /// Address of the web listener.
    #[arg(long, env = "MARKETPLACE_LISTEN", default_value = "0.0.0.0:5000")]
    pub listen: SocketAddr,

    /// Host name or IP address of the recommendations service.
    #[arg(long, env = "RECOMMENDATIONS_HOST", default_value = "localhost")]
    pub recommendations_host: String,

    /// gRPC port of the recommendations service.
    #[arg(long, env = "RECOMMENDATIONS_PORT", default_value_t = 50051)]
    pub recommendations_port: u16,

    /// PEM CA certificate(s): turns TLS on toward recommendations and
    /// verifies its certificate against this CA.
    #[arg(long, env = "RECOMMENDATIONS_TLS_CA", value_name = "PATH")]
    pub recommendations_tls_ca: Option<PathBuf>,

    /// The name recommendations' certificate must carry (default:
    /// RECOMMENDATIONS_HOST).
    #[arg(
        long,
        env = "RECOMMENDATIONS_TLS_DOMAIN",
        requires = "recommendations_tls_ca"
    )]
    pub recommendations_tls_domain: Option<String>,

    /// PEM client certificate to present to recommendations (mutual TLS);
    /// requires the key and RECOMMENDATIONS_TLS_CA.
    #[arg(
        long,
        env = "RECOMMENDATIONS_TLS_CLIENT_CERT",
        value_name = "PATH",
        requires_all = ["recommendations_tls_client_key", "recommendations_tls_ca"]
    )]
    pub recommendations_tls_client_cert: Option<PathBuf>,

    /// PEM private key of the client certificate.
    #[arg(
        long,
        env = "RECOMMENDATIONS_TLS_CLIENT_KEY",
        value_name = "PATH",
        requires = "recommendations_tls_client_cert"
    )]
    pub recommendations_tls_client_key: Option<PathBuf>,

    /// How often to resolve RECOMMENDATIONS_HOST again, to follow replicas
    /// joining and leaving (e.g. 5s).
    #[arg(long, env = "MARKETPLACE_RESOLVE_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub resolve_interval: Duration,

    /// Resolve RECOMMENDATIONS_HOST from this hosts(5) file instead of DNS
    /// (every line naming it is a replica). Read only if it is a regular
    /// file of at most 1 MiB.
    #[arg(long, env = "MARKETPLACE_HOSTS_FILE", value_name = "PATH")]
    pub hosts_file: Option<PathBuf>,

    /// Longest a lookup of RECOMMENDATIONS_HOST may take; past it the last
    /// known replicas are kept (and at start the marketplace starts with
    /// none, to find them at the next interval).
    #[arg(long, env = "MARKETPLACE_RESOLVE_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub resolve_timeout: Duration,

    /// Most recommendations replicas called at once (a channel, a
    /// connection and health checks each). When RECOMMENDATIONS_HOST stands
    /// for more, the others wait as spares and replace replicas that fail.
    #[arg(long, env = "MARKETPLACE_MAX_REPLICAS", default_value = "64")]
    pub max_replicas: std::num::NonZeroUsize,

    /// How long a replica that fails a call (refused, broken connection,
    /// missed deadline) is out of rotation the first time; each consecutive
    /// ejection doubles it, however well the replica answers health checks.
    #[arg(long, env = "MARKETPLACE_BASE_EJECTION_TIME", default_value = "2s", value_parser = humantime::parse_duration)]
    pub base_ejection_time: Duration,

    /// The longest ejection; a replica that served well for this long
    /// starts again from --base-ejection-time.
    #[arg(long, env = "MARKETPLACE_MAX_EJECTION_TIME", default_value = "5m", value_parser = humantime::parse_duration)]
    pub max_ejection_time: Duration,

    /// Retries to another replica, as a share of calls (0.2: at most one
    /// retry per five calls, plus the floor below), so that when every
    /// replica is sick the marketplace does not double the load on them.
    #[arg(long, env = "MARKETPLACE_RETRY_BUDGET_RATIO", default_value_t = 0.2, value_parser = retry_ratio)]
    pub retry_budget_ratio: f64,

    /// Retries allowed each second whatever the ratio says.
    #[arg(
        long,
        env = "MARKETPLACE_RETRY_BUDGET_MIN_PER_SECOND",
        default_value_t = 10
    )]
    pub retry_budget_min_per_second: u32,

    /// Deadline of each call to recommendations (e.g. 1s, 250ms). Past it the
    /// page renders without recommendations.
    #[arg(long, env = "MARKETPLACE_RPC_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub rpc_timeout: Duration,

    /// Most ready connections the runtime takes in one turn before it runs
    /// what they woke (tokio's max_io_events_per_tick; its default is 1024).
    /// Small, so that when many pages arrive together their Recommend calls
    /// leave a few at a time, each group while the next is taken, and the
    /// two services work side by side rather than in turns: with 8, 1.26x
    /// the pages per second at 16 connections and 1.21x at 64 on 2 CPUs
    /// (docs/benchmarks/history.md, "Pages a few at a time").
    #[arg(long, env = "MARKETPLACE_IO_EVENTS_PER_TICK", default_value = "8")]
    pub io_events_per_tick: std::num::NonZeroUsize,

    /// The web listener's limits.
    #[command(flatten)]
    pub limits: HttpLimits,

    /// What every service has: admin listener, drain, runtime, logs.
    #[command(flatten)]
    pub service: ServiceSettings<8950>,
}

impl Settings {
    /// Settings for tests: both listeners on a free loopback port, pointing
    /// at recommendations on `upstream`.
    pub fn for_tests(upstream: SocketAddr) -> Self {
        Self::parse_from([
            "marketplace".to_owned(),
            "--listen=127.0.0.1:0".to_owned(),
            "--admin-listen=127.0.0.1:0".to_owned(),
            format!("--recommendations-host={}", upstream.ip()),
            format!("--recommendations-port={}", upstream.port()),
            "--drain-timeout=5s".to_owned(),
        ])
    }

    /// The files TLS toward recommendations is read from, and the name its
    /// certificate must carry, when RECOMMENDATIONS_TLS_CA is set; fails on
    /// a domain that is not a name.
    pub fn recommendations_tls(
        &self,
    ) -> anyhow::Result<Option<(ClientFiles, ServerName<'static>)>> {
        let Some(ca) = self.recommendations_tls_ca.clone() else {
            return Ok(None);
        };
        let domain = self
            .recommendations_tls_domain
            .as_deref()
            .unwrap_or(&self.recommendations_host);
        let identity = self
            .recommendations_tls_client_cert
            .clone()
            .zip(self.recommendations_tls_client_key.clone());
        let files = ClientFiles { ca, identity };
        Ok(Some((files, service_kit::tls::server_name(domain)?)))
    }

    /// The recommendations endpoint URI, `http://host:port` (IPv6 literals
    /// bracketed).
    pub fn recommendations_uri(&self) -> String {
        let host = &self.recommendations_host;
        if host.contains(':') && !host.starts_with('[') {
            format!("http://[{host}]:{}", self.recommendations_port)
        } else {
            format!("http://{host}:{}", self.recommendations_port)
        }
    }
}

/// A retry ratio: a number from 0 to 10.
fn retry_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ratio) if (0.0..=10.0).contains(&ratio) => Ok(ratio),
        Ok(_) => Err("must be between 0 and 10".to_owned()),
        Err(err) => Err(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/settings.md shows `--help` (it must not drift from the code),
    /// clap finds the definition consistent, and every setting is read from
    /// a variable of this service (the settings contract's `RECOMMENDATIONS_`
    /// ones included).
    #[test]
    fn the_command_line_is_consistent_documented_and_prefixed() {
        service_kit::testing::docs::assert_command_line(
            env!("CARGO_MANIFEST_DIR"),
            Cli::command_with_env(),
            &["MARKETPLACE_", "RECOMMENDATIONS_"],
        );
    }

    /// Every environment variable the docs name is one of the settings in
    /// docs/settings.md (which the test above and recommendations' own keep
    /// equal to the binaries' `--help`): a renamed or removed setting
    /// cannot live on in a guide.
    #[test]
    fn every_variable_the_docs_name_is_a_setting() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let settings = std::fs::read_to_string(root.join("docs/settings.md")).expect("readable");
        let mut pages = vec![root.join("README.md")];
        for dir in ["docs", "docs/benchmarks"] {
            for entry in std::fs::read_dir(root.join(dir)).expect("a docs dir") {
                let path = entry.expect("an entry").path();
                if path.extension().is_some_and(|ext| ext == "md") {
                    pages.push(path);
                }
            }
        }
        let mut unknown = Vec::new();
        for page in &pages {
            let text = std::fs::read_to_string(page).expect("readable");
            for name in service_kit::testing::docs::setting_names(
                &text,
                &["RECOMMENDATIONS_", "MARKETPLACE_"],
            ) {
                if !settings.contains(&format!("[env: {name}]")) {
                    unknown.push(format!("{}: {name}", page.display()));
                }
            }
        }
        assert!(pages.len() > 10, "found the docs: {pages:?}");
        assert!(unknown.is_empty(), "not a setting: {unknown:#?}");
    }

    #[test]
    fn defaults_are_the_tutorials_and_the_documented_ones() {
        let settings = Settings::try_parse_from(["marketplace"]).expect("defaults parse");

        assert_eq!(settings.listen.to_string(), "0.0.0.0:5000");
        assert_eq!(settings.service.admin_listen.to_string(), "0.0.0.0:8950");
        assert_eq!(settings.recommendations_uri(), "http://localhost:50051");
        assert_eq!(settings.rpc_timeout, Duration::from_secs(1));
        assert_eq!(settings.service.drain_timeout, Duration::from_secs(25));
        assert_eq!(settings.io_events_per_tick.get(), 8);
        assert!(
            Settings::try_parse_from(["marketplace", "--io-events-per-tick=0"]).is_err(),
            "a runtime must take at least one event per tick"
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let settings = Settings::try_parse_from(["marketplace", "--recommendations-host=::1"])
            .expect("parses");

        assert_eq!(settings.recommendations_uri(), "http://[::1]:50051");
    }

    #[test]
    fn the_shared_limits_read_variables_of_this_service() {
        let command = Cli::command_with_env();
        let env = |id: &str| {
            command
                .get_arguments()
                .find(|arg| arg.get_id() == id)
                .and_then(|arg| arg.get_env())
                .map(|env| env.to_string_lossy().into_owned())
        };

        assert_eq!(
            env("http_max_connections").as_deref(),
            Some("MARKETPLACE_HTTP_MAX_CONNECTIONS")
        );
        assert_eq!(
            env("admin_max_connections").as_deref(),
            Some("MARKETPLACE_ADMIN_MAX_CONNECTIONS")
        );
    }
}
