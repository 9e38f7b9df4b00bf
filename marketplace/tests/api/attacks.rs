//! Hostile HTTP clients against the real web and admin listeners over real
//! sockets: slowloris, idle keep-alive connections, more connections than
//! the cap, more requests than may be in flight.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use marketplace::{Application, Settings};
use service_kit::{
    limits::{AdminLimits, HttpLimits},
    testing::Process,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::helpers::Upstream;

/// The marketplace serving on both listeners, with `limits` on the web one.
async fn serve(upstream: SocketAddr, limits: HttpLimits) -> (SocketAddr, SocketAddr) {
    let mut settings = Settings::for_tests(upstream);
    settings.limits = limits;
    settings.service.admin_limits = AdminLimits {
        admin_max_connections: 8,
    };
    let app = Application::build(settings)
        .await
        .expect("marketplace builds");
    let web = app.local_addr();
    let admin = app.admin_addr().expect("bound");
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    (web, admin)
}

/// Reads until the server closes the connection (true) or `patience`
/// passes (false).
async fn closed_by_server(stream: &mut TcpStream, patience: Duration) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(patience, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// `count` connections to `addr`, each kept open after a request for `path`
/// was answered, so that each surely holds a slot.
async fn served_connections(addr: SocketAddr, path: &str, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..count {
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("sent");
        let mut buf = [0u8; 512];
        let read = stream.read(&mut buf).await.expect("an answer");
        assert!(read > 0);
        held.push(stream);
    }
    held
}

async fn homepage_status(addr: SocketAddr) -> Option<u16> {
    let response = service_kit::testing::http_get(format!("http://{addr}/"))
        .await
        .ok()?;
    Some(response.status().as_u16())
}

/// Attack 5: connections that trickle a request's headers a byte at a time
/// are closed at the header read timeout, on the web and admin listeners
/// alike (the admin's is fixed at 5 s), and pages are served meanwhile.
#[tokio::test]
async fn slowloris_connections_are_closed_at_the_header_read_timeout() {
    let upstream = Upstream::start(None).await;
    let (web, admin) = serve(
        upstream.addr,
        HttpLimits {
            http_header_read_timeout: Duration::from_millis(500),
            ..HttpLimits::default()
        },
    )
    .await;
    let mut trickling = Vec::new();
    for addr in [web, admin] {
        for _ in 0..4 {
            let mut stream = TcpStream::connect(addr).await.expect("connects");
            stream
                .write_all(b"GET / HTTP/1.1\r\nHo")
                .await
                .expect("sent");
            trickling.push(stream);
        }
    }
    // Keep trickling, a byte every 100 ms, for longer than the timeout.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for stream in &mut trickling {
            let _ = stream.write_all(b"s").await;
        }
    }

    let page = homepage_status(web).await;
    let mut closed = 0;
    for stream in &mut trickling {
        if closed_by_server(stream, Duration::from_secs(20)).await {
            closed += 1;
        }
    }

    assert_eq!(page, Some(200));
    assert_eq!(closed, 8, "every trickling connection is closed");
}

/// Attack 7: an idle keep-alive connection is closed at the idle timeout.
#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let upstream = Upstream::start(None).await;
    let (web, _) = serve(
        upstream.addr,
        HttpLimits {
            http_idle_timeout: Duration::from_millis(300),
            ..HttpLimits::default()
        },
    )
    .await;
    let mut stream = TcpStream::connect(web).await.expect("connects");
    stream
        .write_all(b"GET /static/favicon.svg HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("sent");

    let closed = closed_by_server(&mut stream, Duration::from_secs(10)).await;

    assert!(closed);
}

/// Attack 7: connections over the cap are closed at once; pages are served
/// again as soon as connections leave.
#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let upstream = Upstream::start(None).await;
    let (web, _) = serve(
        upstream.addr,
        HttpLimits {
            http_max_connections: 4,
            ..HttpLimits::default()
        },
    )
    .await;
    let held = served_connections(web, "/static/favicon.svg", 4).await;

    let mut over = TcpStream::connect(web).await.expect("the kernel accepts");
    let refused = closed_by_server(&mut over, Duration::from_secs(5)).await;
    drop(held);
    let page = homepage_status(web).await;

    assert!(refused, "the fifth connection is closed at once");
    assert_eq!(page, Some(200));
}

/// The admin listener has its own, smaller cap (8 here): connections over it
/// are closed at once, and /healthz answers again when they leave.
#[tokio::test]
async fn admin_connections_over_the_cap_are_closed_at_once() {
    let upstream = Upstream::start(None).await;
    let (_, admin) = serve(upstream.addr, HttpLimits::default()).await;
    let held = served_connections(admin, "/healthz", 8).await;

    let mut over = TcpStream::connect(admin).await.expect("the kernel accepts");
    let refused = closed_by_server(&mut over, Duration::from_secs(5)).await;
    drop(held);
    // The server frees a slot when it sees the close: ask until it has.
    let mut healthz = None;
    for _ in 0..50 {
        healthz = service_kit::testing::http_get(format!("http://{admin}/healthz"))
            .await
            .map(|r| r.status().as_u16())
            .ok();
        if healthz == Some(200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert!(refused, "the ninth connection is closed at once");
    assert_eq!(healthz, Some(200));
}

/// A client asking for nothing but pages that do not exist: the real
/// binary, at its default log filter, writes a few lines a second, not one
/// per request, and the line after the flood counts every one it held back.
#[tokio::test]
async fn a_flood_of_404s_writes_a_few_lines_a_second_and_counts_the_rest() {
    const REQUESTS: u64 = 400;
    let nowhere = service_kit::testing::free_addr([127, 0, 0, 1]);
    let port = format!("--recommendations-port={}", nowhere.port());
    let mut process = Process::start_with_env(
        &PathBuf::from(env!("CARGO_BIN_EXE_marketplace")),
        &[
            "--listen=127.0.0.1:0",
            "--admin-listen=127.0.0.1:0",
            "--recommendations-host=127.0.0.1",
            &port,
        ],
        &[("RUST_LOG", "info")],
    );
    let web = Process::address(&process.serving(), "http");
    let client = service_kit::tls::http_client().expect("an HTTP client");
    let get = |id: &str| {
        client
            .get(format!("http://{web}/no-such-page"))
            .header("x-request-id", id)
            .send()
    };

    let started = std::time::Instant::now();
    for i in 0..REQUESTS {
        let status = get(&format!("flood-{i}")).await.expect("answered").status();
        assert_eq!(status, 404);
    }
    let windows = started.elapsed().as_secs() + 2;
    // One more in a later window: its line is let through.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    get("last").await.expect("answered");
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = process
            .log()
            .into_iter()
            .filter(|event| event["message"] == "HTTP request finished")
            .collect();
        if lines.iter().any(|line| line["request_id"] == "last") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let last = lines.last().expect("lines were written");
    assert_eq!(last["request_id"], "last", "{lines:#?}");
    let per_second = service_kit::log_limit::LogLimiter::LINES_PER_SECOND as u64;
    let written = lines.len() as u64 - 1;
    assert!(
        (1..=per_second * windows).contains(&written),
        "{written} lines for {REQUESTS} requests in {windows} windows"
    );
    let held_back: u64 = lines
        .iter()
        .map(|line| line["held_back"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        written + held_back,
        REQUESTS,
        "each request written or counted"
    );
    assert!(lines.iter().all(|line| line["level"] == "INFO"));
}
