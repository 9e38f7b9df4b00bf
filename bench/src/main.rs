//! The benchmark suite, run by `cargo xtask bench` (see README.md,
//! "Benchmarks"). In one run, on this machine:
//!
//! 1. gRPC: h2load makes a fixed number of Recommend calls, on each
//!    contract, to the real recommendations service and to a bare tonic
//!    server with the same handler (the ceiling). Every call is proved to
//!    have succeeded: HTTP 200 per h2load's log, exactly one response
//!    message per call by the bytes received, and, for the service, its own
//!    count of OK calls.
//! 2. HTTP: wrk loads the homepage (marketplace + recommendations) and the
//!    same page served as a static file by bare axum (the ceiling); no
//!    response may be other than 200 and no page degraded.
//! 3. Cost: CPU per request (utime + stime from /proc over the measured run)
//!    and peak RSS (VmHWM) of every process.
//! 4. Criterion: Recommend at 10, 10,000 and 1,000,000 books, and the load
//!    time of the largest catalog.
//!
//! Results go to `target/bench/` and, for a full run, into README.md and
//! `docs/benchmarks/`. A missed target makes a full run fail.
#![forbid(unsafe_code)]

use std::{
    net::SocketAddr,
    num::NonZeroUsize,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, SystemTime},
};

use anyhow::{Context, bail, ensure};
use bench::{
    catalog_load::CatalogLoad,
    checks::{self, CallCounts, PageCounts},
    criterion,
    load::{self, GrpcLoad, HttpLoad},
    process::{self, Server, Usage},
    prometheus,
    report::{self, Comparison, Figures, Machine, Memory, Results, Target},
};
use clap::Parser;
use prost::Message as _;
use protobufs::{legacy, v1};

/// Runs the benchmark suite against release builds of both services and
/// their ceilings, and reports the figures.
#[derive(Debug, Parser)]
struct Args {
    /// A short run that checks the suite itself works (as CI does): the
    /// figures mean little, targets are reported but not enforced, and the
    /// README is left alone.
    #[arg(long)]
    quick: bool,
    /// Do not rewrite README.md's results and docs/benchmarks/.
    #[arg(long)]
    no_docs: bool,
    /// Runtime worker threads of every server, services and ceilings alike.
    /// The default, 1, is what kubernetes.yaml's limit of one CPU gives;
    /// a full run also measures the homepage with a worker per CPU.
    #[arg(long, default_value = "1")]
    worker_threads: NonZeroUsize,
    /// Do not pin the gRPC runs: by default h2load runs on CPU 0 and the
    /// server under load on the others, so that neither steals the other's
    /// CPU. (The homepage runs are not pinned: two services and wrk on two
    /// CPUs do best when the scheduler places them.)
    #[arg(long)]
    no_pin: bool,
    /// Run one part only (for profiling); the docs are left alone.
    #[arg(long, value_enum)]
    only: Option<Phase>,
    /// Where results and logs go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

/// A part of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    /// Recommend on both contracts, with h2load.
    Grpc,
    /// The homepage, with wrk.
    Http,
    /// The Criterion benchmarks.
    Criterion,
}

/// How much load each run makes.
#[derive(Clone, Copy, Debug)]
struct Plan {
    calls: u64,
    warmup_calls: u64,
    page_time: Duration,
    warmup_time: Duration,
    rounds: usize,
}

const FULL: Plan = Plan {
    calls: 300_000,
    warmup_calls: 20_000,
    page_time: Duration::from_secs(10),
    warmup_time: Duration::from_secs(2),
    rounds: 5,
};

const QUICK: Plan = Plan {
    calls: 20_000,
    warmup_calls: 2_000,
    page_time: Duration::from_secs(2),
    warmup_time: Duration::from_secs(1),
    rounds: 1,
};

/// h2load's shape: like the marketplace, few connections with many calls
/// multiplexed on each.
const GRPC_CONNECTIONS: u32 = 8;
const GRPC_STREAMS: u32 = 16;
/// wrk's shape: browsers keep connections open and reuse them.
const HTTP_CONNECTIONS: u32 = 64;
const HTTP_THREADS: u32 = 1;

/// Books per category in the gRPC runs' catalog. Every book encodes to the
/// same size (ids 1000 to 3999 are two-byte varints, titles and authors
/// have a fixed width), so each OK response has a size known in advance.
const BOOKS_PER_CATEGORY: i32 = 1000;
const FIRST_ID: i32 = 1000;

/// The homepage scenarios: with `--worker-threads`, and as the services run
/// by default (a worker per CPU).
const HOMEPAGE: &str = "Homepage";
const HOMEPAGE_DEFAULT_WORKERS: &str = "Homepage, a worker per CPU";

/// The service's targets (README.md, "Benchmarks").
const MIN_RATE_RATIO: f64 = 0.90;
const MAX_CPU_RATIO: f64 = 1.15;
const MAX_CPU_PER_PAGE_US: f64 = 40.0;
const MAX_PEAK_RSS: u64 = 20_000_000;
const MIN_SCALE_RATIO: f64 = 0.90;
/// The catalog's peak memory while loading, over its file's size (issue 14).
const MAX_CATALOG_RATIO: f64 = 2.5;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let plan = if args.quick { QUICK } else { FULL };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the bench crate sits in the workspace")?
        .to_path_buf();
    let out = workspace.join(&args.out);
    let work = out.join("work");
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let binaries = std::env::current_exe()
        .context("locating the suite's binary")?
        .parent()
        .context("the suite's binary has a directory")?
        .to_path_buf();
    let suite = Suite {
        placement: Placement::new(Some(args.worker_threads), !args.no_pin),
        binaries,
        work,
        plan,
        ticks: process::clock_ticks()?,
        http: reqwest::Client::new(),
    };
    let machine = machine().await?;
    eprintln!(
        "bench: {} ({} cores), {}",
        machine.cpu, machine.cores, machine.tools
    );

    let runs = |phase: Phase| args.only.is_none_or(|only| only == phase);
    let (mut comparisons, mut memory) = (Vec::new(), Vec::new());
    if runs(Phase::Grpc) {
        let (grpc, grpc_memory) = suite.grpc().await?;
        comparisons.extend(grpc);
        memory.extend(grpc_memory);
    }
    if runs(Phase::Http) {
        let placement = Placement::new(suite.placement.workers, false);
        let (homepage, http_memory) = suite.http(&placement, HOMEPAGE).await?;
        comparisons.push(homepage);
        memory.extend(http_memory);
        if !args.quick {
            let machine_default = Placement::new(None, false);
            let (homepage, http_memory) = suite
                .http(&machine_default, HOMEPAGE_DEFAULT_WORKERS)
                .await?;
            comparisons.push(homepage);
            memory.extend(http_memory);
        }
    }
    let catalog = if runs(Phase::Criterion) {
        eprintln!("bench: the 1,000,000-book catalog at start-up");
        Some(
            bench::catalog_load::measure(
                &suite.binary("recommendations")?,
                &suite.work,
                suite.ticks,
            )
            .await?,
        )
    } else {
        None
    };
    let criterion = if !runs(Phase::Criterion) {
        None
    } else {
        let started = SystemTime::now();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        criterion::run(&cargo, &workspace, args.quick).await?;
        Some(criterion::read(
            &workspace.join("target/criterion"),
            started,
        )?)
    };

    let targets = targets(&comparisons, &memory, criterion.as_ref(), catalog.as_ref());
    let results = Results {
        quick: args.quick,
        machine,
        comparisons,
        memory,
        criterion,
        catalog,
        targets,
    };
    write_results(&results, &out, "chart.svg")?;
    if !args.quick && !args.no_docs && args.only.is_none() {
        update_docs(&results, &workspace)?;
    }

    println!("\n{}", report::markdown(&results, "chart.svg"));
    eprintln!("bench: results in {}", out.display());
    let missed = results.targets.iter().filter(|t| !t.met).count();
    if args.quick {
        eprintln!("bench: a quick run checks the suite; its figures are not the service's");
    } else if missed > 0 {
        bail!("{missed} target(s) missed");
    }
    Ok(())
}

/// How the servers and the load generators share the machine.
#[derive(Clone, Debug)]
struct Placement {
    /// `--worker-threads` of every server (None: their default).
    workers: Option<NonZeroUsize>,
    /// The CPUs of the servers, if pinned.
    servers: Option<String>,
    /// The CPUs of h2load and wrk, if pinned.
    load: Option<String>,
}

impl Placement {
    /// With `pin` on a machine of two CPUs or more: load on CPU 0, servers on
    /// the rest.
    fn new(workers: Option<NonZeroUsize>, pin: bool) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let (servers, load) = match cpus {
            2 if pin => (Some("1".to_owned()), Some("0".to_owned())),
            3.. if pin => (Some(format!("1-{}", cpus - 1)), Some("0".to_owned())),
            _ => (None, None),
        };
        Self {
            workers,
            servers,
            load,
        }
    }

    /// How the load report describes it.
    fn label(&self) -> String {
        let workers = match self.workers {
            Some(n) if n.get() == 1 => "one worker thread per server".to_owned(),
            Some(n) => format!("{n} worker threads per server"),
            None => "a worker thread per CPU per server".to_owned(),
        };
        match (&self.servers, &self.load) {
            (Some(servers), Some(load)) => {
                format!("{workers}; servers on CPU {servers}, load generator on CPU {load}")
            }
            _ => format!("{workers}; nothing pinned"),
        }
    }
}

struct Suite {
    placement: Placement,
    binaries: PathBuf,
    work: PathBuf,
    plan: Plan,
    ticks: u64,
    http: reqwest::Client,
}

/// One of the two Recommend contracts, as h2load sends it.
struct Contract {
    name: &'static str,
    path: &'static str,
    body: PathBuf,
    /// The bytes of one OK response: the 5-byte frame header and the message.
    response_bytes: u64,
}

/// What one h2load run gave.
struct GrpcRun {
    outcome: load::GrpcOutcome,
    counted: Option<CallCounts>,
    usage: (Usage, Usage),
}

/// A gRPC server under load.
struct GrpcTarget<'a> {
    server: &'a Server,
    addr: SocketAddr,
    /// The admin listener, for the service's own count of calls.
    admin: Option<SocketAddr>,
}

impl Suite {
    fn binary(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.binaries.join(name);
        ensure!(
            path.exists(),
            "{} is missing: build with `cargo build --release -p recommendations -p marketplace -p bench` (or run `cargo xtask bench`)",
            path.display()
        );
        Ok(path)
    }

    /// The recommendations binary serving `catalog` (the built-in one if
    /// none), once it listens: the process, its gRPC and its admin address.
    async fn start_recommendations(
        &self,
        name: &str,
        placement: &Placement,
        catalog: Option<&Path>,
    ) -> anyhow::Result<(Server, SocketAddr, SocketAddr)> {
        let addr = process::free_port()?;
        let admin = process::free_port()?;
        let mut envs = vec![
            ("RECOMMENDATIONS_LISTEN", addr.to_string()),
            ("RECOMMENDATIONS_ADMIN_LISTEN", admin.to_string()),
            ("RUST_LOG", "info".to_owned()),
        ];
        if let Some(catalog) = catalog {
            envs.push(("RECOMMENDATIONS_CATALOG", catalog.display().to_string()));
        }
        let mut server = Server::start(
            name,
            &self.binary("recommendations")?,
            &threads(placement.workers),
            &envs,
            &self.work,
            placement.servers.as_deref(),
        )?;
        server.wait_for_port(addr, Duration::from_secs(10)).await?;
        Ok((server, addr, admin))
    }

    /// Recommend on both contracts: the service against bare tonic.
    async fn grpc(&self) -> anyhow::Result<(Vec<Comparison>, Vec<Memory>)> {
        let catalog = self.work.join("bench-catalog.csv");
        write_catalog(&catalog)?;
        let contracts = contracts(&self.work)?;

        let (service, addr, admin) = self
            .start_recommendations("recommendations", &self.placement, Some(&catalog))
            .await?;
        let bare_addr = process::free_port()?;
        let mut bare = Server::start(
            "bare-tonic",
            &self.binary("bare-tonic")?,
            &[
                threads(self.placement.workers),
                vec![
                    format!("--listen={bare_addr}"),
                    format!("--catalog={}", catalog.display()),
                ],
            ]
            .concat(),
            &[],
            &self.work,
            self.placement.servers.as_deref(),
        )?;
        bare.wait_for_port(bare_addr, Duration::from_secs(10))
            .await?;

        let service_target = GrpcTarget {
            server: &service,
            addr,
            admin: Some(admin),
        };
        let bare_target = GrpcTarget {
            server: &bare,
            addr: bare_addr,
            admin: None,
        };
        let mut rounds: Vec<Vec<(Figures, Figures)>> = vec![Vec::new(); contracts.len()];
        for round in 0..self.plan.rounds {
            for (contract, results) in contracts.iter().zip(&mut rounds) {
                eprintln!("bench: round {}, Recommend ({})", round + 1, contract.name);
                // Who goes first alternates, so that a machine speeding up
                // or slowing down favours neither side.
                let (measured, ceiling) = if round % 2 == 0 {
                    let ceiling = self.grpc_run(&bare_target, contract).await?;
                    (self.grpc_run(&service_target, contract).await?, ceiling)
                } else {
                    let measured = self.grpc_run(&service_target, contract).await?;
                    (measured, self.grpc_run(&bare_target, contract).await?)
                };
                results.push((measured, ceiling));
            }
        }
        self.negative_control(&service_target, &contracts[0])
            .await?;
        let memory = vec![
            memory(&service, "Recommend, both contracts", self.ticks)?,
            memory(&bare, "Recommend, both contracts", self.ticks)?,
        ];
        service.stop().await?;
        bare.stop().await?;

        let comparisons = contracts
            .iter()
            .zip(rounds)
            .map(|(contract, rounds)| Comparison {
                scenario: format!("Recommend ({})", contract.name),
                load: format!(
                    "h2load, {GRPC_CONNECTIONS} connections × {GRPC_STREAMS} streams, {} calls per round, {} rounds, {}",
                    self.plan.calls,
                    self.plan.rounds,
                    self.placement.label()
                ),
                service: "recommendations".to_owned(),
                ceiling: "bare tonic".to_owned(),
                service_figures: Figures::median(&rounds.iter().map(|r| r.0).collect::<Vec<_>>()),
                ceiling_figures: Figures::median(&rounds.iter().map(|r| r.1).collect::<Vec<_>>()),
                rounds,
                checked: format!(
                    "every call checked: HTTP 200 in h2load's log, exactly {} response bytes each (one message, so no gRPC error), and the service's own count of OK calls",
                    contract.response_bytes
                ),
            })
            .collect();
        Ok((comparisons, memory))
    }

    /// A warm-up, then one measured run of fixed size, checked call by call.
    async fn grpc_run(
        &self,
        target: &GrpcTarget<'_>,
        contract: &Contract,
    ) -> anyhow::Result<Figures> {
        self.h2load(
            target,
            contract.path,
            &contract.body,
            self.plan.warmup_calls,
        )
        .await?;
        let calls = self.plan.calls;
        let run = self
            .h2load(target, contract.path, &contract.body, calls)
            .await?;
        checks::grpc_run(
            target.server.name(),
            calls,
            contract.response_bytes,
            &run.outcome,
            run.counted,
        )?;
        Ok(Figures {
            rate: run.outcome.summary.rate,
            p50_us: run.outcome.latency.p50_us,
            p99_us: run.outcome.latency.p99_us,
            cpu_us: cpu_per_request(&[run.usage], calls),
        })
    }

    /// The negative control: calls that all fail (an unknown category,
    /// INVALID_ARGUMENT behind HTTP 200) must not pass the checks.
    async fn negative_control(
        &self,
        target: &GrpcTarget<'_>,
        contract: &Contract,
    ) -> anyhow::Result<()> {
        let body = self.work.join("failing-request.bin");
        let request = v1::RecommendRequest {
            user_id: 1,
            category: 99,
            max_results: 3,
        };
        std::fs::write(&body, frame(request.encode_to_vec())?)
            .with_context(|| format!("cannot write {}", body.display()))?;
        let calls = 1000;
        let run = self.h2load(target, contract.path, &body, calls).await?;
        match checks::grpc_run(
            target.server.name(),
            calls,
            contract.response_bytes,
            &run.outcome,
            run.counted,
        ) {
            Ok(()) => {
                bail!("the checks passed {calls} calls that all failed with INVALID_ARGUMENT")
            }
            Err(err) => eprintln!(
                "bench: negative control: {calls} failing calls behind HTTP 200 were caught ({err})"
            ),
        }
        Ok(())
    }

    /// One h2load run of `calls` posting `body` to `path`, with the CPU the
    /// server used and, if it counts calls, what it counted.
    async fn h2load(
        &self,
        target: &GrpcTarget<'_>,
        path: &str,
        body: &Path,
        calls: u64,
    ) -> anyhow::Result<GrpcRun> {
        let log = self.work.join("h2load.tsv");
        let grpc_load = GrpcLoad {
            url: format!("http://{}{path}", target.addr),
            body,
            calls,
            connections: GRPC_CONNECTIONS,
            streams: GRPC_STREAMS,
            log: &log,
            cpus: self.placement.load.as_deref(),
        };
        let count = |text: &str, code: Option<&str>| {
            let method = format!("method=\"{path}\"");
            let code = code.map(|code| format!("code=\"{code}\""));
            let mut labels = vec![method.as_str()];
            labels.extend(code.as_deref());
            prometheus::sum(text, "grpc_server_requests_total", &labels)
        };
        let before_metrics = self.scrape(target.admin).await?;
        let before = target.server.usage(self.ticks)?;
        let outcome = load::h2load(&grpc_load).await?;
        let after = target.server.usage(self.ticks)?;
        let after_metrics = self.scrape(target.admin).await?;
        let counted = before_metrics
            .zip(after_metrics)
            .map(|(before, after)| CallCounts {
                ok: count(&after, Some("OK")) - count(&before, Some("OK")),
                all: count(&after, None) - count(&before, None),
            });
        Ok(GrpcRun {
            outcome,
            counted,
            usage: (before, after),
        })
    }

    /// The homepage (marketplace + recommendations) against bare axum
    /// serving the same page.
    async fn http(
        &self,
        placement: &Placement,
        scenario: &str,
    ) -> anyhow::Result<(Comparison, Vec<Memory>)> {
        let (recommendations, grpc, grpc_admin) = self
            .start_recommendations("recommendations-for-pages", placement, None)
            .await?;
        let web = process::free_port()?;
        let web_admin = process::free_port()?;
        let mut marketplace = Server::start(
            "marketplace",
            &self.binary("marketplace")?,
            &threads(placement.workers),
            &[
                ("MARKETPLACE_LISTEN", web.to_string()),
                ("MARKETPLACE_ADMIN_LISTEN", web_admin.to_string()),
                ("RECOMMENDATIONS_HOST", grpc.ip().to_string()),
                ("RECOMMENDATIONS_PORT", grpc.port().to_string()),
                ("RUST_LOG", "info".to_owned()),
            ],
            &self.work,
            placement.servers.as_deref(),
        )?;
        marketplace
            .wait_for_port(web, Duration::from_secs(10))
            .await?;

        // The ceiling serves the very page the marketplace renders.
        let page = self.homepage(web).await?;
        let page_file = self.work.join("homepage.html");
        std::fs::write(&page_file, &page)
            .with_context(|| format!("cannot write {}", page_file.display()))?;
        let bare_addr = process::free_port()?;
        let mut bare = Server::start(
            "bare-axum",
            &self.binary("bare-axum")?,
            &[
                threads(placement.workers),
                vec![
                    format!("--listen={bare_addr}"),
                    format!("--page={}", page_file.display()),
                ],
            ]
            .concat(),
            &[],
            &self.work,
            placement.servers.as_deref(),
        )?;
        bare.wait_for_port(bare_addr, Duration::from_secs(10))
            .await?;

        let mut rounds = Vec::new();
        for round in 0..self.plan.rounds {
            eprintln!("bench: round {}, homepage", round + 1);
            let (bare_servers, servers) = ([&bare], [&marketplace, &recommendations]);
            let ceiling = || self.http_run(&bare_servers, bare_addr, None, placement);
            let measured =
                || self.http_run(&servers, web, Some((web_admin, grpc_admin)), placement);
            // Alternating who goes first, as for gRPC.
            let pair = if round % 2 == 0 {
                let ceiling = ceiling().await?;
                (measured().await?, ceiling)
            } else {
                let measured = measured().await?;
                (measured, ceiling().await?)
            };
            rounds.push(pair);
        }
        let memory = vec![
            memory(&marketplace, scenario, self.ticks)?,
            memory(&recommendations, scenario, self.ticks)?,
            memory(&bare, scenario, self.ticks)?,
        ];
        marketplace.stop().await?;
        recommendations.stop().await?;
        bare.stop().await?;

        let comparison = Comparison {
            scenario: scenario.to_owned(),
            load: format!(
                "wrk, {HTTP_CONNECTIONS} keep-alive connections, {} s per round, {} rounds, {}; the page is {} bytes",
                self.plan.page_time.as_secs(),
                self.plan.rounds,
                placement.label(),
                page.len()
            ),
            service: "marketplace + recommendations".to_owned(),
            ceiling: "bare axum, static copy".to_owned(),
            service_figures: Figures::median(&rounds.iter().map(|r| r.0).collect::<Vec<_>>()),
            ceiling_figures: Figures::median(&rounds.iter().map(|r| r.1).collect::<Vec<_>>()),
            rounds,
            checked: "no response other than 2xx (wrk), every page counted as 200 by the marketplace, none degraded, and one OK Recommend per page counted by recommendations; CPU is both services' together".to_owned(),
        };
        Ok((comparison, memory))
    }

    /// The homepage as the marketplace renders it, checked to be whole.
    async fn homepage(&self, web: SocketAddr) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("http://{web}/"))
            .send()
            .await
            .context("fetching the homepage")?;
        let status = response.status();
        let page = response.text().await.context("reading the homepage")?;
        ensure!(
            status == reqwest::StatusCode::OK
                && page.matches("<li>").count() == 3
                && !page.contains("role=\"status\""),
            "the homepage is not whole ({status}):\n{page}"
        );
        Ok(page)
    }

    /// A warm-up, then one measured run of fixed time. `admins` (marketplace
    /// and recommendations) check every page.
    async fn http_run(
        &self,
        servers: &[&Server],
        addr: SocketAddr,
        admins: Option<(SocketAddr, SocketAddr)>,
        placement: &Placement,
    ) -> anyhow::Result<Figures> {
        let mut http_load = HttpLoad {
            cpus: placement.load.clone(),
            url: format!("http://{addr}/"),
            duration: self.plan.warmup_time,
            connections: HTTP_CONNECTIONS,
            threads: HTTP_THREADS,
        };
        load::wrk(&http_load).await?;
        settle().await;
        http_load.duration = self.plan.page_time;

        let (web_admin, grpc_admin) = admins.unzip();
        let pages = |text: &str, status: Option<&str>| {
            let mut labels = vec![r#"route="/""#];
            let status = status.map(|s| format!("status=\"{s}\""));
            labels.extend(status.as_deref());
            prometheus::sum(text, "http_server_requests_total", &labels)
        };
        let degraded = |text: &str| prometheus::sum(text, "marketplace_degraded_pages_total", &[]);
        let recommended = |text: &str| {
            prometheus::sum(
                text,
                "grpc_server_requests_total",
                &[
                    "method=\"/bookstore.recommendations.v1.RecommendationsService/Recommend\"",
                    "code=\"OK\"",
                ],
            )
        };
        let web_before = self.scrape(web_admin).await?;
        let grpc_before = self.scrape(grpc_admin).await?;
        let before = usages(servers, self.ticks)?;
        let outcome = load::wrk(&http_load).await?;
        settle().await;
        let after = usages(servers, self.ticks)?;
        let web_after = self.scrape(web_admin).await?;
        let grpc_after = self.scrape(grpc_admin).await?;

        let name = servers
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(" + ");
        let counted = match (web_before, web_after, grpc_before, grpc_after) {
            (Some(wb), Some(wa), Some(gb), Some(ga)) => Some(PageCounts {
                ok: pages(&wa, Some("200")) - pages(&wb, Some("200")),
                all: pages(&wa, None) - pages(&wb, None),
                degraded: degraded(&wa) - degraded(&wb),
                recommended: recommended(&ga) - recommended(&gb),
            }),
            _ => None,
        };
        let served = checks::pages(&name, &outcome, HTTP_CONNECTIONS, counted)?;
        let spans: Vec<(Usage, Usage)> = before.into_iter().zip(after).collect();
        for (server, span) in servers.iter().zip(&spans) {
            eprintln!(
                "bench:   {}: {:.1} µs CPU per page",
                server.name(),
                cpu_per_request(std::slice::from_ref(span), served)
            );
        }
        Ok(Figures {
            rate: outcome.rate,
            p50_us: outcome.latency.p50_us,
            p99_us: outcome.latency.p99_us,
            cpu_us: cpu_per_request(&spans, served),
        })
    }

    /// The Prometheus text of an admin listener, if there is one.
    async fn scrape(&self, admin: Option<SocketAddr>) -> anyhow::Result<Option<String>> {
        let Some(admin) = admin else { return Ok(None) };
        let response = self
            .http
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("scraping http://{admin}/metrics"))?;
        Ok(Some(response.text().await.context("reading /metrics")?))
    }
}

/// The flag that sets a server's runtime worker threads, if any.
fn threads(workers: Option<NonZeroUsize>) -> Vec<String> {
    workers
        .map(|n| format!("--worker-threads={n}"))
        .into_iter()
        .collect()
}

/// Lets requests that were in flight when a load generator quit finish, so
/// that counters read next are final.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(250)).await;
}

fn usages(servers: &[&Server], ticks: u64) -> anyhow::Result<Vec<Usage>> {
    servers.iter().map(|s| s.usage(ticks)).collect()
}

/// CPU µs per request over `spans` (before, after) of every process.
fn cpu_per_request(spans: &[(Usage, Usage)], requests: u64) -> f64 {
    let cpu: Duration = spans
        .iter()
        .map(|(before, after)| after.cpu.saturating_sub(before.cpu))
        .sum();
    cpu.as_secs_f64() * 1e6 / requests.max(1) as f64
}

fn memory(server: &Server, phase: &str, ticks: u64) -> anyhow::Result<Memory> {
    Ok(Memory {
        process: server.name().to_owned(),
        phase: phase.to_owned(),
        peak_rss: server.usage(ticks)?.peak_rss,
    })
}

fn title(id: i32) -> String {
    format!("Benchmark book {id}")
}

fn author(id: i32) -> String {
    format!("Author {id}")
}

/// The gRPC runs' catalog: [`BOOKS_PER_CATEGORY`] books per category, all
/// of one encoded size.
fn write_catalog(path: &Path) -> anyhow::Result<()> {
    let mut csv = String::from("id,title,author,category\n");
    for (index, category) in ["mystery", "science_fiction", "self_help"]
        .iter()
        .enumerate()
    {
        let first = FIRST_ID + index as i32 * BOOKS_PER_CATEGORY;
        for id in first..first + BOOKS_PER_CATEGORY {
            csv.push_str(&format!("{id},{},{},{category}\n", title(id), author(id)));
        }
    }
    std::fs::write(path, csv).with_context(|| format!("cannot write {}", path.display()))
}

/// `message` as a gRPC length-prefixed message, uncompressed.
fn frame(message: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let length = u32::try_from(message.len()).context("a small message")?;
    let mut framed = vec![0];
    framed.extend(length.to_be_bytes());
    framed.extend(message);
    Ok(framed)
}

/// Both contracts' request bodies, written under `work`, and the size of
/// their OK responses (three mystery books).
fn contracts(work: &Path) -> anyhow::Result<Vec<Contract>> {
    let v1_request = v1::RecommendRequest {
        user_id: 1,
        category: v1::Category::Mystery as i32,
        max_results: 3,
    };
    let v1_book = v1::Book {
        id: FIRST_ID,
        title: title(FIRST_ID),
        author: author(FIRST_ID),
        category: v1::Category::Mystery as i32,
    };
    let v1_response = v1::RecommendResponse {
        books: vec![v1_book; 3],
    };
    let legacy_request = legacy::RecommendationRequest {
        user_id: 1,
        category: legacy::BookCategory::Mystery as i32,
        max_results: 3,
    };
    let legacy_book = legacy::BookRecommendation {
        id: FIRST_ID,
        title: title(FIRST_ID),
    };
    let legacy_response = legacy::RecommendationResponse {
        recommendations: vec![legacy_book; 3],
    };
    let write = |name: &str, body: Vec<u8>| -> anyhow::Result<PathBuf> {
        let path = work.join(name);
        std::fs::write(&path, body).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    };
    Ok(vec![
        Contract {
            name: "v1",
            path: "/bookstore.recommendations.v1.RecommendationsService/Recommend",
            body: write("v1-request.bin", frame(v1_request.encode_to_vec())?)?,
            response_bytes: 5 + v1_response.encoded_len() as u64,
        },
        Contract {
            name: "tutorial's contract",
            path: "/Recommendations/Recommend",
            body: write("legacy-request.bin", frame(legacy_request.encode_to_vec())?)?,
            response_bytes: 5 + legacy_response.encoded_len() as u64,
        },
    ])
}

fn targets(
    comparisons: &[Comparison],
    memory: &[Memory],
    criterion: Option<&criterion::Figures>,
    catalog: Option<&CatalogLoad>,
) -> Vec<Target> {
    let mut targets = Vec::new();
    for c in comparisons
        .iter()
        .filter(|c| c.scenario.starts_with("Recommend"))
    {
        targets.push(Target {
            promise: format!("{}: ≥ {MIN_RATE_RATIO:.2}× bare tonic's req/s", c.scenario),
            measured: format!("{:.2}×", c.rate_ratio()),
            met: c.rate_ratio() >= MIN_RATE_RATIO,
        });
        targets.push(Target {
            promise: format!(
                "{}: ≤ {MAX_CPU_RATIO:.2}× bare tonic's CPU per call",
                c.scenario
            ),
            measured: format!("{:.2}×", c.cpu_ratio()),
            met: c.cpu_ratio() <= MAX_CPU_RATIO,
        });
    }
    for c in comparisons.iter().filter(|c| c.scenario == HOMEPAGE) {
        targets.push(Target {
            promise: format!(
                "Homepage: CPU per page, both services, ≤ {MAX_CPU_PER_PAGE_US:.0} µs"
            ),
            measured: format!("{:.1} µs", c.service_figures.cpu_us),
            met: c.service_figures.cpu_us <= MAX_CPU_PER_PAGE_US,
        });
    }
    let services: u64 = memory
        .iter()
        .filter(|m| m.phase == HOMEPAGE && !m.process.starts_with("bare"))
        .map(|m| m.peak_rss)
        .sum();
    targets.push(Target {
        promise: format!(
            "Peak RSS under load, both services, ≤ {}",
            report::megabytes(MAX_PEAK_RSS)
        ),
        measured: report::megabytes(services),
        met: services <= MAX_PEAK_RSS,
    });
    if let Some(criterion) = criterion {
        let call = |books: u64| {
            criterion
                .scale
                .iter()
                .find(|s| s.books == books)
                .map_or(f64::NAN, |s| s.call_ns)
        };
        let ratio = call(10) / call(1_000_000);
        targets.push(Target {
            promise: format!(
                "Recommend at 1,000,000 books: ≥ {MIN_SCALE_RATIO:.2}× its speed at 10 books (whole call)"
            ),
            measured: format!("{ratio:.2}×"),
            met: ratio >= MIN_SCALE_RATIO,
        });
    }
    if let Some(catalog) = catalog {
        targets.push(Target {
            promise: format!(
                "Loading a {}-book catalog: peak memory ≤ {MAX_CATALOG_RATIO:.1}× the file",
                report::rate(catalog.books as f64)
            ),
            measured: format!("{:.2}×", catalog.ratio()),
            met: catalog.ratio() <= MAX_CATALOG_RATIO,
        });
    }
    targets
}

fn write_results(results: &Results, dir: &Path, chart: &str) -> anyhow::Result<()> {
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write(
        "results.json",
        serde_json::to_string_pretty(results)? + "\n",
    )?;
    write("results.md", report::markdown(results, chart))?;
    write(chart, report::chart(results))
}

/// Rewrites docs/benchmarks/ and README.md's results section.
fn update_docs(results: &Results, workspace: &Path) -> anyhow::Result<()> {
    let docs = workspace.join("docs/benchmarks");
    std::fs::create_dir_all(&docs).with_context(|| format!("cannot create {}", docs.display()))?;
    write_results(results, &docs, "chart.svg")?;
    let readme_path = workspace.join("README.md");
    let readme = std::fs::read_to_string(&readme_path)
        .with_context(|| format!("cannot read {}", readme_path.display()))?;
    let section = report::markdown(results, "docs/benchmarks/chart.svg");
    let updated = report::splice(&readme, &section).with_context(|| {
        format!(
            "{} has no <!-- benchmarks:start --> … <!-- benchmarks:end --> section",
            readme_path.display()
        )
    })?;
    std::fs::write(&readme_path, updated)
        .with_context(|| format!("cannot write {}", readme_path.display()))?;
    eprintln!("bench: updated README.md and {}", docs.display());
    Ok(())
}

/// What the figures were measured on.
async fn machine() -> anyhow::Result<Machine> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or_else(
            || "unknown CPU".to_owned(),
            |(_, model)| model.trim().to_owned(),
        );
    let first_line = |program: &str, args: &[&str]| {
        let program = program.to_owned();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        async move {
            let output = tokio::process::Command::new(&program)
                .args(&args)
                .output()
                .await
                .with_context(|| format!("cannot run {program}"))?;
            let text = String::from_utf8_lossy(&output.stdout).to_string()
                + &String::from_utf8_lossy(&output.stderr);
            anyhow::Ok(text.lines().next().unwrap_or_default().trim().to_owned())
        }
    };
    let h2load = first_line("h2load", &["--version"])
        .await
        .context("h2load is needed: `apt-get install nghttp2-client`")?;
    let wrk = first_line("wrk", &["-v"])
        .await
        .context("wrk is needed: `apt-get install wrk`")?;
    let wrk = wrk.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    Ok(Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: first_line("uname", &["-sr"]).await?,
        tools: format!("{h2load}, {wrk}"),
        date: first_line("date", &["-u", "+%Y-%m-%d"]).await?,
    })
}
