//! One web connection: served by hyper (HTTP/1 or HTTP/2), closed when it
//! has gone too long with no request in flight, or gracefully when the
//! listener stops.
//!
//! The wait for a request's headers is ours, one timer per connection, in
//! place of hyper's `header_read_timeout` (hyper 1.12.0 checked), which
//! makes and registers a new timer for every request of an HTTP/1
//! connection, and lets a connection that never sent a request wait out a
//! graceful shutdown (docs/benchmarks/history.md, "One timer per HTTP
//! connection"). The tests of server/http/tests.rs hold it to the same
//! bounds: trickled headers, idle connections, the drain.

use std::{
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    task::Poll,
    time::Duration,
};

use axum::http::{StatusCode, Version};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use tokio::time::Instant;

use super::{Shared, bounded::Bounded};
use crate::{
    metrics::HttpMetrics,
    server::{
        graceful::{Alarm, Stopping},
        listener::Accepted,
    },
};

/// How long a connection may go with no request in flight, on one timer
/// per connection:
///
/// - until its first request, the header read timeout (a connection that
///   sends nothing, or trickles its first request's headers, is closed);
/// - on HTTP/1, the header read timeout after each response: the next
///   request's headers must have come by then (hyper's header read timeout
///   also started when a response was sent);
/// - on HTTP/2, whose streams are independent, the idle timeout.
///
/// Neither is ever longer than the idle timeout.
#[derive(Clone, Copy, Debug)]
pub(super) struct Waits {
    pub(super) header: Duration,
    pub(super) idle: Duration,
}

impl Waits {
    fn for_connection(self, http2: bool) -> Duration {
        if http2 {
            self.idle
        } else {
            self.header.min(self.idle)
        }
    }
}

pub(super) async fn serve_connection(
    shared: Arc<Shared>,
    accepted: Accepted,
    mut stopping: Stopping,
) {
    let activity = Arc::new(Activity::new(shared.metrics.clone()));
    let service = Bounded {
        router: shared.router.clone(),
        activity: activity.clone(),
        slots: shared.slots.clone(),
        timeout: shared.request_timeout,
    };
    let io = TokioIo::new(accepted.stream);
    let mut connection = pin!(
        shared
            .builder
            .serve_connection(io, TowerToHyperService::new(service))
    );
    let waits = shared.waits;
    let mut idle = Alarm::at(Instant::now() + waits.for_connection(false));
    let mut closing = false;
    // The stop signal and the idle timer are checked at the cost of an
    // atomic load per poll (see crate::graceful); the connection's task is
    // polled several times per request.
    let result = std::future::poll_fn(|cx| {
        // The connection first: a request whose headers have all come is
        // served, not cut off by a wait that ended meanwhile.
        let polled = connection.as_mut().poll(cx);
        if polled.is_ready() || closing {
            return polled;
        }
        let mut close = stopping.poll_stopping(cx);
        while !close && idle.poll_rung(cx) {
            match activity.idle_deadline(waits) {
                Some(deadline) => idle.reset(deadline),
                // No request ever came, so none is lost: closed at once.
                // hyper's graceful shutdown would wait for the end of an
                // HTTP/1 connection's first request headers (slowloris).
                None if activity.protocol() == Protocol::Unknown => {
                    return Poll::Ready(Ok(()));
                }
                None => close = true,
            }
        }
        if close {
            closing = true;
            connection.as_mut().graceful_shutdown();
            return connection.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await;
    if let Err(err) = result {
        tracing::debug!(cause = %err, peer = %accepted.peer, "HTTP connection ended with an error");
    }
    drop(accepted.slot);
}

/// A connection's protocol, as its requests tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// No request yet.
    Unknown = 0,
    Http1 = 1,
    Http2 = 2,
}

/// What a connection is doing: requests in flight, and when the last one
/// ended; its protocol; and where its refused requests count.
pub(super) struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// The protocol of its requests (a [`Protocol`]).
    protocol: AtomicU8,
    /// Milliseconds from `started` to the end of the last request.
    last_end_ms: AtomicU64,
    metrics: Option<HttpMetrics>,
}

impl Activity {
    fn new(metrics: Option<HttpMetrics>) -> Self {
        Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            protocol: AtomicU8::new(Protocol::Unknown as u8),
            last_end_ms: AtomicU64::new(0),
            metrics,
        }
    }

    /// Counts a 503 the bounds answered, `elapsed` after the request came.
    pub(super) fn refused(&self, method: &'static str, elapsed: Duration) {
        if let Some(metrics) = &self.metrics {
            let status = StatusCode::SERVICE_UNAVAILABLE.as_u16();
            metrics.finished(method, "", status, elapsed);
        }
    }

    fn protocol(&self) -> Protocol {
        match self.protocol.load(Ordering::Relaxed) {
            1 => Protocol::Http1,
            2 => Protocol::Http2,
            _ => Protocol::Unknown,
        }
    }

    /// A request has come, over `version`: in flight until it ends.
    pub(super) fn request_started(&self, version: Version) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let protocol = if version == Version::HTTP_2 {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        self.protocol.store(protocol as u8, Ordering::Relaxed);
    }

    pub(super) fn request_ended(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_end_ms.store(ms, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Release);
    }

    /// When to look again, or `None` when the connection has gone longer
    /// than `waits` allow with no request in flight and should close. While
    /// requests are in flight it looks again a wait later, so that the
    /// last one's end is never noticed more than a wait late.
    fn idle_deadline(&self, waits: Waits) -> Option<Instant> {
        let timeout = waits.for_connection(self.protocol() == Protocol::Http2);
        let now = Instant::now();
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Some(now + timeout);
        }
        let last_end =
            self.started + Duration::from_millis(self.last_end_ms.load(Ordering::Relaxed));
        let deadline = last_end + timeout;
        (deadline > now).then_some(deadline)
    }
}
