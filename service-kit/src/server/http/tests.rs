//! The web listener's bounds over real sockets: timeouts, caps, 503s and the drain.

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

async fn spawn_with(router: Router, limits: HttpLimits, metrics: Option<HttpMetrics>) -> Server {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = tcp.local_addr().expect("bound");
    let listener = Listener::new(tcp, limits.http_max_connections as usize, "test");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve_http(listener, router, &limits, metrics, async {
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
