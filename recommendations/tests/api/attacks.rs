//! Hostile clients against the real server over real sockets: each test
//! reproduces an attack and asserts the bound that holds against it, and
//! that a well-behaved client on another connection is still served.

use std::time::Duration;

use bytes::Bytes;
use protobufs::v1::{self, recommendations_service_client::RecommendationsServiceClient};
use recommendations::Settings;
use service_kit::limits::GrpcLimits;
use tokio::{io::AsyncReadExt as _, net::TcpStream};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use service_kit::testing::raw_h2::{ENHANCE_YOUR_CALM, REFUSED_STREAM, RawH2};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const RECOMMEND: &str = "/bookstore.recommendations.v1.RecommendationsService/Recommend";
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// `RecommendRequest{user_id: 1, category: MYSTERY (1), max_results: 3}`.
const MESSAGE: [u8; 6] = [0x08, 0x01, 0x10, 0x01, 0x18, 0x03];

/// A client on a connection of its own.
fn well_behaved(app: &TestApp) -> RecommendationsServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{}", app.addr))
        .expect("a valid URI")
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    RecommendationsServiceClient::new(channel)
}

/// Makes `calls` Recommend calls, one after another, and returns how many
/// were OK.
async fn ok_calls(client: &RecommendationsServiceClient<Channel>, calls: usize) -> usize {
    let mut ok = 0;
    for _ in 0..calls {
        let request = v1::RecommendRequest {
            user_id: 1,
            category: v1::Category::Mystery as i32,
            max_results: 3,
        };
        if client.clone().recommend(request).await.is_ok() {
            ok += 1;
        }
    }
    ok
}

async fn health_is_serving(app: &TestApp) -> bool {
    let channel = Endpoint::from_shared(format!("http://{}", app.addr))
        .expect("a valid URI")
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(HealthCheckRequest::default())
        .await
        .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
}

/// Attack 1: one connection opens ~1,040 calls, sends their headers and
/// never their messages, to take every call slot.
#[tokio::test]
async fn one_connection_holding_calls_open_does_not_deny_service_to_others() {
    let app = spawn_app_with(Settings {
        limits: GrpcLimits {
            request_timeout: Duration::from_millis(500),
            ..Settings::for_tests().limits
        },
        ..Settings::for_tests()
    })
    .await;
    let allowed = Settings::for_tests().limits.max_concurrent_streams as usize;
    let mut attacker = RawH2::connect(app.addr, &[]).await.expect("connects");
    for _ in 0..1040 {
        attacker.open_call(RECOMMEND);
    }
    attacker.flush().await.expect("sent");
    let refused = attacker
        .read_until(Duration::from_secs(5), |seen| {
            seen.resets_with(REFUSED_STREAM) >= 1040 - allowed
        })
        .await;

    let ok = ok_calls(&well_behaved(&app), 200).await;
    let serving = health_is_serving(&app).await;
    // Past the request timeout the held calls end, and their slots with them.
    let answered = attacker
        .read_until(Duration::from_secs(10), |seen| seen.headers >= allowed)
        .await;

    assert_eq!(
        refused.resets_with(REFUSED_STREAM),
        1040 - allowed,
        "{refused:?}"
    );
    assert_eq!(ok, 200, "the well-behaved client was denied");
    assert!(serving, "health check failed during the attack");
    assert_eq!(answered.headers, allowed, "{answered:?}");
}

/// Attack 2: one connection opens 20,000 calls with a zero flow-control
/// window, so that no response can ever be sent. It gets its share of
/// streams; those past it are refused, and once their refusals reach
/// `GrpcLimits::MAX_LOCAL_ERROR_RESETS` (each refused stream's DATA frame
/// counts too) the connection is closed with ENHANCE_YOUR_CALM.
#[tokio::test]
async fn a_connection_that_reads_nothing_gets_no_more_than_its_share_of_streams() {
    let app = spawn_app().await;
    let mut attacker = RawH2::connect_with_zero_window(app.addr)
        .await
        .expect("connects");
    for _ in 0..20_000 {
        let stream = attacker.open_call(RECOMMEND);
        attacker.send_message(stream, MESSAGE.len() as u32, &MESSAGE, true);
    }
    // The server closes the connection before it has read all of this.
    let sent = attacker.flush().await;
    let seen = attacker
        .read_until(Duration::from_secs(10), |seen| seen.closed)
        .await;

    let ok = ok_calls(&well_behaved(&app), 200).await;
    let serving = health_is_serving(&app).await;

    assert!(sent.is_err(), "the server read all 20,000 streams");
    assert!(seen.closed);
    assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{seen:?}");
    let refused = seen.resets_with(REFUSED_STREAM);
    assert!(
        (1..=GrpcLimits::MAX_LOCAL_ERROR_RESETS).contains(&refused),
        "{refused} refused"
    );
    assert_eq!(ok, 200);
    assert!(serving);
}

/// Sends the 5-byte prefix of a message declared `declared` bytes long, and
/// a little of it, to `path` with a real HTTP/2 client; returns the
/// grpc-status the server answers with, without sending the rest.
async fn status_of_half_sent_message(app: &TestApp, path: &str, declared: u32) -> Option<String> {
    let tcp = TcpStream::connect(app.addr).await.expect("connects");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::post(format!("http://{}{path}", app.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("a valid request");
    let (response, mut body) = client.send_request(request, false).expect("a stream");
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&declared.to_be_bytes());
    prefix.extend_from_slice(&[0u8; 1024]);
    body.send_data(Bytes::from(prefix), false).expect("sent");
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("an answer without the rest of the message")
        .expect("a response");
    let headers = response.headers().clone();
    let status = headers
        .get("grpc-status")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    if status.is_some() {
        return status;
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let _ = chunk;
    }
    body.trailers().await.ok().flatten().and_then(|t| {
        t.get("grpc-status")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    })
}

/// Attack 3: health and reflection messages declared 4 MB long are refused
/// from their prefix, like every other service's, with no buffer reserved.
#[tokio::test]
async fn health_and_reflection_refuse_messages_over_the_limit_from_their_prefix() {
    // A request timeout far longer than the test's patience: only the
    // message limit can end these calls in time.
    let app = spawn_app_with(Settings {
        limits: GrpcLimits {
            request_timeout: Duration::from_secs(600),
            ..Settings::for_tests().limits
        },
        ..Settings::for_tests()
    })
    .await;
    let four_mb = 4 * 1024 * 1024;

    let health = status_of_half_sent_message(&app, HEALTH_CHECK, four_mb).await;
    let reflection = status_of_half_sent_message(
        &app,
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        four_mb,
    )
    .await;

    // RESOURCE_EXHAUSTED is 8. Reflection ends its stream at the first bad
    // message (with OK, as tonic-reflection does); either way, the call
    // ended without the rest of the message.
    assert_eq!(health.as_deref(), Some("8"));
    assert!(reflection.is_some());
}

/// A call whose message never comes, or comes only in part, ends at the
/// request timeout with DEADLINE_EXCEEDED, and its slot is freed.
#[tokio::test]
async fn a_call_whose_message_never_comes_ends_at_the_request_timeout() {
    let app = spawn_app_with(Settings {
        limits: GrpcLimits {
            request_timeout: Duration::from_millis(200),
            ..Settings::for_tests().limits
        },
        ..Settings::for_tests()
    })
    .await;
    let tcp = TcpStream::connect(app.addr).await.expect("connects");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");

    // Nothing after the headers; then three bytes of the five-byte prefix.
    for sent in [&b""[..], &b"\0\0\0"[..]] {
        let request = http::Request::post(format!("http://{}{RECOMMEND}", app.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("a valid request");
        let (response, mut body) = client.send_request(request, false).expect("a stream");
        if !sent.is_empty() {
            body.send_data(bytes::Bytes::from_static(sent), false)
                .expect("sent");
        }
        let response = tokio::time::timeout(Duration::from_secs(10), response)
            .await
            .expect("the server answers on its own")
            .expect("a response");

        // DEADLINE_EXCEEDED is 4.
        let header = |name| response.headers().get(name).map(|v| v.as_bytes());
        assert_eq!(header("grpc-status"), Some(&b"4"[..]), "{response:?}");
        let message = String::from_utf8_lossy(header("grpc-message").unwrap_or_default());
        assert!(message.contains("did%20not%20arrive"), "{message}");
        client = client.ready().await.expect("the connection goes on");
    }
}

/// Rapid Reset (CVE-2023-44487): HEADERS + RST_STREAM, a thousand times in
/// one burst. The connection is closed with ENHANCE_YOUR_CALM; others are
/// served.
#[tokio::test]
async fn a_reset_flood_is_cut_off_and_others_are_served() {
    let app = spawn_app().await;
    let mut attacker = RawH2::connect(app.addr, &[]).await.expect("connects");
    for _ in 0..1000 {
        let stream = attacker.open_call(RECOMMEND);
        attacker.reset(stream);
    }
    attacker.flush().await.expect("sent");

    let seen = attacker
        .read_until(Duration::from_secs(10), |seen| seen.goaway.is_some())
        .await;
    let ok = ok_calls(&well_behaved(&app), 100).await;

    assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{seen:?}");
    assert_eq!(ok, 100);
}

/// Attack 7: connections over the cap are closed at once, and the slots
/// of those that leave serve others.
#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let app = spawn_app_with(Settings {
        limits: GrpcLimits {
            max_connections: 8,
            // Long enough that only the cap can close a connection here.
            handshake_timeout: Duration::from_secs(600),
            ..Settings::for_tests().limits
        },
        ..Settings::for_tests()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect(app.addr).await.expect("connects");
        // A byte, so that the listener hands each to its handshake.
        tokio::io::AsyncWriteExt::write_all(&mut stream, b"P")
            .await
            .expect("sent");
        idle.push(stream);
    }
    let mut over = TcpStream::connect(app.addr)
        .await
        .expect("the kernel accepts");

    let mut byte = [0u8; 1];
    let refused = tokio::time::timeout(Duration::from_secs(10), over.read(&mut byte)).await;
    drop(idle);
    let ok = ok_calls(&well_behaved(&app), 10).await;

    assert!(matches!(refused, Ok(Ok(0) | Err(_))), "{refused:?}");
    assert_eq!(ok, 10);
}

/// Connections that never send a byte are closed at the handshake timeout.
#[tokio::test]
async fn silent_connections_are_closed_at_the_handshake_timeout() {
    let app = spawn_app_with(Settings {
        limits: GrpcLimits {
            handshake_timeout: Duration::from_millis(200),
            ..Settings::for_tests().limits
        },
        ..Settings::for_tests()
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(app.addr).await.expect("connects"));
    }

    let mut closed = 0;
    let mut byte = [0u8; 1];
    for stream in &mut silent {
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    let ok = ok_calls(&well_behaved(&app), 10).await;

    assert_eq!(closed, 50, "silent connections are closed");
    assert_eq!(ok, 10);
}

/// A call whose metadata is over the 16 KiB header list limit is refused
/// (HTTP 431, then the stream is reset) without harm to its connection.
#[tokio::test]
async fn metadata_over_the_header_list_limit_is_refused() {
    let app = spawn_app().await;
    let value = "v".repeat(100);
    let names: Vec<String> = (0..130).map(|i| format!("x-pad-{i:04}")).collect();
    // 130 headers: ~15 KiB encoded, within one HEADERS frame (16 KiB), and
    // ~18.7 KiB decoded (name + value + 32 each), over the 16 KiB limit.
    let metadata: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), value.as_str())).collect();
    let mut client = RawH2::connect(app.addr, &[]).await.expect("connects");

    let oversized = client.open_call_with_metadata(RECOMMEND, &metadata);
    client.flush().await.expect("sent");
    let refused = client
        .read_until(Duration::from_secs(10), |seen| !seen.resets.is_empty())
        .await;
    let next = client.open_call(RECOMMEND);
    client.send_message(next, MESSAGE.len() as u32, &MESSAGE, true);
    client.flush().await.expect("sent");
    // Response headers and trailers of the next call.
    let served = client
        .read_until(Duration::from_secs(10), |seen| seen.headers >= 2)
        .await;

    let reset_streams: Vec<u32> = refused.resets.iter().map(|(stream, _)| *stream).collect();
    assert_eq!(reset_streams, [oversized], "{refused:?}");
    assert_eq!(refused.headers, 1, "a 431 response: {refused:?}");
    assert_eq!(served.headers, 2, "{served:?}");
    assert!(
        served.resets.is_empty() && served.goaway.is_none(),
        "{served:?}"
    );
}

/// A peer that stops answering (a host that vanished behind a NAT, a
/// process that hangs) is found out by HTTP/2 keep-alive: the server PINGs
/// it, gets no acknowledgement, and closes the connection.
#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_closed_by_keep_alive() {
    let app = spawn_app_with(Settings {
        limits: GrpcLimits {
            keepalive_interval: Duration::from_millis(200),
            keepalive_timeout: Duration::from_millis(200),
            ..Settings::for_tests().limits
        },
        ..Settings::for_tests()
    })
    .await;
    let mut peer = TcpStream::connect(app.addr).await.expect("connects");
    // The client preface and an empty SETTINGS frame, then silence: no
    // SETTINGS acknowledgement, no PING acknowledgement, ever.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    tokio::io::AsyncWriteExt::write_all(&mut peer, &hello)
        .await
        .expect("sent");

    let received = tokio::time::timeout(Duration::from_secs(10), async {
        let mut received = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match peer.read(&mut chunk).await {
                Ok(0) | Err(_) => return received,
                Ok(read) => received.extend_from_slice(&chunk[..read]),
            }
        }
    })
    .await
    .expect("closed by the server, not by this test's timeout");

    // Frame types the server sent before closing: 6 is PING.
    let mut types = Vec::new();
    let mut rest = &received[..];
    while rest.len() >= 9 {
        let length = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        types.push(rest[3]);
        rest = rest.get(9 + length..).unwrap_or_default();
    }
    assert!(types.contains(&6), "no PING before the close: {types:?}");
    assert_eq!(ok_calls(&well_behaved(&app), 10).await, 10);
}

/// While every call slot is held, calls to random paths are refused before
/// they reach a service (RESOURCE_EXHAUSTED): they count under one `_OTHER`
/// label, not a label (and a series) per path the attacker chose.
#[tokio::test]
async fn refused_calls_to_random_paths_do_not_grow_the_metrics() {
    const HELD: u32 = 4;
    const PROBES: usize = 50;
    let app = spawn_app_with(Settings {
        limits: GrpcLimits {
            concurrency_limit: HELD,
            request_timeout: Duration::from_secs(30),
            ..Settings::for_tests().limits
        },
        ..Settings::for_tests()
    })
    .await;
    let mut holder = RawH2::connect(app.addr, &[]).await.expect("connects");
    for _ in 0..HELD {
        holder.open_call(RECOMMEND);
    }
    holder.flush().await.expect("sent");
    let held = format!("rpc_server_active_calls {HELD}");
    let mut waited = 0;
    while !app.admin_get("/metrics").await.1.contains(&held) {
        waited += 1;
        assert!(waited < 100, "the held calls were never all in flight");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut prober = RawH2::connect(app.addr, &[]).await.expect("connects");
    for probe in 0..PROBES {
        prober.open_call(&format!("/probe.Random{probe}/Method{probe}"));
    }
    prober.flush().await.expect("sent");
    let answered = prober
        .read_until(Duration::from_secs(10), |seen| seen.headers >= PROBES)
        .await;

    let (_, metrics) = app.admin_get("/metrics").await;
    assert_eq!(answered.headers, PROBES, "{answered:?}");
    assert!(
        metrics.contains(&format!(
            r#"rpc_method="_OTHER",rpc_response_status_code="RESOURCE_EXHAUSTED"}} {PROBES}"#
        )),
        "{metrics}"
    );
    assert!(!metrics.contains("probe.Random"), "{metrics}");
}
