//! Traces across services: W3C trace context in and out, a span per page
//! and per gRPC call named and attributed by the OpenTelemetry semantic
//! conventions, a request id carried along, and OTLP export when a
//! collector is configured.
//!
//! Spans are `tracing` spans; [`tracing_opentelemetry`] gives each its
//! OpenTelemetry identity, and the SDK exports them in batches. Every span
//! records its `trace_id` and `span_id` as fields, so that every log line
//! written inside it carries them, export or not.
//!
//! Conventions: the RPC spans follow the Release Candidate RPC conventions
//! (semantic conventions after v1.37: `rpc.system.name`, `rpc.method`,
//! `rpc.response.status_code`), the HTTP server span the stable HTTP
//! conventions (`http.request.method`, `http.route`,
//! `http.response.status_code`). See docs/operations.md.

mod call_span;
pub mod config;
mod export;
mod exporter;
mod tracer;

use std::sync::atomic::{AtomicU8, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator as _},
    trace::TraceContextExt as _,
};
use opentelemetry_sdk::{
    propagation::{BaggagePropagator, TraceContextPropagator},
    trace::SdkTracer,
};
use tokio::task::futures::TaskLocalFuture;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

pub use call_span::{CallSpans, ResendCount};
pub use config::{OtelConfig, Propagation, TraceSettings};
pub use export::register_metrics;
pub use tracer::{FLUSH_TIMEOUT, Tracing, exporting};

/// The W3C trace context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The request id header: accepted from the caller, or made up, echoed in
/// the response and carried to recommendations.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id accepted from a caller; a longer one (or one
/// with other than visible ASCII) is replaced.
const MAX_REQUEST_ID: usize = 128;

tokio::task_local! {
    /// The request id of the page being served, for the calls it makes.
    static CURRENT_REQUEST_ID: HeaderValue;
}

/// Which context headers are read and written: OTEL_PROPAGATORS, set once
/// by [`Tracing::new`] (bit 1: tracecontext, bit 2: baggage; both until
/// then, the specification's default).
static PROPAGATION: AtomicU8 = AtomicU8::new(TRACECONTEXT | BAGGAGE);
const TRACECONTEXT: u8 = 1;
const BAGGAGE: u8 = 2;

pub(crate) fn set_propagation(propagation: Propagation) {
    let bits = if propagation.tracecontext {
        TRACECONTEXT
    } else {
        0
    } | if propagation.baggage { BAGGAGE } else { 0 };
    PROPAGATION.store(bits, Ordering::Relaxed);
}

/// Whether requests' W3C trace context is read and calls' written
/// (OTEL_PROPAGATORS names `tracecontext`): when not, a request that
/// carries a `traceparent` is served as one that does not.
pub fn propagates_trace_context() -> bool {
    PROPAGATION.load(Ordering::Relaxed) & TRACECONTEXT != 0
}

/// The context a request carries, as OTEL_PROPAGATORS says: its W3C trace
/// context (`traceparent`, `tracestate`) and baggage (`baggage`); empty
/// when it carries none or an invalid one.
pub fn extract(headers: &HeaderMap) -> Context {
    let bits = PROPAGATION.load(Ordering::Relaxed);
    let mut context = Context::new();
    if bits & TRACECONTEXT != 0 {
        context = TraceContextPropagator::new().extract_with_context(&context, &Headers(headers));
    }
    if bits & BAGGAGE != 0 {
        context = BaggagePropagator::new().extract_with_context(&context, &Headers(headers));
    }
    context
}

/// Writes `span`'s context into `headers`, as OTEL_PROPAGATORS says.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    let bits = PROPAGATION.load(Ordering::Relaxed);
    if bits == 0 {
        return;
    }
    let context = span.context();
    if bits & TRACECONTEXT != 0 {
        TraceContextPropagator::new().inject_context(&context, &mut HeadersMut(headers));
    }
    if bits & BAGGAGE != 0 {
        BaggagePropagator::new().inject_context(&context, &mut HeadersMut(headers));
    }
}

/// Continues the trace of `parent`, when it holds one, in `span`, and
/// records the span's `trace_id` and `span_id` fields for the logs. Does
/// nothing for a disabled span (an untraced request).
pub fn start(span: &Span, parent: Context) {
    if span.is_none() {
        return;
    }
    if parent.span().span_context().is_valid() {
        // Fails only when the span is disabled, and then there is nothing to do.
        let _ = span.set_parent(parent);
    }
    let context = span.context();
    let span_ref = context.span();
    let ids = span_ref.span_context();
    if ids.is_valid() {
        span.record("trace_id", tracing::field::display(ids.trace_id()));
        span.record("span_id", tracing::field::display(ids.span_id()));
    }
}

/// The trace id of `span`, as 32 hex digits, when it has one.
pub fn trace_id(span: &Span) -> Option<String> {
    if span.is_none() {
        return None;
    }
    let context = span.context();
    let span_ref = context.span();
    let ids = span_ref.span_context();
    ids.is_valid().then(|| ids.trace_id().to_string())
}

/// A new request id: 16 random hex digits, marked sensitive (see
/// [`with_request_id`]).
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let random = rand::random::<u64>();
    let mut digits = [0u8; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((random >> (60 - 4 * i)) & 0xf) as usize];
    }
    // Hex digits are always a valid header value. Owned by its bytes, so
    // that the copies a page makes (in the response, in the call's
    // metadata) share one allocation; a copied slice would make a second
    // on the first copy.
    let mut id = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(digits))
        .unwrap_or(HeaderValue::from_static("0"));
    id.set_sensitive(true);
    id
}

/// The caller's request id, when it is usable: 1 to 128 visible ASCII
/// characters.
pub fn request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get(&REQUEST_ID)
        .filter(|id| {
            let bytes = id.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= MAX_REQUEST_ID
                && bytes.iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
}

/// Runs `future` (a page being served) with `id` as its request id, which
/// the calls it makes carry on. The id is marked sensitive, so that HTTP/2
/// sends it as a literal never indexed: a value new on every call would
/// otherwise churn both ends' HPACK tables (docs/benchmarks/history.md,
/// "The cost of tracing").
pub fn with_request_id<F: Future>(
    mut id: HeaderValue,
    future: F,
) -> TaskLocalFuture<HeaderValue, F> {
    id.set_sensitive(true);
    CURRENT_REQUEST_ID.scope(id, future)
}

/// The request id of the page being served, if any.
pub fn current_request_id() -> Option<HeaderValue> {
    CURRENT_REQUEST_ID.try_with(Clone::clone).ok()
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(mut value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            // New on every call: never indexed (see with_request_id).
            value.set_sensitive(true);
            self.0.insert(name, value);
        }
    }
}

/// The `tracing` layer that gives spans their
/// OpenTelemetry identity, for [`crate::telemetry::subscriber`].
pub(crate) fn otel_layer<S>(
    tracer: SdkTracer,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        .with_tracked_inactivity(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_request_id_is_16_hex_digits_never_indexed() {
        let (one, two) = (new_request_id(), new_request_id());

        for id in [&one, &two] {
            let text = id.to_str().expect("ASCII");
            assert_eq!(text.len(), 16, "{text}");
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(
                id.is_sensitive(),
                "HPACK must not index a value new on every page"
            );
        }
        assert_ne!(one, two);
    }

    #[tokio::test]
    async fn the_request_id_a_page_carries_on_is_never_indexed() {
        let carried = with_request_id(HeaderValue::from_static("abc-123"), async {
            current_request_id()
        })
        .await
        .expect("an id within the page");

        assert_eq!(carried, "abc-123");
        assert!(carried.is_sensitive());
        assert!(current_request_id().is_none(), "none outside a page");
    }

    #[test]
    fn an_injected_trace_context_is_never_indexed() {
        let mut headers = HeaderMap::new();
        HeadersMut(&mut headers).set(
            "traceparent",
            format!("00-{}-{}-01", "1".repeat(32), "2".repeat(16)),
        );

        assert!(headers[&TRACEPARENT].is_sensitive());
    }

    #[test]
    fn a_usable_request_id_is_kept_and_others_are_not() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(REQUEST_ID, HeaderValue::from_str(value).expect("valid"));
            request_id(&headers)
        };

        assert_eq!(
            with("abc-123").as_ref().map(HeaderValue::as_bytes),
            Some(&b"abc-123"[..])
        );
        assert!(with("").is_none());
        assert!(with("has space").is_none());
        assert!(with(&"x".repeat(129)).is_none());
        assert!(request_id(&HeaderMap::new()).is_none());
    }

    #[test]
    fn an_invalid_traceparent_gives_an_empty_context() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-00000000000000000000000000000000-0000000000000000-01"),
        );

        assert!(!extract(&headers).span().span_context().is_valid());
    }

    #[test]
    fn a_valid_traceparent_is_extracted() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );

        let context = extract(&headers);
        let span = context.span();
        let ids = span.span_context();
        assert!(ids.is_remote());
        assert_eq!(
            ids.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(ids.span_id().to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn baggage_passes_from_a_request_to_the_calls_it_makes() {
        use opentelemetry::{baggage::BaggageExt as _, trace::TracerProvider as _};
        use tracing_subscriber::layer::SubscriberExt as _;

        let mut incoming = HeaderMap::new();
        incoming.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        incoming.insert("baggage", HeaderValue::from_static("tenant=books"));
        let context = extract(&incoming);
        assert_eq!(
            context.baggage().get("tenant").map(ToString::to_string),
            Some("books".to_owned())
        );

        // A page's span continuing it, and a call's span under the page's.
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOff)
            .build();
        let subscriber = tracing_subscriber::registry().with(otel_layer(provider.tracer("test")));
        let outgoing = tracing::subscriber::with_default(subscriber, || {
            let page = tracing::info_span!(
                "page",
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty
            );
            start(&page, context);
            let call = page.in_scope(|| tracing::info_span!("call"));
            let mut outgoing = HeaderMap::new();
            inject(&call, &mut outgoing);
            outgoing
        });

        assert_eq!(outgoing["baggage"], "tenant=books");
        let traceparent = outgoing[&TRACEPARENT].to_str().expect("ASCII");
        assert!(
            traceparent.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
            "{traceparent}"
        );
    }
}
