//! A real recommendations server on port 0, and a marketplace wired to it
//! (the rest of the test support is `service_kit::testing`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use axum::{Router, body::Body};
use http::{Request, Response};
use http_body_util::BodyExt as _;
use marketplace::Settings;
use service_kit::testing::Running;
use tower::ServiceExt as _;

/// A recommendations server running in this process.
pub struct Upstream {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    running: Running,
}

impl Upstream {
    pub async fn start(catalog: Option<PathBuf>) -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("valid"), catalog).await
    }

    pub async fn start_on(addr: SocketAddr, catalog: Option<PathBuf>) -> Self {
        let settings = recommendations::Settings {
            listen: addr,
            catalog,
            ..recommendations::Settings::for_tests()
        };
        let app = recommendations::Application::build(settings)
            .await
            .expect("recommendations builds");
        let addr = app.local_addr();
        let admin = app.admin_addr().expect("bound");
        let running = Running::spawn(|shutdown| app.run_until_stopped(shutdown));
        Self {
            addr,
            admin,
            running,
        }
    }

    /// Shuts down as on SIGTERM (NOT_SERVING, GOAWAY, drain) and waits.
    pub async fn stop(self) {
        self.running.stop().await.expect("a clean exit");
    }

    /// How many Recommend calls this replica answered OK.
    pub async fn recommend_calls(&self) -> u64 {
        recommend_calls_at(&self.admin.to_string()).await
    }
}

/// The marketplace's router, wired to recommendations at `upstream`.
pub async fn marketplace(upstream: SocketAddr, rpc_timeout: Duration) -> (Router, SocketAddr) {
    marketplace_with(Settings {
        rpc_timeout,
        ..Settings::for_tests(upstream)
    })
    .await
}

/// The marketplace's router with `settings`, and its admin address.
pub async fn marketplace_with(settings: Settings) -> (Router, SocketAddr) {
    let app = marketplace::Application::build(settings)
        .await
        .expect("marketplace builds");
    let admin = app.admin_addr().expect("bound");
    let router = app.router();
    // The admin listener serves the registry the router records into.
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    (router, admin)
}

/// GET `path` through the router, in process: (response, body).
pub async fn get(router: &Router, path: &str) -> (Response<()>, String) {
    let request = Request::get(path)
        .body(Body::empty())
        .expect("a valid request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("a complete body").to_bytes();
    let body = String::from_utf8(bytes.to_vec()).expect("UTF-8");
    (Response::from_parts(parts, ()), body)
}

/// GET on an admin listener.
pub async fn admin_get(admin: impl std::fmt::Display, path: &str) -> String {
    service_kit::testing::http_get(format!("http://{admin}{path}"))
        .await
        .expect("the admin listener answers")
        .text()
        .await
        .expect("a text body")
}

/// The titles of the book cards of a page.
pub fn book_titles(html: &str) -> Vec<&str> {
    html.split(r#"<p class="book-title">"#)
        .skip(1)
        .filter_map(|rest| rest.split("</p>").next())
        .collect()
}

/// An address that accepts TCP connections and never answers: only a
/// deadline ends a call to it. The listener lives until the test ends.
pub async fn silent_upstream() -> SocketAddr {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = silent.local_addr().expect("bound");
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    addr
}

/// How many Recommend calls the replica with admin listener `admin`
/// answered OK, from its own metrics.
pub async fn recommend_calls_at(admin: &str) -> u64 {
    let metrics = admin_get(admin, "/metrics").await;
    let series = "rpc_server_call_duration_seconds_count{rpc_system_name=\"grpc\",\
                  rpc_method=\"bookstore.recommendations.v1.RecommendationsService/Recommend\",\
                  rpc_response_status_code=\"OK\"}";
    metric_value(&metrics, series).map_or(0, |count| count as u64)
}

/// The value of `series` (its name and labels, as /metrics writes them)
/// in the Prometheus text `metrics`.
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

/// HTTP/2 by hand, for the peers a test plays: a replica that misbehaves, or
/// one that records what the marketplace's calls look like on the wire.
pub mod h2_frames {
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::TcpStream,
    };

    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const SETTINGS: u8 = 0x4;
    pub const GOAWAY: u8 = 0x7;
    /// END_STREAM on DATA and HEADERS; ACK on SETTINGS.
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;

    /// One frame on stream 0.
    pub fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let length = u32::try_from(payload.len())
            .expect("a small frame")
            .to_be_bytes();
        let mut bytes = vec![length[1], length[2], length[3], kind, flags, 0, 0, 0, 0];
        bytes.extend_from_slice(payload);
        bytes
    }

    /// A frame as read: its type, flags, stream and payload.
    pub struct Frame {
        pub kind: u8,
        pub flags: u8,
        pub stream: u32,
        pub payload: Vec<u8>,
    }

    /// The server's side of the connection preface: reads the client's,
    /// sends empty SETTINGS.
    pub async fn accept(socket: &mut TcpStream) -> std::io::Result<()> {
        let mut preface = [0; PREFACE.len()];
        socket.read_exact(&mut preface).await?;
        socket.write_all(&frame(SETTINGS, 0, &[])).await
    }

    /// The next frame other than SETTINGS, acknowledging those.
    pub async fn next(socket: &mut TcpStream) -> std::io::Result<Frame> {
        loop {
            let received = read(socket).await?;
            match received.kind {
                SETTINGS if received.flags & ACK == 0 => {
                    socket.write_all(&frame(SETTINGS, ACK, &[])).await?;
                }
                SETTINGS => {}
                _ => return Ok(received),
            }
        }
    }

    /// Reads the next frame.
    pub async fn read(socket: &mut TcpStream) -> std::io::Result<Frame> {
        let mut header = [0; 9];
        socket.read_exact(&mut header).await?;
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]);
        let mut payload = vec![0; length as usize];
        socket.read_exact(&mut payload).await?;
        Ok(Frame {
            kind: header[3],
            flags: header[4],
            stream: u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff,
            payload,
        })
    }
}
