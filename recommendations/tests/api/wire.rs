//! Pins the tutorial's contract on the wire: fixed request bytes, sent by a
//! plain HTTP/2 client (no generated code) to `/Recommendations/Recommend`.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use prost::Message as _;
use protobufs::legacy::{BookCategory, RecommendationRequest, RecommendationResponse};

use crate::helpers::spawn_app;

/// `RecommendationRequest{user_id: 1, category: SCIENCE_FICTION, max_results: 3}`
/// as the tutorial's Python client encodes it.
const REQUEST: [u8; 6] = [0x08, 0x01, 0x10, 0x01, 0x18, 0x03];

#[test]
fn the_legacy_request_encodes_to_the_tutorials_bytes() {
    let request = RecommendationRequest {
        user_id: 1,
        category: BookCategory::ScienceFiction as i32,
        max_results: 3,
    };

    assert_eq!(request.encode_to_vec(), REQUEST);
}

#[test]
fn the_legacy_service_is_named_as_in_the_tutorial() {
    assert_eq!(
        protobufs::legacy::recommendations_server::SERVICE_NAME,
        "Recommendations"
    );
}

#[tokio::test]
async fn fixed_bytes_posted_to_the_legacy_path_get_science_fiction_books() {
    let app = spawn_app().await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let mut frame = vec![0u8]; // not compressed
    frame.extend_from_slice(&(REQUEST.len() as u32).to_be_bytes());
    frame.extend_from_slice(&REQUEST);
    let request = http::Request::post(format!("http://{}/Recommendations/Recommend", app.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(frame)))
        .expect("a valid request");

    let response = client.request(request).await.expect("an HTTP/2 response");
    assert_eq!(response.status(), 200);
    let collected = response
        .into_body()
        .collect()
        .await
        .expect("a complete body");
    let trailers = collected.trailers().cloned().expect("gRPC trailers");
    let body = collected.to_bytes();

    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    assert_eq!(body[0], 0, "uncompressed frame");
    let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    assert_eq!(body.len(), 5 + length);
    // Field 1, length-delimited: `repeated BookRecommendation recommendations = 1`.
    assert_eq!(body[5], 0x0a);
    let response = RecommendationResponse::decode(&body[5..]).expect("a valid response");
    let ids: Vec<i32> = response.recommendations.iter().map(|b| b.id).collect();
    assert_eq!(ids.len(), 3);
    // The tutorial's science fiction books are among the candidates, and
    // every recommended book is science fiction.
    let sci_fi = recommendations::Catalog::builtin().expect("valid");
    let sci_fi: Vec<i32> = sci_fi
        .books(recommendations::Category::ScienceFiction)
        .iter()
        .map(|b| b.id)
        .collect();
    assert!(ids.iter().all(|id| sci_fi.contains(id)), "{ids:?}");
}

/// The status of an empty-bodied call to `path`, sent as any gRPC client
/// would, from its trailers-only response.
async fn status_of_call_to(app: &crate::helpers::TestApp, path: &str) -> tonic::Status {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let request = http::Request::post(format!("http://{}{path}", app.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .expect("a valid request");

    let response = client.request(request).await.expect("an HTTP/2 response");
    assert_eq!(response.status(), 200, "{path}");
    tonic::Status::from_header_map(response.headers()).expect("a trailers-only status")
}

#[tokio::test]
async fn a_call_to_a_service_the_server_does_not_have_is_unimplemented_and_named() {
    let app = spawn_app().await;

    for (path, named) in [
        ("/shop.Cart/Add", "\"shop.Cart\""),
        // A prefix of a served service's name is another name.
        ("/Recommendation/Recommend", "\"Recommendation\""),
        ("/Recommend", "\"\""),
    ] {
        let status = status_of_call_to(&app, path).await;

        assert_eq!(status.code(), tonic::Code::Unimplemented, "{path}");
        assert_eq!(
            status.message(),
            format!("unknown service {named}"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_call_to_a_method_a_served_service_does_not_have_is_unimplemented() {
    let app = spawn_app().await;

    for path in [
        "/Recommendations/Buy",
        "/bookstore.recommendations.v1.RecommendationsService/Buy",
        "/grpc.health.v1.Health/Kill",
    ] {
        let status = status_of_call_to(&app, path).await;

        assert_eq!(status.code(), tonic::Code::Unimplemented, "{path}");
    }
}

/// The marketplace cancels its call whenever a browser leaves mid-page, so a
/// burst of leaving browsers becomes a burst of RST_STREAMs on the one shared
/// connection. h2's guard against the Rapid Reset attack closes a connection
/// after 20 streams reset before the server accepted them (by default),
/// which would fail every other call on it. The server allows as many as a
/// connection may have streams open, so 64 pages cancelled at once keep the
/// connection (and a flood is still cut off: see attacks.rs).
#[tokio::test]
async fn a_burst_of_cancelled_calls_leaves_the_connection_working() {
    let app = spawn_app().await;
    let tcp = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("the server accepts a connection");
    let (client, connection) = h2::client::handshake(tcp)
        .await
        .expect("an HTTP/2 handshake");
    tokio::spawn(connection);
    let request = || {
        http::Request::post(format!("http://{}/Recommendations/Recommend", app.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("a valid request")
    };

    // HEADERS then RST_STREAM at once, 64 times: each flush carries many
    // of both, so the server sees streams reset before it accepted them.
    let mut client = client.ready().await.expect("a ready connection");
    for _ in 0..64 {
        let (_response, mut body) = client.send_request(request(), false).expect("a stream");
        body.send_reset(h2::Reason::CANCEL);
        client = client.ready().await.expect("the connection is still open");
    }

    let (response, mut body) = client
        .send_request(request(), false)
        .expect("a stream after the burst");
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(REQUEST.len() as u32).to_be_bytes());
    frame.extend_from_slice(&REQUEST);
    body.send_data(Bytes::from(frame), true)
        .expect("the request body is sent");
    let response = response.await.expect("a response on the same connection");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut message = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("the response body");
        let _ = body.flow_control().release_capacity(chunk.len());
        message.extend_from_slice(&chunk);
    }
    let trailers = body
        .trailers()
        .await
        .expect("trailers")
        .expect("gRPC trailers");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    let books = RecommendationResponse::decode(message.get(5..).unwrap_or_default())
        .expect("one RecommendationResponse");
    assert_eq!(books.recommendations.len(), 3);
}
