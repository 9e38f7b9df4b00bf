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
//! Run by `.ci/run` (`--quick`: shorter overloads) and by `cargo xtask
//! bench`, which writes the results to docs/benchmarks/siege.md.
#![forbid(unsafe_code)]

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use bench::{
    attack::{self, Closures, H2_PREFACE, TLS_RECORD_HEADER},
    load::{self, GrpcLoad, HttpLoad},
    probe::{self, Stop, Tally},
    process::{self, Server},
    prometheus,
    report::{mebibytes as mib, micros, rate as thousands},
};
use clap::Parser;
use operations::testing::{
    Pki, Purpose,
    raw_h2::{ENHANCE_YOUR_CALM, REFUSED_STREAM, RawH2},
};
use prost::Message as _;
use protobufs::v1::{self, recommendations_service_client::RecommendationsServiceClient};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Attacks and overloads the release binaries and checks the bounds they
/// must hold (docs/limits.md).
#[derive(Debug, Parser)]
struct Args {
    /// Shorter overloads, and latency bounds reported but not enforced (as
    /// CI runs it); every other bound is enforced.
    #[arg(long)]
    quick: bool,
    /// Write the results to docs/benchmarks/siege.md.
    #[arg(long)]
    docs: bool,
    /// Where results and server logs go.
    #[arg(long, default_value = "target/siege")]
    out: PathBuf,
}

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

/// One call of a probe: whether it succeeded.
type Call = std::pin::Pin<Box<dyn Future<Output = bool> + Send>>;

const RECOMMEND: &str = "/bookstore.recommendations.v1.RecommendationsService/Recommend";
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
/// `RecommendRequest{user_id: 1, category: MYSTERY, max_results: 3}`.
const MESSAGE: [u8; 6] = [0x08, 0x01, 0x10, 0x01, 0x18, 0x03];
const HOMEPAGE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: siege\r\n\r\n";

/// The production defaults the bounds depend on (`--help` of each binary).
const MAX_CONCURRENT_STREAMS: usize = 100;
const GRPC_MAX_CONNECTIONS: usize = 1024;
const HTTP_MAX_CONNECTIONS: usize = 1024;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const ADMIN_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed past a timeout for the server to act on it.
const SLACK: Duration = Duration::from_secs(3);

/// File descriptors the siege needs at once (10,000 idle connections, and
/// the servers' own).
const FILES_NEEDED: u64 = 12_000;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("siege: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let files = open_files_limit()?;
    ensure!(
        files >= FILES_NEEDED,
        "the siege needs {FILES_NEEDED} open files and may have {files}: raise it with `ulimit -n {FILES_NEEDED}`"
    );
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the bench crate sits in the workspace")?
        .to_path_buf();
    let out = workspace.join(&args.out);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let binaries = std::env::current_exe()
        .context("locating the siege's binary")?
        .parent()
        .context("the siege's binary has a directory")?
        .to_path_buf();
    let mut siege = Siege {
        binaries,
        out: out.clone(),
        quick: args.quick,
        ticks: process::clock_ticks()?,
        checks: Vec::new(),
        overloads: Vec::new(),
    };

    siege.held_calls().await?;
    siege.zero_window().await?;
    siege.oversized_messages().await?;
    siege.reset_flood().await?;
    siege.slowloris().await?;
    siege.stalled_handshakes().await?;
    siege.idle_connections().await?;
    siege.overload_recommend().await?;
    siege.overload_homepage().await?;

    let report = siege.report();
    let results = out.join("siege.md");
    std::fs::write(&results, &report)
        .with_context(|| format!("cannot write {}", results.display()))?;
    if args.docs {
        let docs = workspace.join("docs/benchmarks/siege.md");
        std::fs::write(&docs, &report)
            .with_context(|| format!("cannot write {}", docs.display()))?;
    }
    println!("\n{report}");
    let failed: Vec<&Check> = siege.checks.iter().filter(|c| c.failed()).collect();
    for check in &failed {
        eprintln!("siege: FAILED: {}: {}", check.scenario, check.what);
    }
    eprintln!("siege: results in {}", results.display());
    if !failed.is_empty() {
        bail!("{} bound(s) not held", failed.len());
    }
    let mut scenarios: Vec<&str> = siege.checks.iter().map(|c| c.scenario).collect();
    scenarios.dedup();
    eprintln!("siege: {} scenarios held every bound", scenarios.len());
    Ok(())
}

/// The soft limit on open files, from /proc/self/limits.
fn open_files_limit() -> anyhow::Result<u64> {
    let limits =
        std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|soft| soft.parse().unwrap_or(u64::MAX))
        .context("no \"Max open files\" in /proc/self/limits")
}

/// One bound, held or not.
#[derive(Debug)]
struct Check {
    scenario: &'static str,
    what: String,
    held: bool,
    /// A latency bound: enforced on full runs only.
    timing: bool,
    quick: bool,
}

impl Check {
    fn failed(&self) -> bool {
        !(self.held || self.timing && self.quick)
    }
}

/// The figures of one overload.
#[derive(Debug)]
struct Overload {
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

struct Siege {
    binaries: PathBuf,
    out: PathBuf,
    quick: bool,
    ticks: u64,
    checks: Vec<Check>,
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

    /// Checks the peak RSS of `server` against [`MAX_PEAK_RSS`].
    fn check_memory(&mut self, scenario: &'static str, server: &Server) -> anyhow::Result<u64> {
        let peak = server.usage(self.ticks)?.peak_rss;
        self.check(
            scenario,
            peak <= MAX_PEAK_RSS,
            format!(
                "{} peak RSS {} (≤ {})",
                server.name(),
                mib(peak),
                mib(MAX_PEAK_RSS)
            ),
        );
        Ok(peak)
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
        let http = reqwest::Client::new();
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

    /// Checks that a well-behaved client was served and health answered
    /// in time while an attack went on.
    fn check_fairness(&mut self, scenario: &'static str, calls: &Tally, health: &Tally) {
        self.check(
            scenario,
            calls.ok_ratio() >= MIN_FAIR_SHARE,
            format!(
                "a client on another connection: {} of {} calls OK (≥ {:.0} %), p99 {}",
                calls.ok.len(),
                calls.calls(),
                MIN_FAIR_SHARE * 100.0,
                p99(calls)
            ),
        );
        self.check(
            scenario,
            health.failed == 0,
            format!(
                "health: {} of {} checks SERVING",
                health.ok.len(),
                health.calls()
            ),
        );
        self.check_latency(
            scenario,
            Duration::from_micros(health.max_us()) < MAX_HEALTH_LATENCY,
            format!(
                "health: slowest answer {} (< {})",
                micros(health.max_us() as f64),
                micros(MAX_HEALTH_LATENCY.as_micros() as f64)
            ),
        );
    }

    /// Attack 1: one connection opens 1,040 calls and never sends their
    /// messages, to take every call slot.
    async fn held_calls(&mut self) -> anyhow::Result<()> {
        self.one_connection_floods(
            "1. one connection holds 1,040 calls open",
            "held-calls",
            1040,
            Flood::HoldMessages,
        )
        .await
    }

    /// Attack 2: one connection opens 20,000 calls with a zero flow-control
    /// window, so that no response can be sent.
    async fn zero_window(&mut self) -> anyhow::Result<()> {
        self.one_connection_floods(
            "2. one connection opens 20,000 calls and reads nothing",
            "zero-window",
            20_000,
            Flood::ReadNothing,
        )
        .await
    }

    /// One connection opens `calls` Recommend calls at once, as `flood`
    /// says; all but the stream share must be refused, and a client on
    /// another connection served.
    async fn one_connection_floods(
        &mut self,
        scenario: &'static str,
        name: &str,
        calls: usize,
        flood: Flood,
    ) -> anyhow::Result<()> {
        let target = self.start_recommendations(name, None).await?;
        let mut attacker = match flood {
            Flood::HoldMessages => RawH2::connect(target.grpc, &[]).await?,
            Flood::ReadNothing => RawH2::connect_with_zero_window(target.grpc).await?,
        };
        for _ in 0..calls {
            let stream = attacker.open_call(RECOMMEND);
            if flood == Flood::ReadNothing {
                attacker.send_message(stream, MESSAGE.len() as u32, &MESSAGE, true);
            }
        }
        attacker.flush().await?;
        let refused = calls - MAX_CONCURRENT_STREAMS;
        let seen = attacker
            .read_until(Duration::from_secs(10), |seen| {
                seen.resets_with(REFUSED_STREAM) >= refused
            })
            .await;
        let (probe, health) = well_behaved_grpc(target.grpc).await;
        self.check(
            scenario,
            seen.resets_with(REFUSED_STREAM) == refused,
            format!(
                "{} of {calls} streams refused (REFUSED_STREAM), {MAX_CONCURRENT_STREAMS} admitted",
                seen.resets_with(REFUSED_STREAM)
            ),
        );
        self.check_fairness(scenario, &probe, &health);
        self.check_memory(scenario, &target.server)?;
        drop(attacker);
        target.server.stop().await
    }

    /// Attack 3: 24 health calls whose messages declare 4 MiB, half sent.
    async fn oversized_messages(&mut self) -> anyhow::Result<()> {
        const SCENARIO: &str = "3. 24 health messages declared 4 MiB, half sent";
        const CALLS: usize = 24;
        let target = self.start_recommendations("oversized", None).await?;
        let (statuses, (calls, health)) = tokio::join!(
            attack::half_sent_messages(target.grpc, HEALTH_CHECK, CALLS, 4 << 20, 60 * 1024),
            well_behaved_grpc(target.grpc),
        );
        let statuses = statuses?;
        // RESOURCE_EXHAUSTED is 8.
        let refused = statuses
            .iter()
            .filter(|s| s.as_deref() == Some("8"))
            .count();
        self.check(
            SCENARIO,
            refused == CALLS,
            format!("{refused} of {CALLS} ended RESOURCE_EXHAUSTED from the prefix"),
        );
        self.check_fairness(SCENARIO, &calls, &health);
        self.check_memory(SCENARIO, &target.server)?;
        target.server.stop().await
    }

    /// Rapid Reset (CVE-2023-44487): 1,000 × HEADERS + RST_STREAM.
    async fn reset_flood(&mut self) -> anyhow::Result<()> {
        const SCENARIO: &str = "Rapid Reset: 1,000 streams opened and reset";
        let target = self.start_recommendations("reset-flood", None).await?;
        let mut attacker = RawH2::connect(target.grpc, &[]).await?;
        for _ in 0..1000 {
            let stream = attacker.open_call(RECOMMEND);
            attacker.reset(stream);
        }
        attacker.flush().await?;
        let seen = attacker
            .read_until(Duration::from_secs(10), |seen| seen.goaway.is_some())
            .await;
        let (calls, health) = well_behaved_grpc(target.grpc).await;
        self.check(
            SCENARIO,
            seen.goaway == Some(ENHANCE_YOUR_CALM),
            format!("GOAWAY {:?} (ENHANCE_YOUR_CALM is 11)", seen.goaway),
        );
        self.check_fairness(SCENARIO, &calls, &health);
        self.check_memory(SCENARIO, &target.server)?;
        target.server.stop().await
    }

    /// Attack 5: 1,000 slowloris connections on each HTTP listener.
    async fn slowloris(&mut self) -> anyhow::Result<()> {
        const SCENARIO: &str = "5. slowloris: 1,000 connections per HTTP listener";
        const CONNECTIONS: usize = 1000;
        let upstream = self
            .start_recommendations("slowloris-upstream", None)
            .await?;
        let market = self.start_marketplace("slowloris", upstream.grpc).await?;
        let hold = |addr, timeout: Duration| {
            attack::hold_open(
                addr,
                CONNECTIONS,
                b"GET / HTTP/1.1\r\nHo",
                b"s",
                Duration::from_secs(1),
                timeout + SLACK,
            )
        };
        let (web, market_admin, upstream_admin, pages) = tokio::join!(
            hold(market.web, HEADER_READ_TIMEOUT),
            hold(market.admin, ADMIN_HEADER_READ_TIMEOUT),
            hold(upstream.admin, ADMIN_HEADER_READ_TIMEOUT),
            well_behaved_pages(market.web, 200),
        );
        for (listener, closures, timeout) in [
            ("marketplace web", web, HEADER_READ_TIMEOUT),
            ("marketplace admin", market_admin, ADMIN_HEADER_READ_TIMEOUT),
            (
                "recommendations admin",
                upstream_admin,
                ADMIN_HEADER_READ_TIMEOUT,
            ),
        ] {
            self.check_closures(SCENARIO, listener, closures, timeout);
        }
        self.check(
            SCENARIO,
            pages.ok_ratio() >= MIN_FAIR_SHARE,
            format!(
                "pages meanwhile: {} of {} OK, p99 {}",
                pages.ok.len(),
                pages.calls(),
                p99(&pages)
            ),
        );
        self.check_memory(SCENARIO, &market.server)?;
        self.check_memory(SCENARIO, &upstream.server)?;
        market.server.stop().await?;
        upstream.server.stop().await
    }

    fn check_closures(
        &mut self,
        scenario: &'static str,
        listener: &str,
        closures: Closures,
        timeout: Duration,
    ) {
        self.check(
            scenario,
            closures.closed == closures.attempted,
            format!(
                "{listener}: {} of {} connections closed, the last after {:.1} s (timeout {} s)",
                closures.closed,
                closures.attempted,
                closures.longest.as_secs_f64(),
                timeout.as_secs()
            ),
        );
    }

    /// Attack 6: 2,000 TLS handshakes that stall after a record header.
    async fn stalled_handshakes(&mut self) -> anyhow::Result<()> {
        const SCENARIO: &str = "6. 2,000 stalled TLS handshakes";
        const CONNECTIONS: usize = 2000;
        let pki = Pki::new();
        let target = self
            .start_recommendations("stalled-tls", Some(&pki))
            .await?;
        let files_before = target.server.open_files()?;
        let closures = attack::hold_open(
            target.grpc,
            CONNECTIONS,
            TLS_RECORD_HEADER,
            b"",
            Duration::from_secs(1),
            HANDSHAKE_TIMEOUT + SLACK,
        )
        .await;
        self.check_closures(
            SCENARIO,
            "recommendations gRPC (TLS)",
            closures,
            HANDSHAKE_TIMEOUT,
        );
        let files_after = target.server.open_files()?;
        self.check(
            SCENARIO,
            files_after <= files_before + 4,
            format!("open files {files_before} before, {files_after} after"),
        );
        self.check_memory(SCENARIO, &target.server)?;
        target.server.stop().await
    }

    /// Attack 7: 10,000 idle connections to each service.
    async fn idle_connections(&mut self) -> anyhow::Result<()> {
        const SCENARIO: &str = "7. 10,000 idle connections to each service";
        const CONNECTIONS: usize = 10_000;
        let upstream = self.start_recommendations("idle-upstream", None).await?;
        let market = self.start_marketplace("idle", upstream.grpc).await?;

        let pages = attack::idle(market.web, CONNECTIONS, HOMEPAGE_REQUEST, true).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let open = attack::still_open(&pages);
        self.check(
            SCENARIO,
            open <= HTTP_MAX_CONNECTIONS,
            format!(
                "marketplace: {open} of {CONNECTIONS} idle connections held (cap {HTTP_MAX_CONNECTIONS}), the rest closed at once"
            ),
        );
        drop(pages);

        let calls = attack::idle(upstream.grpc, CONNECTIONS, H2_PREFACE, false).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let open = attack::still_open(&calls);
        self.check(
            SCENARIO,
            open <= GRPC_MAX_CONNECTIONS,
            format!(
                "recommendations: {open} of {CONNECTIONS} idle connections held (cap {GRPC_MAX_CONNECTIONS}), the rest closed at once"
            ),
        );
        drop(calls);

        self.check_memory(SCENARIO, &market.server)?;
        self.check_memory(SCENARIO, &upstream.server)?;
        market.server.stop().await?;
        upstream.server.stop().await
    }

    /// Attack 4 and the overload figures: h2load offers 64 connections ×
    /// 256 streams (16,384 calls at once; HTTP/2 lets it open 100 per
    /// connection) while probes measure what a well-behaved client, the
    /// readiness probe (gRPC health) and the liveness probe (`/healthz`) get.
    async fn overload_recommend(&mut self) -> anyhow::Result<()> {
        const SCENARIO: &str = "4. Recommend: 16,384 calls offered at once";
        let calls: u64 = if self.quick { 100_000 } else { 1_000_000 };
        let target = self.start_recommendations("overload", None).await?;
        let body = self.out.join("recommend-request.bin");
        let request = v1::RecommendRequest {
            user_id: 1,
            category: v1::Category::Mystery as i32,
            max_results: 3,
        };
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(request.encoded_len() as u32).to_be_bytes());
        request.encode(&mut framed)?;
        std::fs::write(&body, framed)
            .with_context(|| format!("cannot write {}", body.display()))?;
        let log = self.out.join("overload-h2load.log");
        let load = GrpcLoad {
            url: format!("http://{}{RECOMMEND}", target.grpc),
            body: &body,
            calls,
            connections: 64,
            streams: 256,
            log: &log,
            cpus: None,
        };

        let http = reqwest::Client::new();
        let (outcome, [probe, readiness, liveness], seconds) = during(
            load::h2load(&load),
            recommend_call(target.grpc),
            health_call(target.grpc),
            page_call(
                &http,
                format!("http://{}/healthz", target.admin),
                PROBE_TIMEOUT,
            ),
        )
        .await;
        let outcome = outcome?;
        let metrics = scrape(target.admin).await?;
        let counted = |code: &str| {
            prometheus::sum(
                &metrics,
                "grpc_server_requests_total",
                &[
                    &format!(r#"method="{RECOMMEND}""#),
                    &format!(r#"code="{code}""#),
                ],
            )
        };
        let ok = counted("OK") - probe.ok.len() as f64;
        let refused = counted("RESOURCE_EXHAUSTED") + outcome.summary.failed as f64;
        self.check(
            SCENARIO,
            outcome.summary.done == calls && ok + refused >= calls as f64,
            format!(
                "{calls} calls made: {ok:.0} OK, {refused:.0} refused (RESOURCE_EXHAUSTED or REFUSED_STREAM), none lost; p99 as h2load saw it {}",
                micros(outcome.latency.p99_us)
            ),
        );
        self.check_probes(
            SCENARIO,
            &[
                ("readiness (gRPC health)", &readiness),
                ("liveness (/healthz)", &liveness),
            ],
        );
        let peak = self.check_memory(SCENARIO, &target.server)?;
        self.overloads.push(Overload {
            service: "recommendations (Recommend)",
            offered: "h2load, 64 connections × 256 streams".to_owned(),
            seconds,
            accepted: ok,
            refused,
            probe,
            health: vec![("readiness", readiness), ("liveness", liveness)],
            peak_rss: vec![(target.server.name().to_owned(), peak)],
        });
        target.server.stop().await
    }

    /// Checks that every health probe was answered within the kubelet's
    /// timeout, and reports their p99.
    fn check_probes(&mut self, scenario: &'static str, probes: &[(&str, &Tally)]) {
        for (name, tally) in probes {
            self.check(
                scenario,
                tally.failed == 0,
                format!(
                    "{name}: {} of {} probes answered within {} s, p99 {}, slowest {}",
                    tally.ok.len(),
                    tally.calls(),
                    PROBE_TIMEOUT.as_secs(),
                    p99(tally),
                    micros(tally.max_us() as f64)
                ),
            );
        }
    }

    /// Pages offered on 4,096 connections: four times the connection cap
    /// and eight times the requests allowed in flight.
    async fn overload_homepage(&mut self) -> anyhow::Result<()> {
        const SCENARIO: &str = "4. Homepage: 4,096 connections";
        let duration = Duration::from_secs(if self.quick { 3 } else { 10 });
        let upstream = self
            .start_recommendations("overload-pages-upstream", None)
            .await?;
        let market = self
            .start_marketplace("overload-pages", upstream.grpc)
            .await?;
        let load = HttpLoad {
            url: format!("http://{}/", market.web),
            duration,
            connections: 4096,
            threads: 1,
            cpus: None,
        };
        let http = reqwest::Client::new();
        let (outcome, [probe, readiness, liveness], seconds) = during(
            load::wrk(&load),
            page_call(
                &http,
                format!("http://{}/", market.web),
                Duration::from_secs(10),
            ),
            page_call(
                &http,
                format!("http://{}/readyz", market.admin),
                PROBE_TIMEOUT,
            ),
            page_call(
                &http,
                format!("http://{}/healthz", market.admin),
                PROBE_TIMEOUT,
            ),
        )
        .await;
        let outcome = outcome?;
        let metrics = scrape(market.admin).await?;
        let ok = prometheus::sum(
            &metrics,
            "http_server_requests_total",
            &[r#"route="/""#, r#"status="200""#],
        ) - probe.ok.len() as f64;
        let refused = outcome.non_2xx_3xx as f64;
        self.check(
            SCENARIO,
            refused > 0.0 && ok > 0.0,
            format!(
                "{ok:.0} pages OK, {refused:.0} refused with 503, {} socket errors (connections over the cap closed at once)",
                outcome.socket_errors
            ),
        );
        self.check_probes(
            SCENARIO,
            &[
                ("readiness (/readyz)", &readiness),
                ("liveness (/healthz)", &liveness),
            ],
        );
        let market_peak = self.check_memory(SCENARIO, &market.server)?;
        let upstream_peak = self.check_memory(SCENARIO, &upstream.server)?;
        self.overloads.push(Overload {
            service: "marketplace (homepage)",
            offered: "wrk, 4,096 connections".to_owned(),
            seconds,
            accepted: ok,
            refused,
            probe,
            health: vec![("readiness", readiness), ("liveness", liveness)],
            peak_rss: vec![
                (market.server.name().to_owned(), market_peak),
                (upstream.server.name().to_owned(), upstream_peak),
            ],
        });
        market.server.stop().await?;
        upstream.server.stop().await
    }

    fn report(&self) -> String {
        let mut text = String::from("# Siege: attacks and overload\n\n");
        let _ = writeln!(
            text,
            "Written by `target/release/siege{}` (`bench/src/bin/siege.rs`): the release binaries at \
             their production defaults, a fresh process per scenario, peak RSS is VmHWM. The attacks \
             and limits are described in [docs/limits.md](../limits.md).{}\n",
            if self.quick { " --quick" } else { "" },
            if self.quick {
                " A quick run: latency bounds are reported, not enforced."
            } else {
                ""
            }
        );
        text.push_str("## Overload\n\n");
        text.push_str(
            "| Service | Offered | Accepted/s | Refused/s | Probe: OK, OK p99 | Health probes: p99, slowest | Peak RSS |\n\
             | --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for o in &self.overloads {
            let rss: Vec<String> = o
                .peak_rss
                .iter()
                .map(|(name, peak)| format!("{name} {}", mib(*peak)))
                .collect();
            let health: Vec<String> = o
                .health
                .iter()
                .map(|(name, tally)| {
                    format!("{name} {}, {}", p99(tally), micros(tally.max_us() as f64))
                })
                .collect();
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} | {:.1} % of {}, {} | {} | {} |",
                o.service,
                o.offered,
                thousands(o.accepted / o.seconds),
                thousands(o.refused / o.seconds),
                o.probe.ok_ratio() * 100.0,
                o.probe.calls(),
                p99(&o.probe),
                health.join("; "),
                rss.join(", ")
            );
        }
        text.push_str(
            "\nThe probe is one client on a connection of its own making calls back to back; it is \
             shed like any other client when the service is full. The health probes ask every \
             10 ms, as kubernetes.yaml's probes do (readiness: gRPC `Health/Check` or `/readyz`; \
             liveness: the admin `/healthz`), and count as failed past the kubelet's 1 s timeout.\n\n",
        );
        text.push_str("## Bounds\n\n| Scenario | Bound | Held |\n| --- | --- | --- |\n");
        for check in &self.checks {
            let held = match (check.held, check.failed()) {
                (true, _) => "yes",
                (false, false) => "no (latency, not enforced on a quick run)",
                (false, true) => "**no**",
            };
            let _ = writeln!(text, "| {} | {} | {held} |", check.scenario, check.what);
        }
        text
    }
}

/// Runs `load` while `probe` calls back to back and the `readiness` and
/// `liveness` probes ask every 10 ms, as the kubelet would; returns what the
/// load gave, the three tallies, and how many seconds it all took.
async fn during<T>(
    load: impl Future<Output = T>,
    probe: impl FnMut() -> Call,
    readiness: impl FnMut() -> Call,
    liveness: impl FnMut() -> Call,
) -> (T, [Tally; 3], f64) {
    let stop = Stop::default();
    let started = Instant::now();
    let every = Duration::from_millis(10);
    let (outcome, probe, readiness, liveness) = tokio::join!(
        async {
            let outcome = load.await;
            stop.now();
            outcome
        },
        probe::repeat(probe, Duration::ZERO, usize::MAX, stop.clone()),
        probe::repeat(readiness, every, usize::MAX, stop.clone()),
        probe::repeat(liveness, every, usize::MAX, stop.clone()),
    );
    (
        outcome,
        [probe, readiness, liveness],
        started.elapsed().as_secs_f64(),
    )
}

/// 200 Recommend calls and 20 health checks, each on a connection of its
/// own, while an attack goes on.
async fn well_behaved_grpc(addr: SocketAddr) -> (Tally, Tally) {
    let stop = Stop::default();
    tokio::join!(
        probe::repeat(recommend_call(addr), Duration::ZERO, 200, stop.clone()),
        probe::repeat(health_call(addr), Duration::from_millis(10), 20, stop),
    )
}

/// `calls` homepages, back to back.
async fn well_behaved_pages(addr: SocketAddr, calls: usize) -> Tally {
    let http = reqwest::Client::new();
    probe::repeat(
        page_call(&http, format!("http://{addr}/"), Duration::from_secs(10)),
        Duration::from_millis(10),
        calls,
        Stop::default(),
    )
    .await
}

/// A connection of its own to `addr`, each call waiting up to `timeout`.
fn channel(addr: SocketAddr, timeout: Duration) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a socket address makes a valid URI")
        .timeout(timeout)
        .connect_lazy()
}

fn recommend_call(addr: SocketAddr) -> impl FnMut() -> Call {
    let client = RecommendationsServiceClient::new(channel(addr, Duration::from_secs(10)));
    move || {
        let mut client = client.clone();
        Box::pin(async move {
            let request = v1::RecommendRequest {
                user_id: 1,
                category: v1::Category::Mystery as i32,
                max_results: 3,
            };
            client.recommend(request).await.is_ok()
        })
    }
}

fn health_call(addr: SocketAddr) -> impl FnMut() -> Call {
    let client = HealthClient::new(channel(addr, PROBE_TIMEOUT));
    move || {
        let mut client = client.clone();
        Box::pin(async move {
            client
                .check(HealthCheckRequest::default())
                .await
                .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
        })
    }
}

fn page_call(http: &reqwest::Client, url: String, timeout: Duration) -> impl FnMut() -> Call {
    let http = http.clone();
    move || {
        let request = http.get(&url).timeout(timeout);
        Box::pin(async move {
            request
                .send()
                .await
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
        })
    }
}

async fn scrape(admin: SocketAddr) -> anyhow::Result<String> {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("scraping http://{admin}/metrics"))?
        .text()
        .await?;
    Ok(text)
}

fn p99(tally: &Tally) -> String {
    tally
        .latency()
        .map_or_else(|| "n/a".to_owned(), |l| micros(l.p99_us))
}
