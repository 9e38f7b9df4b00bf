//! The export queue's accounting: every finished span is queued or dropped
//! because the queue is full, and every queued span is exported or lost to
//! a failed export, each counted in `/metrics` under the names of
//! OpenTelemetry's conventions for the SDK's own metrics
//! (`otel.sdk.processor.span.processed`, `otel.sdk.exporter.span.exported`,
//! `otel.sdk.processor.span.queue.size` and `.capacity`).
//!
//! The SDK's batch processor drops spans when its queue is full but keeps
//! the count to itself. So [`BoundedQueue`], in front of it, holds the
//! bound: it admits a span only while fewer than the capacity wait, and
//! [`CountedExporter`], behind it, releases them as each batch leaves for
//! the collector. The SDK's own queue is made larger by one batch than the
//! capacity, so that it never drops a span this did not count.

use std::{
    sync::{
        Arc, LazyLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use opentelemetry::Context;
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{Span, SpanData, SpanExporter, SpanProcessor},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// `error_type` of a span dropped because the queue was full.
const QUEUE_FULL: &str = "queue_full";
/// `error_type` of spans whose export timed out.
const TIMEOUT: &str = "timeout";
/// `error_type` of spans whose export failed otherwise.
const OTHER: &str = "_OTHER";

/// The label of an outcome: empty for success (Prometheus stores an empty
/// label as no label, as the conventions want it), else the error's type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    error_type: &'static str,
}

const OK: Outcome = Outcome { error_type: "" };

/// The process's export metrics: one set, however many registries show it.
#[derive(Debug)]
struct ExportMetrics {
    processed: Family<Outcome, Counter>,
    exported: Family<Outcome, Counter>,
    queue_size: Gauge,
    queue_capacity: Gauge,
    /// The series every span counts in, taken from the families once (and
    /// so there from the start, at 0) rather than looked up per span.
    queued: Counter,
    dropped: Counter,
    exported_ok: Counter,
}

static METRICS: LazyLock<ExportMetrics> = LazyLock::new(|| {
    let processed = Family::<Outcome, Counter>::default();
    let exported = Family::<Outcome, Counter>::default();
    let queued = processed.get_or_create(&OK).clone();
    let dropped = processed
        .get_or_create(&Outcome {
            error_type: QUEUE_FULL,
        })
        .clone();
    let exported_ok = exported.get_or_create(&OK).clone();
    ExportMetrics {
        processed,
        exported,
        queue_size: Gauge::default(),
        queue_capacity: Gauge::default(),
        queued,
        dropped,
        exported_ok,
    }
});

/// Registers the export metrics in `registry` (they stay at 0 while spans
/// are not exported).
pub fn register_metrics(registry: &mut Registry) {
    let metrics = &*METRICS;
    registry.register(
        "otel_sdk_processor_span_processed",
        "Finished spans handed to the export queue; error_type=queue_full: dropped because \
         the queue was full (OpenTelemetry's otel.sdk.processor.span.processed)",
        metrics.processed.clone(),
    );
    registry.register(
        "otel_sdk_exporter_span_exported",
        "Spans sent to the collector; with an error_type, lost to a failed export \
         (OpenTelemetry's otel.sdk.exporter.span.exported)",
        metrics.exported.clone(),
    );
    registry.register(
        "otel_sdk_processor_span_queue_size",
        "Finished spans waiting for export (OpenTelemetry's otel.sdk.processor.span.queue.size)",
        metrics.queue_size.clone(),
    );
    registry.register(
        "otel_sdk_processor_span_queue_capacity",
        "Most finished spans that may wait for export, OTEL_BSP_MAX_QUEUE_SIZE \
         (OpenTelemetry's otel.sdk.processor.span.queue.capacity)",
        metrics.queue_capacity.clone(),
    );
}

/// The spans waiting, shared by the queue's two ends.
#[derive(Debug)]
struct Queue {
    capacity: usize,
    waiting: AtomicUsize,
}

impl Queue {
    /// Takes a place, or says the queue is full.
    fn admit(&self) -> bool {
        let admitted = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                (waiting < self.capacity).then_some(waiting + 1)
            })
            .is_ok();
        if admitted {
            METRICS.queue_size.inc();
        }
        admitted
    }

    /// Gives back the places of `count` spans that left.
    fn release(&self, count: usize) {
        let _ = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                Some(waiting.saturating_sub(count))
            });
        METRICS
            .queue_size
            .dec_by(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

/// The two ends of a queue of `capacity` spans: wrap the SDK's batch
/// processor (its own queue set to `capacity` plus one batch) in the first,
/// its exporter in the second.
pub fn bounded_queue<E>(
    capacity: usize,
    value_length: Option<usize>,
    exporter: E,
) -> (QueueEnd, CountedExporter<E>) {
    let queue = Arc::new(Queue {
        capacity,
        waiting: AtomicUsize::new(0),
    });
    METRICS
        .queue_capacity
        .set(i64::try_from(capacity).unwrap_or(i64::MAX));
    (
        QueueEnd(queue.clone()),
        CountedExporter {
            inner: exporter,
            queue,
            value_length,
        },
    )
}

/// The queue's front end, to wrap a span processor with: see
/// [`BoundedQueue`].
#[derive(Debug)]
pub struct QueueEnd(Arc<Queue>);

impl QueueEnd {
    /// `processor` behind this queue.
    pub fn wrap<P>(self, processor: P) -> BoundedQueue<P> {
        BoundedQueue {
            inner: processor,
            queue: self.0,
        }
    }
}

/// A span processor that passes a finished span on only while the queue
/// has room, and counts each one it passes or drops.
#[derive(Debug)]
pub struct BoundedQueue<P> {
    inner: P,
    queue: Arc<Queue>,
}

impl<P: SpanProcessor> SpanProcessor for BoundedQueue<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queue.admit() {
            METRICS.queued.inc();
            self.inner.on_end(span);
        } else {
            METRICS.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A span exporter that frees each batch's places in the queue as it
/// leaves, counts the spans exported or lost, and cuts attribute values to
/// the length limit (OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, which the SDK does
/// not apply).
#[derive(Debug)]
pub struct CountedExporter<E> {
    inner: E,
    queue: Arc<Queue>,
    value_length: Option<usize>,
}

/// Cuts every string value of `attributes` to `limit` characters.
fn truncate(attributes: &mut [opentelemetry::KeyValue], limit: usize) {
    for attribute in attributes {
        if let opentelemetry::Value::String(text) = &attribute.value
            && let Some((cut, _)) = text.as_str().char_indices().nth(limit)
        {
            let kept = text.as_str()[..cut].to_owned();
            attribute.value = opentelemetry::Value::String(kept.into());
        }
    }
}

impl<E: SpanExporter> SpanExporter for CountedExporter<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        if let Some(limit) = self.value_length {
            for span in &mut batch {
                truncate(&mut span.attributes, limit);
                for event in span.events.events.iter_mut() {
                    truncate(&mut event.attributes, limit);
                }
            }
        }
        let count = batch.len();
        self.queue.release(count);
        let result = self.inner.export(batch).await;
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        let error_type = match &result {
            Ok(()) => {
                METRICS.exported_ok.inc_by(count);
                return result;
            }
            Err(OTelSdkError::Timeout(_)) => TIMEOUT,
            Err(_) => OTHER,
        };
        METRICS
            .exported
            .get_or_create(&Outcome { error_type })
            .inc_by(count);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
