//! The `recommendations` binary: parse settings, start logging, build, run.
#![forbid(unsafe_code)]

use std::{process::ExitCode, time::Duration};

use recommendations::{Application, Cli, Command, Settings};

/// mimalloc rather than glibc's malloc: docs/benchmarks/history.md, "The
/// allocator".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::from_env();
    // tokio's default number of I/O events per tick: a few busy
    // connections (the marketplace's channels), nothing to take in groups.
    let result = service_kit::runtime::run(cli.settings.service.worker_threads, None, start(cli));
    service_kit::telemetry::exit_code("recommendations", result)
}

async fn start(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => run(cli.settings).await,
        Some(Command::Healthcheck) => {
            recommendations::healthcheck::check_local(&cli.settings, Duration::from_secs(3)).await
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let service = &settings.service;
    let tracing =
        service_kit::telemetry::init(service.log_format, &service.trace, "recommendations")?;
    let app = Application::build(settings).await?;
    let result = app
        .run_until_stopped(service_kit::lifecycle::signal())
        .await;
    tracing.shutdown().await;
    result
}
