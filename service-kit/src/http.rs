//! Serving an axum router within bounds: the web listener and the admin
//! listeners all go through [`serve`], which gives hyper a timer (axum's own
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

use std::{
    convert::Infallible,
    future::Future,
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{HeaderValue, Request, Response, StatusCode, Version, header},
};
use http_body::Frame;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use pin_project_lite::pin_project;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::Service;

use crate::{
    graceful::{Alarm, Stopping},
    limits::HttpLimits,
    listener::Listener,
    metrics::{HttpMetrics, http_method},
    timer::CoarseTimer,
};

/// HTTP/2 streams one connection may have open at once.
const MAX_CONCURRENT_STREAMS: u32 = 100;
/// How often an HTTP/2 connection is pinged, and how long the answer may take.
const KEEPALIVE: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(10));

/// Serves `router` on `listener` within `limits` until `stop` resolves, then
/// stops accepting, lets the requests in flight finish (idle keep-alive
/// connections are closed at once) and returns when every connection has
/// closed. The caller bounds that wait (see [`crate::shutdown`]). The
/// requests the limits refuse or time out count in `metrics`, if given.
pub async fn serve(
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
        .timer(CoarseTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    builder
        .http2()
        .timer(CoarseTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(KEEPALIVE.0)
        .keep_alive_timeout(KEEPALIVE.1);
    let shared = Arc::new(Shared {
        builder,
        router,
        slots: Arc::new(Semaphore::new(limits.http_max_requests_in_flight as usize)),
        request_timeout: limits.http_request_timeout,
        waits: Waits {
            header: limits.http_header_read_timeout,
            idle: limits.http_idle_timeout,
        },
        metrics,
    });

    let connections = TaskTracker::new();
    let stopping = CancellationToken::new();
    let mut stop = pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        connections.spawn(serve_connection(
            shared.clone(),
            accepted,
            Stopping::new(stopping.clone()),
        ));
    }
    drop(listener);
    stopping.cancel();
    connections.close();
    connections.wait().await;
}

/// What every connection of one listener shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    router: Router,
    /// One permit per request in flight, over all connections.
    slots: Arc<Semaphore>,
    request_timeout: Duration,
    waits: Waits,
    metrics: Option<HttpMetrics>,
}

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
struct Waits {
    header: Duration,
    idle: Duration,
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

async fn serve_connection(
    shared: Arc<Shared>,
    accepted: crate::listener::Accepted,
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
struct Activity {
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
    fn refused(&self, method: &'static str, elapsed: Duration) {
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

    fn request_ended(&self) {
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

/// The router as one connection serves it, with every per-request bound in
/// one step rather than a layer each (each `Router::layer` would box the
/// route and its future once more per request):
///
/// - the request counts as in flight for the idle timeout until its
///   response body ends;
/// - over the listener's cap on requests in flight it gets an immediate 503
///   with `Retry-After: 1` rather than a place in a queue;
/// - past the request timeout it gets a 503.
#[derive(Clone)]
struct Bounded {
    router: Router,
    activity: Arc<Activity>,
    slots: Arc<Semaphore>,
    timeout: Duration,
}

impl Service<Request<hyper::body::Incoming>> for Bounded {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = BoundedFuture<<Router as Service<Request<Body>>>::Future>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<hyper::body::Incoming>) -> Self::Future {
        self.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        let protocol = if request.version() == Version::HTTP_2 {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        self.activity
            .protocol
            .store(protocol as u8, Ordering::Relaxed);
        let guard = Some(RequestGuard(self.activity.clone()));
        let method = http_method(request.method());
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => BoundedFuture::Admitted {
                inner: self.router.call(request.map(Body::new)),
                // Not registered with the timer until first polled.
                timer: tokio::time::sleep(self.timeout),
                timeout: self.timeout,
                method,
                slot: Some(slot),
                guard,
            },
            Err(_) => {
                self.activity.refused(method, Duration::ZERO);
                BoundedFuture::Refused { guard }
            }
        }
    }
}

pin_project! {
    /// The response future of [`Bounded`].
    #[project = BoundedProj]
    enum BoundedFuture<F> {
        /// Under the cap: the router's response, holding its slot.
        Admitted {
            #[pin]
            inner: F,
            #[pin]
            timer: Sleep,
            timeout: Duration,
            method: &'static str,
            slot: Option<OwnedSemaphorePermit>,
            guard: Option<RequestGuard>,
        },
        /// Over the cap.
        Refused { guard: Option<RequestGuard> },
    }
}

impl<F> Future for BoundedFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (response, guard) = match self.project() {
            BoundedProj::Admitted {
                inner,
                timer,
                timeout,
                method,
                slot,
                guard,
            } => {
                let response = match inner.poll(cx) {
                    Poll::Ready(Ok(response)) => response,
                    Poll::Pending => {
                        ready!(timer.poll(cx));
                        if let Some(RequestGuard(activity)) = guard {
                            activity.refused(method, *timeout);
                        }
                        busy("The server took too long to answer this request. Please retry.\n")
                    }
                };
                drop(slot.take());
                (response, guard.take())
            }
            BoundedProj::Refused { guard } => (
                busy("The server is busy: too many requests at once. Please retry in a second.\n"),
                guard.take(),
            ),
        };
        Poll::Ready(Ok(response.map(|inner| TrackedBody {
            inner,
            _guard: guard,
        })))
    }
}

/// Ends a request for [`Activity`] when dropped, however the request ended.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

pin_project! {
    /// A response body that keeps its request counted until it is dropped.
    struct TrackedBody {
        #[pin]
        inner: Body,
        _guard: Option<RequestGuard>,
    }
}

impl http_body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// 503 with `Retry-After: 1` and `message`.
fn busy(message: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::get;
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::{TcpListener, TcpStream},
        sync::oneshot,
    };

    use super::*;

    struct Server {
        addr: std::net::SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn spawn(router: Router, limits: HttpLimits) -> Server {
        spawn_with(router, limits, None).await
    }

    async fn spawn_with(
        router: Router,
        limits: HttpLimits,
        metrics: Option<HttpMetrics>,
    ) -> Server {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = tcp.local_addr().expect("bound");
        let listener = Listener::new(tcp, limits.http_max_connections as usize, "test");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve(listener, router, &limits, metrics, async {
                let _ = stopped.await;
            })
            .await;
        });
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// HTTP metrics in a registry of their own, and a way to read them.
    fn metrics() -> (HttpMetrics, impl Fn() -> String) {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = HttpMetrics::register(&mut registry);
        let text = move || crate::metrics::encode(&registry).expect("encodes");
        (metrics, text)
    }

    /// The count of the series with an empty route and status 503.
    fn refused_count(text: &str) -> Option<&str> {
        text.lines()
            .find(|line| {
                line.starts_with("http_server_request_duration_seconds_count{")
                    && line.contains(r#"http_route="""#)
                    && line.contains(r#"http_response_status_code="503""#)
            })
            .and_then(|line| line.rsplit(' ').next())
    }

    async fn get_once(stream: &mut TcpStream, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("sent");
        let mut buf = vec![0u8; 4096];
        let read = stream.read(&mut buf).await.expect("an answer");
        String::from_utf8_lossy(&buf[..read]).into_owned()
    }

    /// One request on a keep-alive connection, answered; then the server
    /// closes the connection on its own.
    async fn served_once_then_closed(server: &Server) {
        let mut stream = TcpStream::connect(server.addr).await.expect("connects");
        let answer = get_once(&mut stream, "/").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("closed by the server, not by this test's timeout");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    }

    #[tokio::test]
    async fn requests_over_the_cap_get_503_with_retry_after_at_once() {
        let (entered_tx, mut entered) = tokio::sync::mpsc::channel::<()>(1);
        let release = Arc::new(tokio::sync::Notify::new());
        let router = {
            let release = release.clone();
            Router::new().route(
                "/slow",
                get(move || {
                    let entered = entered_tx.clone();
                    let release = release.clone();
                    async move {
                        let _ = entered.send(()).await;
                        release.notified().await;
                        "done"
                    }
                }),
            )
        };
        let limits = HttpLimits {
            http_max_requests_in_flight: 1,
            ..HttpLimits::default()
        };
        let (metrics, text) = metrics();
        let server = spawn_with(router, limits, Some(metrics)).await;
        let mut first = TcpStream::connect(server.addr).await.expect("connects");
        first
            .write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .expect("sent");
        entered
            .recv()
            .await
            .expect("the first request is in flight");

        let mut second = TcpStream::connect(server.addr).await.expect("connects");
        let refused = get_once(&mut second, "/slow").await;

        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        assert!(
            refused.to_ascii_lowercase().contains("retry-after: 1"),
            "{refused}"
        );
        // The refusal counts, with no route: it never reached the router.
        assert_eq!(refused_count(&text()), Some("1"), "{}", text());
        release.notify_one();
        let mut buf = vec![0u8; 1024];
        let read = first.read(&mut buf).await.expect("the first answer");
        assert!(String::from_utf8_lossy(&buf[..read]).starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn a_request_past_the_request_timeout_gets_503() {
        let router = Router::new().route("/stuck", get(std::future::pending::<&str>));
        let limits = HttpLimits {
            http_request_timeout: Duration::from_millis(200),
            ..HttpLimits::default()
        };
        let (metrics, text) = metrics();
        let server = spawn_with(router, limits, Some(metrics)).await;
        let mut stream = TcpStream::connect(server.addr).await.expect("connects");

        let answer = tokio::time::timeout(Duration::from_secs(10), get_once(&mut stream, "/stuck"))
            .await
            .expect("answered by the server's timeout, not this test's");

        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert_eq!(refused_count(&text()), Some("1"), "{}", text());
        assert!(
            text().contains(r#"http_server_request_duration_seconds_sum{http_request_method="GET",http_route="",http_response_status_code="503"} 0.2"#),
            "counted at the timeout's 200 ms: {}",
            text()
        );
    }

    #[tokio::test]
    async fn an_http1_connection_waits_for_its_next_request_no_longer_than_the_header_timeout() {
        let router = Router::new().route("/", get(|| async { "ok" }));
        let limits = HttpLimits {
            http_idle_timeout: Duration::from_secs(600),
            http_header_read_timeout: Duration::from_millis(300),
            ..HttpLimits::default()
        };
        let server = spawn(router, limits).await;

        served_once_then_closed(&server).await;
    }

    /// Limits with a short header read timeout and an idle timeout that no
    /// test outlasts.
    fn short_header_timeout() -> HttpLimits {
        HttpLimits {
            http_idle_timeout: Duration::from_secs(600),
            http_header_read_timeout: Duration::from_millis(300),
            ..HttpLimits::default()
        }
    }

    /// Whether the server closes `stream` (end of stream or a reset) within
    /// `within`, whatever it sends before.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Writes `bytes` a byte every 100 ms for `rounds` rounds, ignoring
    /// errors (the server may have closed already).
    async fn trickle(stream: &mut TcpStream, rounds: usize) {
        for _ in 0..rounds {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = stream.write_all(b"x").await;
        }
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_at_the_header_timeout() {
        let router = Router::new().route("/", get(|| async { "ok" }));
        let server = spawn(router, short_header_timeout()).await;
        let mut stream = TcpStream::connect(server.addr).await.expect("connects");

        assert!(closed_within(&mut stream, Duration::from_secs(10)).await);
    }

    /// Whether an HTTP/1 connection that trickles a request's headers, after
    /// one served request or none, is closed at the header timeout.
    async fn trickled_headers_are_cut_off(after_one_request: bool) -> bool {
        let router = Router::new().route("/", get(|| async { "ok" }));
        let server = spawn(router, short_header_timeout()).await;
        let mut stream = TcpStream::connect(server.addr).await.expect("connects");
        if after_one_request {
            let answer = get_once(&mut stream, "/").await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
        stream
            .write_all(b"GET / HTTP/1.1\r\nX-Slow: ")
            .await
            .expect("sent");

        // Past three header timeouts, a byte at a time.
        trickle(&mut stream, 10).await;

        closed_within(&mut stream, Duration::from_secs(10)).await
    }

    #[tokio::test]
    async fn an_http1_connection_that_trickles_its_first_requests_headers_is_closed_at_the_header_timeout()
     {
        assert!(trickled_headers_are_cut_off(false).await);
    }

    #[tokio::test]
    async fn an_http1_connection_that_trickles_its_next_requests_headers_is_closed_at_the_header_timeout()
     {
        assert!(trickled_headers_are_cut_off(true).await);
    }

    #[tokio::test]
    async fn after_a_request_longer_than_the_header_timeout_the_next_ones_headers_get_no_more() {
        let router = Router::new().route(
            "/",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(700)).await;
                "slow"
            }),
        );
        let server = spawn(router, short_header_timeout()).await;

        served_once_then_closed(&server).await;
    }

    /// The client's preface and an empty SETTINGS frame (RFC 9113, 3.4).
    const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
    const H2_HEADERS: u8 = 0x1;
    const H2_PING: u8 = 0x6;
    const H2_GOAWAY: u8 = 0x7;

    /// A HEADERS frame that ends its stream: `GET /` over http, in HPACK's
    /// static table (:method GET, :scheme http, :path /).
    fn h2_get(stream_id: u8) -> [u8; 12] {
        [
            0, 0, 3, H2_HEADERS, 0x5, 0, 0, 0, stream_id, 0x82, 0x86, 0x84,
        ]
    }

    /// What an HTTP/2 server did, as far as a client that acknowledges its
    /// pings saw within a wait.
    #[derive(Debug, PartialEq)]
    enum H2Seen {
        /// A HEADERS frame on this stream.
        Headers(u32),
        /// A GOAWAY frame, or the connection closed.
        Closing,
        /// Neither.
        Nothing,
    }

    /// Reads frames from `stream` for up to `within`, answering pings,
    /// until a response's headers or the connection's end.
    async fn h2_next(stream: &mut TcpStream, within: Duration) -> H2Seen {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut head = [0u8; 9];
            match tokio::time::timeout_at(deadline, stream.read_exact(&mut head)).await {
                Err(_) => return H2Seen::Nothing,
                Ok(Err(_)) => return H2Seen::Closing,
                Ok(Ok(_)) => {}
            }
            let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; length];
            if stream.read_exact(&mut payload).await.is_err() {
                return H2Seen::Closing;
            }
            match head[3] {
                H2_HEADERS if stream_id != 0 => return H2Seen::Headers(stream_id),
                H2_GOAWAY => return H2Seen::Closing,
                H2_PING if head[4] & 0x1 == 0 => {
                    let mut ack = vec![0, 0, 8, H2_PING, 0x1, 0, 0, 0, 0];
                    ack.extend_from_slice(&payload);
                    let _ = stream.write_all(&ack).await;
                }
                _ => {}
            }
        }
    }

    #[tokio::test]
    async fn an_http2_connection_that_sends_no_request_is_closed_at_the_header_timeout() {
        let router = Router::new().route("/", get(|| async { "ok" }));
        let server = spawn(router, short_header_timeout()).await;
        let mut stream = TcpStream::connect(server.addr).await.expect("connects");
        stream.write_all(H2_PREFACE).await.expect("sent");

        let seen = h2_next(&mut stream, Duration::from_secs(10)).await;

        assert_eq!(seen, H2Seen::Closing);
    }

    #[tokio::test]
    async fn an_http2_connection_waits_between_requests_for_the_idle_timeout() {
        let router = Router::new().route("/", get(|| async { "ok" }));
        let server = spawn(router, short_header_timeout()).await;
        let mut stream = TcpStream::connect(server.addr).await.expect("connects");
        stream.write_all(H2_PREFACE).await.expect("sent");
        stream.write_all(&h2_get(1)).await.expect("sent");
        let first = h2_next(&mut stream, Duration::from_secs(10)).await;
        assert_eq!(first, H2Seen::Headers(1));

        // More than three header timeouts with nothing in flight: HTTP/2
        // streams are independent, and only the idle timeout (600 s)
        // applies between them.
        let between = h2_next(&mut stream, Duration::from_secs(1)).await;
        stream.write_all(&h2_get(3)).await.expect("sent");
        let second = h2_next(&mut stream, Duration::from_secs(10)).await;

        assert_eq!(between, H2Seen::Nothing);
        assert_eq!(second, H2Seen::Headers(3));
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_and_a_stop_waits_for_none() {
        let router = Router::new().route("/", get(|| async { "ok" }));
        let limits = HttpLimits {
            http_idle_timeout: Duration::from_millis(300),
            http_header_read_timeout: Duration::from_secs(30),
            ..HttpLimits::default()
        };
        let mut server = spawn(router, limits).await;

        served_once_then_closed(&server).await;
        let _ = server.stop.take().map(|stop| stop.send(()));
        server.task.await.expect("the server stops");
    }
}
