//! The tracing settings, named as every OpenTelemetry SDK names them
//! (`OTEL_*` variables, read as they are, whatever the service's prefix).

use std::time::Duration;

use clap::{Args, ValueEnum};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::Sampler;

/// Span export and sampling.
#[derive(Args, Clone, Debug)]
pub struct TraceSettings {
    /// OTLP/gRPC endpoint of a collector (e.g. http://otel-collector:4317):
    /// turns span export on. Without it nothing is exported, and trace
    /// context still passes through and into the logs.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otel_exporter_otlp_endpoint: Option<http::Uri>,

    /// The service's name in traces (default: the binary's name).
    #[arg(long, env = "OTEL_SERVICE_NAME", value_name = "NAME")]
    pub otel_service_name: Option<String>,

    /// Which traces are recorded and exported; parentbased_* follow the
    /// caller's choice when it made one.
    #[arg(long, env = "OTEL_TRACES_SAMPLER", value_enum, default_value_t = SamplerKind::ParentbasedAlwaysOn)]
    pub otel_traces_sampler: SamplerKind,

    /// The share of traces the *traceidratio samplers record, 0 to 1.
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG", value_name = "RATIO", default_value_t = 1.0, value_parser = ratio)]
    pub otel_traces_sampler_arg: f64,

    /// More resource attributes of every span, as key=value pairs separated
    /// by commas (e.g. deployment.environment.name=staging).
    #[arg(long, env = "OTEL_RESOURCE_ATTRIBUTES", value_name = "KEY=VALUE,...")]
    pub otel_resource_attributes: Option<String>,

    /// Most finished spans waiting for export; over it, spans are dropped
    /// rather than wait (a slow or absent collector never slows requests).
    #[arg(
        long,
        env = "OTEL_BSP_MAX_QUEUE_SIZE",
        value_name = "SPANS",
        default_value_t = 2048
    )]
    pub otel_bsp_max_queue_size: usize,

    /// How often queued spans are exported (e.g. 5s, 500ms).
    #[arg(long, env = "OTEL_BSP_SCHEDULE_DELAY", value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub otel_bsp_schedule_delay: Duration,
}

/// The samplers of the OpenTelemetry specification, by their `OTEL_TRACES_SAMPLER` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SamplerKind {
    /// Every trace.
    #[value(name = "always_on")]
    AlwaysOn,
    /// None.
    #[value(name = "always_off")]
    AlwaysOff,
    /// A share of traces (OTEL_TRACES_SAMPLER_ARG), by trace id.
    #[value(name = "traceidratio")]
    TraceIdRatio,
    /// The caller's choice, or every trace started here.
    #[value(name = "parentbased_always_on")]
    ParentbasedAlwaysOn,
    /// The caller's choice, or none started here.
    #[value(name = "parentbased_always_off")]
    ParentbasedAlwaysOff,
    /// The caller's choice, or a share of the traces started here.
    #[value(name = "parentbased_traceidratio")]
    ParentbasedTraceIdRatio,
}

impl TraceSettings {
    /// The sampler these settings name.
    pub fn sampler(&self) -> Sampler {
        let ratio = self.otel_traces_sampler_arg;
        match self.otel_traces_sampler {
            SamplerKind::AlwaysOn => Sampler::AlwaysOn,
            SamplerKind::AlwaysOff => Sampler::AlwaysOff,
            SamplerKind::TraceIdRatio => Sampler::TraceIdRatioBased(ratio),
            SamplerKind::ParentbasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            SamplerKind::ParentbasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            SamplerKind::ParentbasedTraceIdRatio => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
            }
        }
    }

    /// The resource attributes of `--otel-resource-attributes`; fails on a
    /// pair without `=`, naming it.
    pub fn resource_attributes(&self) -> anyhow::Result<Vec<KeyValue>> {
        let Some(text) = &self.otel_resource_attributes else {
            return Ok(Vec::new());
        };
        text.split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => Ok(KeyValue::new(
                    key.trim().to_owned(),
                    value.trim().to_owned(),
                )),
                _ => anyhow::bail!(
                    "OTEL_RESOURCE_ATTRIBUTES: {pair:?} is not key=value (pairs are separated by commas)"
                ),
            })
            .collect()
    }
}

/// A ratio from 0 to 1.
fn ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        Ok(_) => Err("must be between 0 and 1".to_owned()),
        Err(err) => Err(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        trace: TraceSettings,
    }

    fn parse(args: &[&str]) -> Result<TraceSettings, clap::Error> {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .map(|cli| cli.trace)
    }

    #[test]
    fn export_is_off_by_default_and_parent_based() {
        let settings = parse(&[]).expect("defaults");

        assert!(settings.otel_exporter_otlp_endpoint.is_none());
        assert_eq!(
            settings.otel_traces_sampler,
            SamplerKind::ParentbasedAlwaysOn
        );
    }

    #[test]
    fn samplers_take_the_specifications_names() {
        let settings = parse(&[
            "--otel-traces-sampler=parentbased_traceidratio",
            "--otel-traces-sampler-arg=0.25",
        ])
        .expect("valid");

        assert!(matches!(settings.sampler(), Sampler::ParentBased(_)));
        assert!(parse(&["--otel-traces-sampler-arg=2"]).is_err());
    }

    #[test]
    fn resource_attributes_are_pairs_and_a_bad_one_is_named() {
        let settings = parse(&["--otel-resource-attributes=a=1, b = two ,"]).expect("valid");
        let pairs: Vec<String> = settings
            .resource_attributes()
            .expect("pairs")
            .iter()
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect();
        assert_eq!(pairs, ["a=1", "b=two"]);

        let bad = parse(&["--otel-resource-attributes=a=1,oops"]).expect("parses");
        let err = bad.resource_attributes().expect_err("not a pair");
        assert!(err.to_string().contains("\"oops\""), "{err}");
    }
}
