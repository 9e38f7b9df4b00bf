//! The `marketplace` binary: parse settings, start logging, build, run.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use marketplace::{Application, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = Settings::parse();
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("marketplace: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    operations::telemetry::init(settings.log_format)?;
    let app = Application::build(settings).await?;
    app.run_until_stopped(operations::shutdown::signal()).await
}
