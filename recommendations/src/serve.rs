//! Serving the accepted connections: HTTP/2 by hyper, each connection in a
//! task of its own, closed gracefully (GOAWAY, calls in flight finish) at
//! its maximum age or when the server stops.
//!
//! This is what tonic's `Server` does, without what it costs on every call
//! of a service this fast (docs/benchmarks/history.md, "Our own connection
//! loop"): a `tokio::select!` that polls a timer and a channel each time a
//! connection's task runs, a boxed service per call and a boxed response
//! body. What tonic's server added to each call is here or in the layer
//! stack: the peer's address in the request's extensions (as
//! `TcpConnectInfo`, which `tonic::Request::remote_addr` reads), and the
//! client's `grpc-timeout` (`CallTimeoutLayer`).

use std::{
    future::Future,
    pin::pin,
    task::{Context, Poll},
};

use http::{Request, Response};
use hyper::{body::Incoming, server::conn::http2};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    service::TowerToHyperService,
};
use service_kit::{
    graceful::{Graceful, Stopping},
    limits::GrpcLimits,
    timer::CoarseTimer,
};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::transport::server::TcpConnectInfo;
use tower::Service;

use crate::{connection_age::AgeLimited, listener::Connection};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `service` on each connection from `incoming` within `limits`
/// until `stop` resolves; then stops accepting (the listening socket
/// closes), asks every connection to close, and returns when they all have
/// (unbounded: the caller bounds the drain).
pub async fn serve<S, B>(
    mut incoming: mpsc::Receiver<AgeLimited<Connection>>,
    service: S,
    limits: &GrpcLimits,
    stop: impl Future<Output = ()>,
) where
    S: Service<Request<tonic::body::Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        // hyper reads its clock on every frame for keep-alive: a cheap one.
        .timer(CoarseTimer::new())
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

    let connections = TaskTracker::new();
    let stopping = CancellationToken::new();
    let mut stop = pin!(stop);
    loop {
        let connection = tokio::select! {
            () = &mut stop => break,
            connection = incoming.recv() => match connection {
                Some(connection) => connection,
                None => break,
            },
        };
        let peer = connection.get_ref().connect_info().clone();
        let remote = peer.remote_addr();
        let service = TowerToHyperService::new(WithPeer {
            inner: service.clone(),
            peer,
        });
        let connection = Graceful::new(
            http2.serve_connection(TokioIo::new(connection), service),
            Stopping::new(stopping.clone()),
            Some(Instant::now() + limits.max_connection_age),
        );
        connections.spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(peer = ?remote, cause = %err, "gRPC connection ended with an error");
            }
        });
    }
    // Closes the listening socket: new clients are refused at once rather
    // than left waiting for an accept that never comes.
    drop(incoming);
    stopping.cancel();
    connections.close();
    connections.wait().await;
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
