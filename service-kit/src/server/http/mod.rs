//! Serving an axum router within bounds: the web listener and the admin
//! listeners all go through [`serve_http`], which gives hyper a timer (axum's own
//! `serve` does not, so hyper enforces no timeout at all) and applies
//! [`HttpLimits`]:
//!
//! - a cap on open connections (see [`Listener`]);
//! - a header read timeout, so that slowloris connections are closed;
//! - an idle timeout for keep-alive connections with no request in flight;
//!
//! Both are one timer per connection, ours, rather than hyper's header read
//! timeout, which boxes and registers a new timer for every request of an
//! HTTP/1 connection (docs/benchmarks/history.md, "One timer per HTTP
//! connection").
//!
//! - a cap on requests in flight, beyond which the answer is an immediate
//!   503 with Retry-After;
//! - a timeout per request (503).
//!
//! Given [`HttpMetrics`], the 503s the bounds answer themselves count in
//! them with an empty route: the router's own layers never see them.

mod bounded;
mod connection;
pub mod observe;
#[cfg(test)]
mod tests;

use std::{future::Future, sync::Arc, time::Duration};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioTimer},
    server::conn::auto,
};

use super::{connections::run_connections, in_flight::InFlightLimit, listener::Listener};
use crate::{limits::HttpLimits, metrics::HttpMetrics};
use connection::{Waits, serve_connection};
pub use observe::HttpObserveLayer;

/// HTTP/2 streams one connection may have open at once.
const MAX_CONCURRENT_STREAMS: u32 = 100;
/// How often an HTTP/2 connection is pinged, and how long the answer may take.
const KEEPALIVE: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(10));

/// Serves `router` on `listener` within `limits` until `stop` resolves, then
/// stops accepting, lets the requests in flight finish (idle keep-alive
/// connections are closed at once) and returns when every connection has
/// closed. The caller bounds that wait (see [`crate::shutdown`]). The
/// requests the limits refuse or time out count in `metrics`, if given.
pub async fn serve_http(
    listener: Listener,
    router: Router,
    limits: &HttpLimits,
    metrics: Option<HttpMetrics>,
    stop: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header read timeout is off: see `Waits`.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(KEEPALIVE.0)
        .keep_alive_timeout(KEEPALIVE.1);
    let shared = Arc::new(Shared {
        builder,
        router,
        slots: InFlightLimit::new(limits.http_max_requests_in_flight as usize),
        request_timeout: limits.http_request_timeout,
        waits: Waits {
            header: limits.http_header_read_timeout,
            idle: limits.http_idle_timeout,
        },
        metrics,
    });

    run_connections(listener, stop, |accepted, stopping| {
        serve_connection(shared.clone(), accepted, stopping)
    })
    .await;
}

/// What every connection of one listener shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    router: Router,
    /// One permit per request in flight, over all connections.
    slots: Arc<InFlightLimit>,
    request_timeout: Duration,
    waits: Waits,
    metrics: Option<HttpMetrics>,
}
