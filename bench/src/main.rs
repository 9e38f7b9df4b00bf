//! The benchmark suite, run by `cargo xtask bench` (see
//! docs/benchmarks/README.md). In one run, on this machine:
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
//! Results go to `target/bench/` and, for a full run, to
//! `docs/benchmarks/`. A missed target makes a full run fail.
#![forbid(unsafe_code)]

use std::{
    num::NonZeroUsize,
    path::{Path, PathBuf},
    process::ExitCode,
    time::SystemTime,
};

use anyhow::{Context, bail};
use bench::{
    criterion, process,
    report::{self, Results},
    suite::{
        FULL, HOMEPAGE, HOMEPAGE_DEFAULT_WORKERS, HOMEPAGE_EXPORTED, Placement, QUICK, Suite,
        output::{machine, update_docs, write_results},
        targets::targets,
    },
};
use clap::Parser;

/// Runs the benchmark suite against release builds of both services and
/// their ceilings, and reports the figures.
#[derive(Debug, Parser)]
struct Args {
    /// A short run that checks the suite itself works (as CI does): the
    /// figures mean little, targets are reported but not enforced, and
    /// docs/benchmarks/ is left alone.
    #[arg(long)]
    quick: bool,
    /// Do not rewrite docs/benchmarks/.
    #[arg(long)]
    no_docs: bool,
    /// Runtime worker threads of every server, services and ceilings alike.
    /// The default, 1, is what kubernetes.yaml's limit of one CPU gives;
    /// a full run also measures the homepage with the default runtime.
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
    /// Instructions per page and per Recommend call, with callgrind.
    Instructions,
    /// The homepage beside the tutorial's Python services.
    Python,
    /// The homepage under each runtime choice, on 1 and 2 CPUs.
    Runtime,
}

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
        http: service_kit::tls::http_client()?,
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
        let (homepage, http_memory) = suite.http(&placement, HOMEPAGE, false).await?;
        comparisons.push(homepage);
        memory.extend(http_memory);
        let (exported, http_memory) = suite.http(&placement, HOMEPAGE_EXPORTED, true).await?;
        comparisons.push(exported);
        memory.extend(http_memory);
        if !args.quick {
            let machine_default = Placement::new(None, false);
            let (homepage, http_memory) = suite
                .http(&machine_default, HOMEPAGE_DEFAULT_WORKERS, false)
                .await?;
            comparisons.push(homepage);
            memory.extend(http_memory);
        }
    }
    let python = if runs(Phase::Python) {
        Some(suite.python().await?)
    } else {
        None
    };
    let runtime = if runs(Phase::Runtime) {
        suite.runtime().await?
    } else {
        Vec::new()
    };
    let (instructions, call_instructions) = if runs(Phase::Instructions) {
        (
            suite.instructions().await?,
            suite.call_instructions().await?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
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

    let targets = targets(
        &comparisons,
        &memory,
        &instructions,
        &runtime,
        python.as_ref(),
        criterion.as_ref(),
        catalog.as_ref(),
    );
    let results = Results {
        quick: args.quick,
        machine,
        comparisons,
        memory,
        instructions,
        call_instructions,
        runtime,
        python,
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
