//! Hostile clients against the real server over real sockets: each test
//! reproduces an attack and asserts the bound that holds against it, and
//! that a well-behaved client on another connection is still served.

use std::time::Duration;

use bytes::Bytes;
use protobufs::v1::{self, recommendations_service_client::RecommendationsServiceClient};
use recommendations::Settings;
use service_kit::limits::GrpcLimits;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use service_kit::testing::raw_h2::{ENHANCE_YOUR_CALM, REFUSED_STREAM, RawH2};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

pub(crate) const RECOMMEND: &str = "/bookstore.recommendations.v1.RecommendationsService/Recommend";
pub(crate) const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// `RecommendRequest{user_id: 1, category: MYSTERY (1), max_results: 3}`.
pub(crate) const MESSAGE: [u8; 6] = [0x08, 0x01, 0x10, 0x01, 0x18, 0x03];

/// A client on a connection of its own.
pub(crate) fn well_behaved(app: &TestApp) -> RecommendationsServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{}", app.addr))
        .expect("a valid URI")
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    RecommendationsServiceClient::new(channel)
}

/// Makes `calls` Recommend calls, one after another, and returns how many
/// were OK.
pub(crate) async fn ok_calls(
    client: &RecommendationsServiceClient<Channel>,
    calls: usize,
) -> usize {
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

pub(crate) async fn health_is_serving(app: &TestApp) -> bool {
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
pub(crate) async fn status_of_half_sent_message(
    app: &TestApp,
    path: &str,
    declared: u32,
) -> Option<String> {
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
