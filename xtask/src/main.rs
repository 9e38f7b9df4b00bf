//! Developer tasks.
//!
//! - `cargo dev` (an alias for `cargo xtask dev`) builds both services in
//!   release mode and runs them side by side, every listener on loopback
//!   unless the environment sets it: the bookstore at
//!   http://127.0.0.1:5000, recommendations on 127.0.0.1:50051.
//!   Ctrl-C stops both cleanly; if either exits, the other is stopped.
//! - `cargo xtask bench [ARGS]` builds the services, the ceiling servers and
//!   the suite with the `production` profile (as the images are built) and
//!   runs the benchmark suite; `cargo xtask bench --help` lists ARGS. A
//!   full run (no ARGS) then runs the siege and writes its results too.
//! - `cargo xtask siege [ARGS]` builds the same way and runs the siege alone:
//!   the attacks and overloads of docs/limits.md against the services, with
//!   the bounds each must hold; `cargo xtask siege --help` lists ARGS.
//! - `cargo xtask chaos [ARGS]` builds the same way and runs the chaos run
//!   (as root): the binaries on hosts of their own (network namespaces)
//!   under load through a schedule of faults, 30 minutes by default
//!   (`--quick`: one round, about four minutes; `--docs`: the report to
//!   docs/benchmarks/chaos.md); `cargo xtask chaos --help` lists ARGS.
#![forbid(unsafe_code)]

use std::{
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let result = match task.as_deref() {
        Some("dev") => dev().await,
        Some("bench") => bench(args.collect()).await,
        Some("siege") => siege(args.collect()).await,
        Some("chaos") => chaos(args.collect()).await,
        _ => Err(anyhow::anyhow!(
            "usage: cargo xtask dev | cargo xtask bench [ARGS] | cargo xtask siege [ARGS] | \
             cargo xtask chaos [ARGS]"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Builds `packages` with `profile`; returns where the binaries are.
async fn build(profile: &str, packages: &[&str]) -> anyhow::Result<PathBuf> {
    let mut command = Command::new(cargo());
    command.args(["build", "--locked", "--profile", profile]);
    if profile == "production" {
        // Line tables, so that the suite's instructions phase can say which
        // crate each instruction came from. They change no code (the same
        // instructions per page, to 0.01 %), only the binaries' size.
        command.env("CARGO_PROFILE_PRODUCTION_DEBUG", "line-tables-only");
    }
    for package in packages {
        command.args(["-p", package]);
    }
    let built = command.status().await.context("running cargo build")?;
    if !built.success() {
        bail!("the build failed");
    }
    Ok(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(profile))
}

async fn bench(args: Vec<String>) -> anyhow::Result<()> {
    let full = args.is_empty();
    let binaries = build("production", &["recommendations", "marketplace", "bench"]).await?;
    run(&binaries.join("bench"), &args, "the benchmark suite").await?;
    if full {
        run(&binaries.join("siege"), &["--docs".to_owned()], "the siege").await?;
    }
    Ok(())
}

async fn siege(args: Vec<String>) -> anyhow::Result<()> {
    let binaries = build("production", &["recommendations", "marketplace", "bench"]).await?;
    run(&binaries.join("siege"), &args, "the siege").await
}

async fn chaos(args: Vec<String>) -> anyhow::Result<()> {
    let binaries = build("production", &["recommendations", "marketplace", "bench"]).await?;
    run(&binaries.join("chaos"), &args, "the chaos run").await
}

/// Runs `binary` with `args` to the end; fails if it fails.
async fn run(binary: &Path, args: &[String], what: &str) -> anyhow::Result<()> {
    let status = Command::new(binary)
        .args(args)
        .status()
        .await
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Where `cargo dev` listens unless the environment says otherwise: on
/// loopback only, since a development run is no reason to expose the
/// unauthenticated admin listeners (`/metrics`) to the network.
const DEV_LISTENERS: [(&str, &str); 4] = [
    ("RECOMMENDATIONS_LISTEN", "127.0.0.1:50051"),
    ("RECOMMENDATIONS_ADMIN_LISTEN", "127.0.0.1:8951"),
    ("MARKETPLACE_LISTEN", "127.0.0.1:5000"),
    ("MARKETPLACE_ADMIN_LISTEN", "127.0.0.1:8950"),
];

async fn dev() -> anyhow::Result<()> {
    let binaries = build("release", &["recommendations", "marketplace"]).await?;
    let mut recommendations = start(&binaries.join("recommendations"))?;
    let mut marketplace = start(&binaries.join("marketplace"))?;
    eprintln!(
        "\nOnline Books For You: {}  (Ctrl-C stops both services)\n",
        homepage_url()
    );

    // Ctrl-C in a terminal reaches both children too; SIGTERM makes sure of
    // it when xtask alone was signalled.
    let first_exit = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        status = recommendations.wait() => Some(("recommendations", status)),
        status = marketplace.wait() => Some(("marketplace", status)),
    };
    terminate(&recommendations).await;
    terminate(&marketplace).await;
    let recommendations = recommendations
        .wait()
        .await
        .context("waiting for recommendations")?;
    let marketplace = marketplace
        .wait()
        .await
        .context("waiting for marketplace")?;
    if let Some((name, status)) = first_exit {
        bail!(
            "{name} exited on its own ({})",
            status.map_or_else(|e| e.to_string(), |s| s.to_string())
        );
    }
    if !recommendations.success() || !marketplace.success() {
        bail!(
            "shutdown was not clean: recommendations {recommendations}, marketplace {marketplace}"
        );
    }
    eprintln!("both services stopped cleanly");
    Ok(())
}

/// The homepage's URL, from the marketplace's listener as `cargo dev`
/// starts it.
fn homepage_url() -> String {
    let listen =
        std::env::var("MARKETPLACE_LISTEN").unwrap_or_else(|_| DEV_LISTENERS[2].1.to_owned());
    match listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => format!("http://localhost:{}", addr.port()),
        Ok(addr) => format!("http://{addr}"),
        // The marketplace will say what is wrong with it.
        Err(_) => format!("http://{listen}"),
    }
}

fn start(binary: &Path) -> anyhow::Result<Child> {
    Command::new(binary)
        .envs(
            DEV_LISTENERS
                .iter()
                .filter(|(name, _)| std::env::var_os(name).is_none())
                .copied(),
        )
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// Sends SIGTERM (a graceful stop) to a child that is still running.
async fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
}
