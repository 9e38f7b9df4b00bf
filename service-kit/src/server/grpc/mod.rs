//! Serving gRPC: the listener's connections, from accept to the call, and
//! the layers every call goes through. [`serve_grpc`] is the whole stack,
//! built in one place; each step is a module:
//!
//! - [`handshake`]: TLS (or a plaintext client's first bytes) within a time
//!   limit, in a task per connection;
//! - [`connection_age`]: the hard end of a connection's life;
//! - the connection loop ([`super::connections`]), each connection served
//!   by hyper's HTTP/2 server and closed gracefully (GOAWAY, calls in
//!   flight finish) at its maximum age or when the server stops;
//! - the call layers: [`crate::observe::Observe`] (span, logs, metrics),
//!   [`admission`], [`call_timeout`], [`error_status`].
//!
//! Owned, in place of tonic's `Server` (tonic 0.14.9 checked): per call, its
//! connection task polled a timer and a channel in a `tokio::select!`, and
//! boxed the service and the response body, at a cost measured in
//! docs/benchmarks/history.md, "Our own connection loop". What tonic's server
//! added to each call is here or in the layer stack: the peer's address in
//! the request's extensions (as `TcpConnectInfo`, which
//! `tonic::Request::remote_addr` reads), and the client's `grpc-timeout`
//! ([`call_timeout`]). The conformance tests
//! (service-kit/tests/conformance/server.rs) run the same cases against both
//! servers: statuses, trailers, deadlines (where ours answers
//! DEADLINE_EXCEEDED as the gRPC spec names it, and tonic's CANCELLED),
//! GOAWAY at the maximum age, flow control, cancellation.

pub mod admission;
pub mod call_timeout;
pub mod connection_age;
pub mod error_status;
pub mod handshake;

use std::{
    convert::Infallible,
    future::Future,
    task::{Context, Poll},
};

use http::{Request, Response};
use hyper::{body::Incoming, server::conn::http2};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::time::Instant;
use tonic::transport::server::TcpConnectInfo;
use tower::{Service, ServiceBuilder};

use super::{connections::run_connections, graceful::Graceful, listener::Listener};
use crate::{
    limits::GrpcLimits,
    metrics::{RpcMetrics, Side},
    observe::{ObserveLayer, RpcLogger, RpcMeter},
    trace::CallSpans,
};
use admission::AdmissionLayer;
use call_timeout::{CallTimeoutLayer, TimedBody};
use error_status::ErrorStatusLayer;
use handshake::Handshake;
pub use handshake::ServerTls;

/// Serves `services` (the call router: each call's service by the name in
/// its path) on `listener` within `limits`, with TLS if `tls` is given,
/// until `stop` resolves; then stops accepting, asks every connection to
/// close, and returns when they all have (unbounded: the caller bounds the
/// drain). Calls are logged and counted in `metrics`, and traced with
/// `spans`.
pub async fn serve_grpc<S>(
    services: S,
    listener: Listener,
    limits: &GrpcLimits,
    tls: Option<ServerTls>,
    metrics: RpcMetrics,
    spans: CallSpans,
    stop: impl Future<Output = ()>,
) -> Result<(), Infallible>
where
    S: Service<
            Request<TimedBody<tonic::body::Body>>,
            Response = Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    // ServiceBuilder order: the first layer is the outermost. Each request
    // comes with its peer's address (`WithPeer`).
    let layers = ServiceBuilder::new()
        // One log event per call and its metrics (count, latency, in
        // flight), outermost so that they see the final status of
        // everything below, refused, timed-out and panicking calls included;
        // and the call's span, continuing the caller's trace, entered around
        // everything below, so that their log lines carry its ids.
        .layer(
            ObserveLayer::new((RpcLogger::new(Side::Server), RpcMeter::new(metrics)))
                .with_spans(spans),
        )
        // Over the bound on calls in flight, refuse at once rather than
        // queue; a call's slot is held until its response is sent.
        .layer(AdmissionLayer::new(
            limits.concurrency_limit as usize,
            GrpcLimits::HEALTH_CONCURRENCY_LIMIT,
        ))
        // The limits per call, whatever deadline the client sent (or none):
        // the request message must arrive in time, and the call end by its
        // client's deadline and the server's maximum, or the call ends with
        // DEADLINE_EXCEEDED and its slot is freed.
        .layer(CallTimeoutLayer::new(
            limits.request_timeout,
            limits.max_call_duration,
        ))
        // Innermost: a panicking handler becomes INTERNAL, logged once, and
        // tonic's OUT_OF_RANGE for oversized messages the spec's
        // RESOURCE_EXHAUSTED.
        .layer(ErrorStatusLayer::default());

    // Connections are capped and handshakes time-limited before they are
    // served; each is closed at the maximum age plus grace (GOAWAY comes at
    // the maximum age).
    let incoming = handshake::incoming(
        listener,
        Handshake {
            tls,
            timeout: limits.handshake_timeout,
            lifetime: limits.max_connection_age + limits.max_connection_age_grace,
        },
    );
    let service = layers.service(services);
    let http2 = http2_builder(limits);
    let max_age = limits.max_connection_age;
    run_connections(incoming, stop, |connection, stopping| {
        let peer = connection.get_ref().connect_info().clone();
        let remote = peer.remote_addr();
        let service = TowerToHyperService::new(WithPeer {
            inner: service.clone(),
            peer,
        });
        let connection = Graceful::new(
            http2.serve_connection(TokioIo::new(connection), service),
            stopping,
            Some(Instant::now() + max_age),
        );
        async move {
            if let Err(err) = connection.await {
                tracing::debug!(peer = ?remote, cause = %err, "gRPC connection ended with an error");
            }
        }
    })
    .await;
    Ok(())
}

/// hyper's HTTP/2 server as every gRPC connection gets it.
fn http2_builder(limits: &GrpcLimits) -> http2::Builder<TokioExecutor> {
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        // The timer keep-alive's pings run on.
        .timer(TokioTimer::new())
        // PINGs that find dead peers, whose calls would hold their slots.
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout)
        // One connection's share: streams over it are refused by h2 itself
        // (REFUSED_STREAM), before any work is done for them.
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(GrpcLimits::MAX_HEADER_LIST_BYTES)
        // Rapid Reset (CVE-2023-44487) and MadeYouReset (CVE-2025-8671):
        // see the two limits.
        .max_pending_accept_reset_streams(limits.max_pending_accept_reset_streams())
        .max_local_error_reset_streams(GrpcLimits::MAX_LOCAL_ERROR_RESETS)
        // gRPC has no use for a `date` header on every response.
        .auto_date_header(false);
    http2
}

/// Gives each request its connection's peer and tonic's request body.
#[derive(Clone)]
struct WithPeer<S> {
    inner: S,
    peer: TcpConnectInfo,
}

impl<S> Service<Request<Incoming>> for WithPeer<S>
where
    S: Service<Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.peer.clone());
        self.inner.call(request.map(tonic::body::Body::new))
    }
}
