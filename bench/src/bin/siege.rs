//! The siege binary: see the `bench::siege` module for the scenarios.
#![forbid(unsafe_code)]

use std::{path::Path, path::PathBuf, process::ExitCode};

use anyhow::{Context as _, bail, ensure};
use bench::{
    process,
    siege::{Check, Siege},
};
use clap::Parser;

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
    let mut siege = Siege::new(binaries, out.clone(), args.quick, process::clock_ticks()?);

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
