//! A span per gRPC call, on either side: the server's continues the
//! caller's trace; the client's is a child of the current span (a page) and
//! passes its context and the request id on in the call's metadata.
//!
//! The span is entered while the inner service runs and while the response
//! body is polled, so that the call's log line (written by the observer
//! below, see [`crate::rpc::RpcLogger`]) carries its ids and records its
//! final status on it.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::{Span, field::Empty};

use super::{
    REQUEST_ID, TRACEPARENT, current_request_id, exporting, extract, inject, request_id, start,
};
use crate::metrics::Side;

/// How many times a call was sent before this attempt (a retry on another
/// replica is 1), as a request extension the client span records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResendCount(pub u32);

/// Wraps a gRPC service (server or client side) in [`RpcSpan`].
#[derive(Clone, Copy, Debug)]
pub struct RpcSpanLayer {
    side: Side,
    /// The replica a client calls.
    server: Option<SocketAddr>,
}

impl RpcSpanLayer {
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
}

impl<S> Layer<S> for RpcSpanLayer {
    type Service = RpcSpan<S>;

    fn layer(&self, inner: S) -> RpcSpan<S> {
        RpcSpan {
            inner,
            layer: *self,
        }
    }
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct RpcSpan<S> {
    inner: S,
    layer: RpcSpanLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RpcSpan<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<InSpan<ResBody>>;
    type Error = S::Error;
    type Future = SpanFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let span = match self.layer.side {
            Side::Server => server_span(&request),
            Side::Client => client_span(&mut request, self.layer.server),
        };
        let inner = span.in_scope(|| self.inner.call(request));
        SpanFuture { inner, span }
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

pin_project! {
    /// The inner service's future, polled in the call's span.
    pub struct SpanFuture<F> {
        #[pin]
        inner: F,
        span: Span,
    }
}

impl<F, B, E> Future for SpanFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<InSpan<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        this.inner.poll(cx).map(|result| {
            result.map(|response| {
                response.map(|body| InSpan {
                    inner: body,
                    span: this.span.clone(),
                })
            })
        })
    }
}

pin_project! {
    /// A response body polled in the call's span: the call's end, in the
    /// trailers, is observed inside it. (A call dropped before its end is
    /// observed as the body is dropped, outside the span: its log line
    /// lacks the ids, and its span the status.)
    pub struct InSpan<B> {
        #[pin]
        inner: B,
        span: Span,
    }

}

impl<B: Body> Body for InSpan<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let _entered = this.span.enter();
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
