//! The siege: the attacks of docs/limits.md and an overload of each service,
//! made against the release binaries at their production defaults (only
//! the listen addresses are set), a fresh process per scenario so that each
//! peak RSS (VmHWM) is that scenario's own. Every scenario asserts its
//! bounds: peak RSS ≤ 64 MiB per process (half the container limit of
//! kubernetes.yaml), the excess refused, attackers' connections closed, and
//! well-behaved clients on other connections served. Latency bounds (health
//! under 100 ms) are enforced on full runs only, as the benchmark suite's
//! targets are.
//!
//! The scenarios are in [`attacks`] and [`overload`]; the clients they use,
//! well-behaved and not, in [`clients`]; the results page in [`report`].
//!
//! Run by `.ci/run` (`--quick`: shorter overloads) and by `cargo xtask
//! bench`, which writes the results to docs/benchmarks/siege.md.

mod attacks;
mod checks;
mod clients;
mod overload;
mod report;

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use prost::Message as _;
use protobufs::v1::{self, recommendations_service_client::RecommendationsServiceClient};
use service_kit::testing::{
    Pki, Purpose,
    raw_h2::{ENHANCE_YOUR_CALM, REFUSED_STREAM, RawH2},
};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    attack::{self, Closures, H2_PREFACE, TLS_RECORD_HEADER},
    load::{self, GrpcLoad, HttpLoad},
    probe::{self, Stop, Tally},
    process::{self, Server},
    prometheus,
    report::{mebibytes as mib, micros, rate as thousands},
};

use clients::*;

/// Peak RSS allowed to each process: half of kubernetes.yaml's 128 Mi.
const MAX_PEAK_RSS: u64 = 64 * 1024 * 1024;

/// The slowest health answer allowed during an attack or overload.
const MAX_HEALTH_LATENCY: Duration = Duration::from_millis(100);

/// How long a health probe waits for its answer: the kubelet's default
/// `timeoutSeconds`. A probe not answered within it has failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The share of a well-behaved client's calls that must succeed during an
/// attack on another connection.
const MIN_FAIR_SHARE: f64 = 0.99;

/// The production defaults the bounds depend on (`--help` of each binary).
const MAX_CONCURRENT_STREAMS: usize = 100;

const GRPC_MAX_CONNECTIONS: usize = 1024;

const HTTP_MAX_CONNECTIONS: usize = 1024;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

const ADMIN_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Time allowed past a timeout for the server to act on it.
const SLACK: Duration = Duration::from_secs(3);

/// One bound, held or not.
#[derive(Debug)]
pub struct Check {
    /// The scenario it belongs to.
    pub scenario: &'static str,
    /// The bound, and what was measured.
    pub what: String,
    held: bool,
    /// A latency bound: enforced on full runs only.
    timing: bool,
    quick: bool,
}

impl Check {
    /// Not held (a latency bound of a quick run is reported, not enforced).
    pub fn failed(&self) -> bool {
        !(self.held || self.timing && self.quick)
    }
}

/// The figures of one overload.
#[derive(Debug)]
pub(crate) struct Overload {
    service: &'static str,
    offered: String,
    seconds: f64,
    accepted: f64,
    refused: f64,
    probe: Tally,
    /// Readiness and liveness probes.
    health: Vec<(&'static str, Tally)>,
    peak_rss: Vec<(String, u64)>,
}

/// One run of the siege: its settings and the checks made so far.
pub struct Siege {
    /// Where the release binaries are.
    pub binaries: PathBuf,
    /// Where server logs go.
    pub out: PathBuf,
    /// Shorter overloads; latency bounds not enforced.
    pub quick: bool,
    /// Clock ticks per second, for CPU times from /proc.
    pub ticks: u64,
    /// Every bound checked, in order.
    pub checks: Vec<Check>,
    overloads: Vec<Overload>,
}

/// How one attacking connection floods the server with calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flood {
    /// Sends each call's headers and never its message.
    HoldMessages,
    /// Sends whole calls with a zero flow-control window, so that no
    /// response can be sent back.
    ReadNothing,
}

/// A recommendations process and its addresses.
struct Recommendations {
    server: Server,
    grpc: SocketAddr,
    admin: SocketAddr,
}

/// A marketplace process and its addresses.
struct Marketplace {
    server: Server,
    web: SocketAddr,
    admin: SocketAddr,
}

impl Siege {
    /// A siege of the binaries in `binaries`, logging to `out`.
    pub fn new(binaries: PathBuf, out: PathBuf, quick: bool, ticks: u64) -> Self {
        Self {
            binaries,
            out,
            quick,
            ticks,
            checks: Vec::new(),
            overloads: Vec::new(),
        }
    }

    fn check(&mut self, scenario: &'static str, held: bool, what: String) {
        self.push(scenario, held, what, false);
    }

    fn check_latency(&mut self, scenario: &'static str, held: bool, what: String) {
        self.push(scenario, held, what, true);
    }

    fn push(&mut self, scenario: &'static str, held: bool, what: String, timing: bool) {
        let mark = if held { "held" } else { "NOT HELD" };
        eprintln!("siege: {scenario}: {mark}: {what}");
        self.checks.push(Check {
            scenario,
            what,
            held,
            timing,
            quick: self.quick,
        });
    }

    fn binary(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.binaries.join(name);
        ensure!(
            path.exists(),
            "{} is missing: build with `cargo build --release -p recommendations -p marketplace -p bench`",
            path.display()
        );
        Ok(path)
    }

    async fn start_recommendations(
        &self,
        name: &str,
        tls: Option<&Pki>,
    ) -> anyhow::Result<Recommendations> {
        let grpc = process::free_port()?;
        let admin = process::free_port()?;
        let mut envs = vec![
            ("RECOMMENDATIONS_LISTEN", grpc.to_string()),
            ("RECOMMENDATIONS_ADMIN_LISTEN", admin.to_string()),
        ];
        if let Some(pki) = tls {
            let (cert, key) = pki.issue_files("localhost", &[Purpose::ServerAuth]);
            envs.push(("RECOMMENDATIONS_TLS_CERT", cert.display().to_string()));
            envs.push(("RECOMMENDATIONS_TLS_KEY", key.display().to_string()));
        }
        let mut server = Server::start(
            name,
            &self.binary("recommendations")?,
            &[],
            &envs,
            &self.out,
            None,
        )?;
        server.wait_for_port(admin, Duration::from_secs(10)).await?;
        server.wait_for_port(grpc, Duration::from_secs(10)).await?;
        Ok(Recommendations {
            server,
            grpc,
            admin,
        })
    }

    /// A marketplace calling `upstream`, once it is ready.
    async fn start_marketplace(
        &self,
        name: &str,
        upstream: SocketAddr,
    ) -> anyhow::Result<Marketplace> {
        let web = process::free_port()?;
        let admin = process::free_port()?;
        let envs = [
            ("MARKETPLACE_LISTEN", web.to_string()),
            ("MARKETPLACE_ADMIN_LISTEN", admin.to_string()),
            ("RECOMMENDATIONS_HOST", upstream.ip().to_string()),
            ("RECOMMENDATIONS_PORT", upstream.port().to_string()),
        ];
        let mut server = Server::start(
            name,
            &self.binary("marketplace")?,
            &[],
            &envs,
            &self.out,
            None,
        )?;
        server.wait_for_port(web, Duration::from_secs(10)).await?;
        let http = service_kit::tls::http_client()?;
        let ready = format!("http://{admin}/readyz");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !http
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ensure!(
                Instant::now() < deadline,
                "{name} was not ready within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Marketplace { server, web, admin })
    }
}
