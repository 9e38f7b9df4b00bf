//! The suite: how a run is planned (rounds, load sizes), where the servers
//! and load generators run (placement), and the parts every phase shares:
//! starting the services, reading their CPU, memory and metrics. The phases
//! are [`grpc`], [`http`], [`python`], [`runtime`] and [`instructions`]; [`targets`] judges the figures and [`output`]
//! writes them.

mod grpc;
mod http;
mod instructions;
pub mod output;
mod python;
mod runtime;
pub mod targets;
mod workload;

use std::{
    future::Future,
    net::SocketAddr,
    num::NonZeroUsize,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, ensure};

use crate::{
    process::{self, Server, Usage},
    report::Memory,
};

/// How much load each run makes.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    calls: u64,
    warmup_calls: u64,
    page_time: Duration,
    warmup_time: Duration,
    rounds: usize,
}

impl Plan {
    /// A homepage run's `(warm-up, measured)` times.
    fn page_times(&self) -> (Duration, Duration) {
        (self.warmup_time, self.page_time)
    }
}

pub const FULL: Plan = Plan {
    calls: 300_000,
    warmup_calls: 20_000,
    page_time: Duration::from_secs(10),
    warmup_time: Duration::from_secs(2),
    rounds: 5,
};

pub const QUICK: Plan = Plan {
    calls: 20_000,
    warmup_calls: 2_000,
    page_time: Duration::from_secs(2),
    warmup_time: Duration::from_secs(1),
    rounds: 1,
};

/// The homepage scenarios: with `--worker-threads`, and as the services run
/// by default (a worker per two CPUs, at least one).
pub const HOMEPAGE: &str = "Homepage";

pub const HOMEPAGE_DEFAULT_WORKERS: &str = "Homepage, the default runtime";

/// The homepage with every page traced and its spans exported over OTLP.
pub const HOMEPAGE_EXPORTED: &str = "Homepage, every span exported";

/// How the servers and the load generators share the machine.
#[derive(Clone, Debug)]
pub struct Placement {
    /// `--worker-threads` of every server (None: their default).
    pub workers: Option<NonZeroUsize>,
    /// The CPUs of the servers, if pinned.
    servers: Option<String>,
    /// The CPUs of h2load and wrk, if pinned.
    load: Option<String>,
}

impl Placement {
    /// With `pin` on a machine of two CPUs or more: load on CPU 0, servers on
    /// the rest.
    pub fn new(workers: Option<NonZeroUsize>, pin: bool) -> Self {
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
            None => {
                "each server's default runtime (a worker per two CPUs, at least one)".to_owned()
            }
        };
        match (&self.servers, &self.load) {
            (Some(servers), Some(load)) => {
                format!("{workers}; servers on CPU {servers}, load generator on CPU {load}")
            }
            _ => format!("{workers}; nothing pinned"),
        }
    }
}

/// One run of the suite: what every phase needs.
pub struct Suite {
    pub placement: Placement,
    pub binaries: PathBuf,
    pub work: PathBuf,
    pub plan: Plan,
    pub ticks: u64,
    pub http: reqwest::Client,
}

impl Suite {
    /// The path of a binary built next to the suite.
    pub fn binary(&self, name: &str) -> anyhow::Result<PathBuf> {
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
        self.start_recommendations_with(name, placement, catalog, &[])
            .await
    }

    /// [`Suite::start_recommendations`], with `extra` variables set.
    async fn start_recommendations_with(
        &self,
        name: &str,
        placement: &Placement,
        catalog: Option<&Path>,
        extra: &[(&'static str, String)],
    ) -> anyhow::Result<(Server, SocketAddr, SocketAddr)> {
        let addr = process::free_port()?;
        let admin = process::free_port()?;
        let mut envs = vec![
            ("RECOMMENDATIONS_LISTEN", addr.to_string()),
            ("RECOMMENDATIONS_ADMIN_LISTEN", admin.to_string()),
            ("RUST_LOG", "info".to_owned()),
        ];
        envs.extend_from_slice(extra);
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

/// Runs `measured` and `ceiling` one after the other, the ceiling first in
/// even rounds, so that a machine speeding up or slowing down favours
/// neither side: (measured, ceiling).
async fn alternating<T>(
    round: usize,
    measured: impl Future<Output = anyhow::Result<T>>,
    ceiling: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, T)> {
    if round.is_multiple_of(2) {
        let ceiling = ceiling.await?;
        Ok((measured.await?, ceiling))
    } else {
        let measured = measured.await?;
        Ok((measured, ceiling.await?))
    }
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
    per_request(spans, requests, |usage| usage.cpu)
}

/// The kernel's part of [`cpu_per_request`].
fn kernel_per_request(spans: &[(Usage, Usage)], requests: u64) -> f64 {
    per_request(spans, requests, |usage| usage.system)
}

fn per_request(spans: &[(Usage, Usage)], requests: u64, time: fn(&Usage) -> Duration) -> f64 {
    let spent: Duration = spans
        .iter()
        .map(|(before, after)| time(after).saturating_sub(time(before)))
        .sum();
    spent.as_secs_f64() * 1e6 / requests.max(1) as f64
}

fn memory(server: &Server, phase: &str, ticks: u64) -> anyhow::Result<Memory> {
    Ok(Memory {
        process: server.name().to_owned(),
        phase: phase.to_owned(),
        peak_rss: server.usage(ticks)?.peak_rss,
    })
}
