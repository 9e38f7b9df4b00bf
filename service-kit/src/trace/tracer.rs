//! This process's tracer, as its [`OtelConfig`] says: the resource, the
//! sampler, the span limits, the propagators, and, when spans are
//! exported, the OTLP exporter behind a bounded queue and the batch span
//! processor.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{
    Resource,
    trace::{
        BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanLimits,
    },
};

use super::{OtelConfig, export, exporter, set_propagation};

/// The longest the last spans' export may take at exit, after the drain:
/// with the 25 s drain, within kubernetes.yaml's grace period of 40 s,
/// however slow the collector.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether this process exports spans (set once, by [`Tracing::new`]).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans. When it does not, spans are made
/// only for requests that arrive with a trace context, to carry it on: a
/// span costs more than a page's whole budget allows for tracing (see
/// docs/operations.md).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// This process's tracer: where spans go, and whether they are exported.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Tracing {
    /// The tracer `config` describes: exporting in batches when it names an
    /// exporter (which connects lazily; call from within the runtime), and
    /// otherwise giving spans their ids without recording them. Fails on an
    /// unreadable TLS file of the exporter, naming it.
    pub fn new(config: &OtelConfig) -> anyhow::Result<Self> {
        set_propagation(config.propagation);
        let resource = Resource::builder_empty()
            .with_attributes(config.resource.iter().cloned())
            .with_service_name(config.service_name.clone())
            .build();
        let limits = &config.limits;
        let span_limits = SpanLimits {
            max_attributes_per_span: clamp(limits.attributes_per_span),
            max_events_per_span: clamp(limits.events_per_span),
            max_links_per_span: clamp(limits.links_per_span),
            max_attributes_per_event: clamp(limits.attributes_per_event),
            max_attributes_per_link: clamp(limits.attributes_per_link),
        };
        let builder = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_span_limits(span_limits);
        let Some(otlp) = &config.export else {
            // Not exported (or OTEL_SDK_DISABLED): ids for the logs and the
            // context passed on, no recording.
            return Ok(Self {
                provider: builder.with_sampler(Sampler::AlwaysOff).build(),
                exporting: false,
            });
        };
        // The SDK's batch processor (on a thread of its own) has no export
        // timeout: OTEL_BSP_EXPORT_TIMEOUT bounds the exporter's own.
        let exporter = exporter::build(otlp, config.batch.export_timeout)?;
        EXPORTING.store(true, Ordering::Relaxed);
        // A bounded queue: when the collector is slow or down, spans are
        // dropped (and counted) rather than wait, and nothing a request
        // does waits on it.
        let batch = &config.batch;
        let (queue, exporter) = export::bounded_queue(
            batch.max_queue_size,
            limits.attribute_value_length,
            exporter,
        );
        let batch_config = BatchConfigBuilder::default()
            // Room for one batch more than the bounded queue admits: the
            // SDK's queue never drops a span by itself.
            .with_max_queue_size(
                batch
                    .max_queue_size
                    .saturating_add(batch.max_export_batch_size),
            )
            .with_max_export_batch_size(batch.max_export_batch_size)
            .with_scheduled_delay(batch.schedule_delay)
            .build();
        let processor = queue.wrap(
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch_config)
                .build(),
        );
        Ok(Self {
            provider: builder
                .with_sampler(config.sampler.clone())
                .with_span_processor(processor)
                .build(),
            exporting: true,
        })
    }

    /// The tracer for the `tracing` layer.
    pub fn tracer(&self, service: &'static str) -> SdkTracer {
        self.provider.tracer(service)
    }

    /// Exports what is queued and stops, within [`FLUSH_TIMEOUT`], on a
    /// thread of its own so that the runtime keeps driving the export.
    pub async fn shutdown(self) {
        if !self.exporting {
            return;
        }
        let provider = self.provider;
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT))
                .await;
        match flushed {
            Ok(Ok(())) => tracing::info!("spans exported"),
            Ok(Err(err)) => tracing::warn!(%err, "cannot export the last spans"),
            Err(err) => tracing::warn!(%err, "cannot export the last spans"),
        }
    }
}

fn clamp(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}
