//! Log setup: human-readable or JSON lines on stdout, filtered by `RUST_LOG`,
//! and the spans of [`crate::trace`], whose ids every line written inside
//! one carries.

use anyhow::Context;
use opentelemetry_sdk::trace::SdkTracer;
use tracing::Subscriber;
use tracing_subscriber::{
    EnvFilter, Layer as _, filter::LevelFilter, fmt::MakeWriter, layer::SubscriberExt,
};

use crate::trace::{OtelConfig, TraceSettings, Tracing};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The filter used when `RUST_LOG` is not set: our crates at `info`, and the
/// chatty HTTP/2 internals only when they warn.
pub const DEFAULT_FILTER: &str = "info,h2=warn,hyper=warn,tower=warn";

/// Builds a subscriber writing to `writer`, filtered by `filter` (an
/// `EnvFilter` directive string such as `RUST_LOG`'s), with ANSI colours in
/// text mode when `ansi` is set, and giving spans at INFO and above their
/// OpenTelemetry identity from `tracer` whatever the log filter says. Tests
/// pass an in-memory writer; [`init`] passes stdout.
pub fn subscriber<W>(
    format: LogFormat,
    filter: &str,
    ansi: bool,
    writer: W,
    tracer: Option<SdkTracer>,
) -> anyhow::Result<Box<dyn Subscriber + Send + Sync>>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter)
        .with_context(|| format!("invalid log filter (RUST_LOG) {filter:?}"))?;
    let otel = tracer.map(|tracer| crate::trace::otel_layer(tracer).with_filter(LevelFilter::INFO));
    let registry = tracing_subscriber::registry().with(otel);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    Ok(match format {
        LogFormat::Text => Box::new(registry.with(fmt.with_filter(filter))),
        LogFormat::Json => Box::new(
            registry.with(
                fmt.json()
                    .flatten_event(true)
                    .with_span_list(false)
                    .with_filter(filter),
            ),
        ),
    })
}

/// Installs the process-wide subscriber: `format` on stdout, filtered by
/// `RUST_LOG` (or [`DEFAULT_FILTER`]), coloured only on a terminal, with
/// the tracer of `trace` (service `name`). Call it within the runtime;
/// shut the returned [`Tracing`] down last, to export the last spans.
pub fn init(
    format: LogFormat,
    trace: &TraceSettings,
    name: &'static str,
) -> anyhow::Result<Tracing> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| DEFAULT_FILTER.to_owned());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let resolved = OtelConfig::resolve(trace, name)?;
    let tracing = Tracing::new(&resolved.config)?;
    let subscriber = subscriber(
        format,
        &filter,
        ansi,
        std::io::stdout,
        Some(tracing.tracer(name)),
    )?;
    tracing::subscriber::set_global_default(subscriber).context("installing the log subscriber")?;
    // Values the specification says to ignore with a warning.
    for warning in resolved.warnings {
        tracing::warn!(setting = warning, "an OpenTelemetry setting is ignored");
    }
    Ok(tracing)
}

/// The process exit code for how `main` went: success, or failure after
/// printing the whole error chain on one line as `name: error: a: b: c` (what
/// we were doing, then the file, place and problem).
pub fn exit_code(name: &str, result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name}: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
