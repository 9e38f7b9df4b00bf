//! OpenTelemetry configured the way its specification and its tools
//! configure it: every `OTEL_*` variable of the SDK configuration that
//! concerns traces ([`variables`]), each also a flag taking the same text
//! ([`TraceSettings`]), read by the specification's formats, defaults and
//! precedence ([`read`]) into one [`OtelConfig`]. Where we differ from the
//! specification's default (spans are exported only when an OTLP endpoint
//! or `OTEL_TRACES_EXPORTER=otlp` is set, since a span costs more than a
//! page when nothing reads it), docs/operations.md's table says so.

mod otlp;
mod read;
mod settings;
pub mod variables;

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::Sampler;

pub use otlp::{Compression, OtlpExport, OtlpTls, Protocol};
pub use settings::TraceSettings;

use read::Reader;

/// Which trace context headers are read and written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Propagation {
    /// W3C `traceparent` and `tracestate`.
    pub tracecontext: bool,
    /// W3C `baggage`.
    pub baggage: bool,
}

/// The batch span processor's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    pub schedule_delay: Duration,
    pub export_timeout: Duration,
    pub max_queue_size: usize,
    pub max_export_batch_size: usize,
}

/// The span limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest attribute value, in characters (none: no limit).
    pub attribute_value_length: Option<usize>,
    pub attributes_per_span: usize,
    pub events_per_span: usize,
    pub links_per_span: usize,
    pub attributes_per_event: usize,
    pub attributes_per_link: usize,
}

/// Tracing as the settings say.
#[derive(Clone, Debug)]
pub struct OtelConfig {
    /// OTEL_SDK_DISABLED: nothing recorded or exported.
    pub disabled: bool,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// The other resource attributes.
    pub resource: Vec<KeyValue>,
    pub propagation: Propagation,
    pub sampler: Sampler,
    /// Where spans are exported, if anywhere.
    pub export: Option<OtlpExport>,
    pub batch: Batch,
    pub limits: Limits,
}

/// An [`OtelConfig`] and the warnings reading it gave (values ignored, as
/// the specification says), to be logged once logging is up.
#[derive(Debug)]
pub struct Resolved {
    pub config: OtelConfig,
    pub warnings: Vec<String>,
}

impl OtelConfig {
    /// Reads `settings` for the service `binary`; fails on a value the
    /// service cannot honour, naming the variable, the value and the values
    /// supported.
    pub fn resolve(settings: &TraceSettings, binary: &str) -> anyhow::Result<Resolved> {
        let mut read = Reader::new(settings);
        let disabled = read.boolean(&["OTEL_SDK_DISABLED"]).unwrap_or(false);

        let mut resource = read.pairs(&["OTEL_RESOURCE_ATTRIBUTES"], true);
        let from_resource = resource
            .iter()
            .position(|(key, _)| key == "service.name")
            .map(|at| resource.remove(at).1);
        let service_name = read
            .text(&["OTEL_SERVICE_NAME"])
            .map(|(_, name)| name.to_owned())
            .or(from_resource)
            .unwrap_or_else(|| binary.to_owned());
        let resource = resource
            .into_iter()
            .map(|(key, value)| KeyValue::new(key, value))
            .collect();

        let propagation = propagation(&mut read)?;
        let sampler = sampler(&mut read)?;
        let export = if disabled || !exporting(&mut read)? {
            None
        } else {
            Some(OtlpExport::resolve(&mut read)?)
        };
        let batch = batch(&mut read);
        let limits = limits(&mut read);
        Ok(Resolved {
            config: Self {
                disabled,
                service_name,
                resource,
                propagation,
                sampler,
                export,
                batch,
                limits,
            },
            warnings: read.warnings,
        })
    }
}

fn propagation(read: &mut Reader<'_>) -> anyhow::Result<Propagation> {
    let Some((name, items)) = read.list(&["OTEL_PROPAGATORS"]) else {
        return Ok(Propagation {
            tracecontext: true,
            baggage: true,
        });
    };
    let mut propagation = Propagation::default();
    for item in &items {
        match item.as_str() {
            "tracecontext" => propagation.tracecontext = true,
            "baggage" => propagation.baggage = true,
            "none" => {}
            "b3" | "b3multi" | "jaeger" | "xray" | "ottrace" => anyhow::bail!(
                "{name}={} is not supported by this service: {item} is not; the values supported are tracecontext, baggage, none",
                items.join(",")
            ),
            other => read.warnings.push(format!(
                "{name}: {other:?} is ignored: not one of tracecontext, baggage, none"
            )),
        }
    }
    if items.iter().any(|item| item == "none") && items.len() > 1 {
        read.warnings.push(format!(
            "{name}={}: none is ignored beside other propagators",
            items.join(",")
        ));
    }
    Ok(propagation)
}

#[derive(Clone, Copy)]
enum SamplerKind {
    AlwaysOn,
    AlwaysOff,
    Ratio,
    ParentOn,
    ParentOff,
    ParentRatio,
}

fn sampler(read: &mut Reader<'_>) -> anyhow::Result<Sampler> {
    let kind = read
        .choice(
            &["OTEL_TRACES_SAMPLER"],
            &[
                ("always_on", SamplerKind::AlwaysOn),
                ("always_off", SamplerKind::AlwaysOff),
                ("traceidratio", SamplerKind::Ratio),
                ("parentbased_always_on", SamplerKind::ParentOn),
                ("parentbased_always_off", SamplerKind::ParentOff),
                ("parentbased_traceidratio", SamplerKind::ParentRatio),
            ],
            &["jaeger_remote", "parentbased_jaeger_remote", "xray"],
        )?
        .unwrap_or(SamplerKind::ParentOn);
    let mut ratio = || read.ratio(&["OTEL_TRACES_SAMPLER_ARG"]).unwrap_or(1.0);
    let parent = |root| Sampler::ParentBased(Box::new(root));
    Ok(match kind {
        SamplerKind::AlwaysOn => Sampler::AlwaysOn,
        SamplerKind::AlwaysOff => Sampler::AlwaysOff,
        SamplerKind::Ratio => Sampler::TraceIdRatioBased(ratio()),
        SamplerKind::ParentOn => parent(Sampler::AlwaysOn),
        SamplerKind::ParentOff => parent(Sampler::AlwaysOff),
        SamplerKind::ParentRatio => parent(Sampler::TraceIdRatioBased(ratio())),
    })
}

/// Whether spans are exported: OTEL_TRACES_EXPORTER `otlp`, or, when it is
/// not set, an OTLP endpoint set (ours; the specification's default is
/// `otlp` always).
fn exporting(read: &mut Reader<'_>) -> anyhow::Result<bool> {
    let endpoint_set = read
        .text(&[
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ])
        .is_some();
    let Some((name, items)) = read.list(&["OTEL_TRACES_EXPORTER"]) else {
        return Ok(endpoint_set);
    };
    let mut otlp = false;
    for item in &items {
        match item.as_str() {
            "otlp" => otlp = true,
            "none" => {}
            "console" | "zipkin" | "logging" | "jaeger" => anyhow::bail!(
                "{name}={} is not supported by this service: {item} is not; the values supported are otlp, none",
                items.join(",")
            ),
            other => read.warnings.push(format!(
                "{name}: {other:?} is ignored: not one of otlp, none"
            )),
        }
    }
    Ok(otlp)
}

fn batch(read: &mut Reader<'_>) -> Batch {
    let max_queue_size = read.count(&["OTEL_BSP_MAX_QUEUE_SIZE"]).unwrap_or(2048);
    let mut max_export_batch_size = read
        .count(&["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"])
        .unwrap_or(512);
    if max_export_batch_size > max_queue_size {
        read.warnings.push(format!(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE={max_export_batch_size} is more than OTEL_BSP_MAX_QUEUE_SIZE={max_queue_size}: batches of {max_queue_size}"
        ));
        max_export_batch_size = max_queue_size;
    }
    Batch {
        schedule_delay: read
            .millis(&["OTEL_BSP_SCHEDULE_DELAY"])
            .unwrap_or(Duration::from_millis(5000)),
        export_timeout: read
            .millis(&["OTEL_BSP_EXPORT_TIMEOUT"])
            .unwrap_or(Duration::from_millis(30_000)),
        max_queue_size,
        max_export_batch_size: max_export_batch_size.max(1),
    }
}

fn limits(read: &mut Reader<'_>) -> Limits {
    let general = read.count(&["OTEL_ATTRIBUTE_COUNT_LIMIT"]).unwrap_or(128);
    let mut count = |name: &str| read.count(&[name]).unwrap_or(general);
    let attributes_per_span = count("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT");
    let attributes_per_event = count("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT");
    let attributes_per_link = count("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT");
    Limits {
        attribute_value_length: read.count(&[
            "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        ]),
        attributes_per_span,
        events_per_span: read.count(&["OTEL_SPAN_EVENT_COUNT_LIMIT"]).unwrap_or(128),
        links_per_span: read.count(&["OTEL_SPAN_LINK_COUNT_LIMIT"]).unwrap_or(128),
        attributes_per_event,
        attributes_per_link,
    }
}

#[cfg(test)]
mod tests;
