//! The chaos run's binary: see the `bench::chaos` module.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    match bench::chaos::run(bench::chaos::Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chaos: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
