//! The `recommendations` binary: parse settings, start logging, build, run.
#![forbid(unsafe_code)]

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use recommendations::{Application, Cli, Command, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.settings).await,
        Some(Command::Healthcheck) => {
            let addr = operations::admin::local_probe_address(cli.settings.listen);
            recommendations::healthcheck::check(addr, Duration::from_secs(3)).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole chain on one line: what we were doing,
            // then the file, place and problem.
            eprintln!("recommendations: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    operations::telemetry::init(settings.log_format)?;
    let app = Application::build(settings).await?;
    app.run_until_stopped(operations::shutdown::signal()).await
}
