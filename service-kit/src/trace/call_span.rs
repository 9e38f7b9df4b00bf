//! A span per gRPC call, on either side: the server's continues the
//! caller's trace; the client's is a child of the current span (a page) and
//! passes its context and the request id on in the call's metadata.
//!
//! [`CallSpans`] makes the span; the observing layer
//! ([`crate::rpc::ObserveLayer::with_spans`]) keeps it with the rest of the
//! call's state and enters it while the inner service runs, while the
//! response body is polled and when it reports the call's end, so that the
//! call's log line carries its ids and its final status is recorded on it.
//! One layer, one future and one body per call rather than a layer of its
//! own (docs/benchmarks/history.md, "The span in the observer").

use std::net::SocketAddr;

use http::Request;
use tracing::{Span, field::Empty};

use super::{
    REQUEST_ID, TRACEPARENT, current_request_id, exporting, extract, inject, request_id, start,
};
use crate::metrics::Side;

/// How many times a call was sent before this attempt (a retry on another
/// replica is 1), as a request extension the client span records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResendCount(pub u32);

/// Makes the span of each gRPC call, server or client side.
#[derive(Clone, Copy, Debug)]
pub struct CallSpans {
    side: Side,
    /// The replica a client calls.
    server: Option<SocketAddr>,
}

impl CallSpans {
    /// Server side: a span for each call that carries a trace context, and
    /// for every call when spans are exported (so that a call made without
    /// one starts a trace of its own; see [`super::exporting`]). A call
    /// without costs no span.
    pub fn server() -> Self {
        Self {
            side: Side::Server,
            server: None,
        }
    }

    /// Client side, calling the replica at `server`: a span for each call
    /// made in a traced page, or for every call when exporting. Either way
    /// the page's request id goes on.
    pub fn client(server: SocketAddr) -> Self {
        Self {
            side: Side::Client,
            server: Some(server),
        }
    }

    /// The span of the call `request` starts (`Span::none()` when it needs
    /// none); a client's passes its context on in `request`'s headers.
    pub fn make<B>(&self, request: &mut Request<B>) -> Span {
        match self.side {
            Side::Server => server_span(request),
            Side::Client => client_span(request, self.server),
        }
    }
}

/// The method of a call, `package.Service/Method`, from its path.
fn method<B>(request: &Request<B>) -> &str {
    request.uri().path().trim_start_matches('/')
}

fn server_span<B>(request: &Request<B>) -> Span {
    let headers = request.headers();
    let parent = crate::rpc::header(headers, &TRACEPARENT)
        .is_some()
        .then(|| extract(headers));
    if parent.is_none() && !exporting() {
        return Span::none();
    }
    let request_id = request_id(headers);
    let method = method(request);
    let span = tracing::info_span!(
        target: "rpc",
        "grpc.server",
        otel.name = method,
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system.name = "grpc",
        rpc.method = method,
        rpc.response.status_code = Empty,
        error.type = Empty,
        request_id = request_id.as_ref().and_then(|id| id.to_str().ok()),
        trace_id = Empty,
        span_id = Empty,
    );
    start(&span, parent.unwrap_or_default());
    span
}

fn client_span<B>(request: &mut Request<B>, server: Option<SocketAddr>) -> Span {
    if let Some(id) = current_request_id() {
        request.headers_mut().insert(REQUEST_ID, id);
    }
    if Span::current().is_none() && !exporting() {
        return Span::none();
    }
    let method = method(request);
    let host = server.map(|addr| tracing::field::display(addr.ip()));
    let port = server.map(|addr| addr.port());
    let resends = request
        .extensions()
        .get::<ResendCount>()
        .map(|count| count.0);
    let span = tracing::info_span!(
        target: "rpc",
        "grpc.client",
        otel.name = method,
        otel.kind = "client",
        otel.status_code = Empty,
        rpc.system.name = "grpc",
        rpc.method = method,
        rpc.response.status_code = Empty,
        error.type = Empty,
        server.address = host,
        server.port = port,
        http.request.resend_count = resends.filter(|count| *count > 0),
        trace_id = Empty,
        span_id = Empty,
    );
    start(&span, opentelemetry::Context::new());
    inject(&span, request.headers_mut());
    span
}
