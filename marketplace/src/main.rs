//! The `marketplace` binary: parse settings, start logging, build, run.
#![forbid(unsafe_code)]

use std::{process::ExitCode, time::Duration};

use marketplace::{Application, Cli, Command, Settings};

/// mimalloc rather than glibc's malloc: docs/benchmarks/history.md, "The
/// allocator".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::from_env();
    let result = service_kit::runtime::run(
        cli.settings.service.worker_threads,
        Some(cli.settings.io_events_per_tick),
        start(cli),
    );
    service_kit::telemetry::exit_code("marketplace", result)
}

async fn start(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => run(cli.settings).await,
        Some(Command::Healthcheck) => {
            let addr = service_kit::admin::local_probe_address(cli.settings.service.admin_listen);
            service_kit::admin::probe(addr, "/healthz", Duration::from_secs(3)).await
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let service = &settings.service;
    let tracing = service_kit::telemetry::init(service.log_format, &service.trace, "marketplace")?;
    let app = Application::build(settings).await?;
    let result = app
        .run_until_stopped(service_kit::lifecycle::signal())
        .await;
    tracing.shutdown().await;
    result
}
