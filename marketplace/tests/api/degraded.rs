//! When recommendations is down or slow, pages still render (200) with a
//! notice, and the site recovers by itself when it comes back.

use std::{net::SocketAddr, time::Duration};

use http::StatusCode;

use crate::helpers::{Upstream, admin_get, book_titles, get, marketplace, silent_upstream};

const NOTICE: &str =
    r#"<p class="notice" role="status">Recommendations are unavailable right now."#;

#[tokio::test]
async fn with_recommendations_down_the_homepage_renders_a_notice() {
    let nobody = service_kit::testing::free_addr([127, 0, 0, 1]);
    let (router, admin) = marketplace(nobody, Duration::from_secs(1)).await;

    let (response, html) = get(&router, "/").await;
    let (browse, browse_html) = get(&router, "/category/mystery/books").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(html.contains(NOTICE), "{html}");
    assert!(html.contains("<title>Online Books For You</title>"));
    assert_eq!(html.matches("<li>").count(), 0, "{html}");
    assert_eq!(browse.status(), StatusCode::OK);
    assert!(
        browse_html.contains("The catalog is unavailable right now."),
        "{browse_html}"
    );
    let metrics = admin_get(admin, "/metrics").await;
    assert!(
        metrics.contains(r#"marketplace_degraded_pages_total{page="home"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"code="UNAVAILABLE"} 1"#), "{metrics}");
    // A page that was never degraded has its series, at 0.
    assert!(
        metrics.contains(r#"marketplace_degraded_pages_total{page="category"} 0"#),
        "{metrics}"
    );
}

/// Asserts that the homepage, calling recommendations at `upstream` with a
/// 300 ms deadline, renders with the notice, and that the call is counted as
/// DEADLINE_EXCEEDED.
async fn assert_the_homepage_hits_the_deadline(upstream: SocketAddr) {
    let (router, admin) = marketplace(upstream, Duration::from_millis(300)).await;

    let page = tokio::time::timeout(Duration::from_secs(10), get(&router, "/")).await;

    let (response, html) = page.expect("the page, not this test's timeout");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(html.contains(NOTICE), "{html}");
    let metrics = admin_get(admin, "/metrics").await;
    assert!(
        metrics.contains(r#"code="DEADLINE_EXCEEDED"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_recommendations_server_that_never_answers_hits_the_deadline() {
    assert_the_homepage_hits_the_deadline(silent_upstream().await).await;
}

/// A replica that answers each call's headers and then nothing: no
/// message, no trailers. The connection stays open (it keeps acknowledging
/// SETTINGS), so only the call's deadline can end the call.
async fn headers_only_upstream() -> SocketAddr {
    use tokio::io::AsyncWriteExt as _;

    use crate::helpers::h2_frames::{self, HEADERS};

    /// END_HEADERS, and not END_STREAM: more is to come.
    const END_HEADERS: u8 = 0x4;

    async fn answer_headers_only(mut socket: tokio::net::TcpStream) -> std::io::Result<()> {
        h2_frames::accept(&mut socket).await?;
        loop {
            let request = h2_frames::next(&mut socket).await?;
            if request.kind != HEADERS {
                continue;
            }
            // :status 200 (static table 8); content-type (name at 31, a
            // literal not indexed) application/grpc.
            let mut block = vec![0x88, 0x0f, 0x10, 16];
            block.extend_from_slice(b"application/grpc");
            let length = u8::try_from(block.len()).expect("a small block");
            let mut frame = vec![0, 0, length, HEADERS, END_HEADERS];
            frame.extend_from_slice(&request.stream.to_be_bytes());
            frame.extend_from_slice(&block);
            socket.write_all(&frame).await?;
        }
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(answer_headers_only(socket));
        }
    });
    addr
}

#[tokio::test]
async fn a_replica_that_sends_its_answers_headers_and_no_more_hits_the_deadline() {
    assert_the_homepage_hits_the_deadline(headers_only_upstream().await).await;
}

/// Refused, the only replica is out of rotation (ejected for 2 s): pages
/// render degraded at once meanwhile, and the health checks (every
/// second) put it back once it is up.
#[tokio::test]
async fn the_site_recovers_within_seconds_when_recommendations_comes_back() {
    let addr = service_kit::testing::free_addr([127, 0, 0, 1]);
    let (router, _) = marketplace(addr, Duration::from_secs(1)).await;
    let (_, before) = get(&router, "/").await;
    assert!(before.contains(NOTICE), "{before}");

    let _upstream = Upstream::start_on(addr, None).await;
    let back = tokio::time::Instant::now();
    let mut after = String::new();
    while back.elapsed() < Duration::from_secs(5) {
        let (response, page) = get(&router, "/").await;
        assert_eq!(response.status(), StatusCode::OK);
        after = page;
        if !after.contains(NOTICE) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert!(!after.contains(NOTICE), "still degraded 5 s later: {after}");
    assert_eq!(book_titles(&after).len(), 3, "{after}");
}
