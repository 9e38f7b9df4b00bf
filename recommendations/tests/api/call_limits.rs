//! The server's time limits around a dummy service, over a real socket:
//! client deadlines, the maximum call duration, and connection age.

use std::time::Duration;

use protobufs::dummy::ExecuteRequest;
use service_kit::limits::GrpcLimits;
use tonic::{Code, Request};

use crate::dummy::*;

#[tokio::test]
async fn a_client_deadline_stops_the_handler() {
    let mut server = spawn_dummy(roomy()).await;
    let mut request = Request::new(ExecuteRequest {
        input: "block".to_owned(),
    });
    request.set_timeout(Duration::from_millis(50));

    let status = server
        .client
        .clone()
        .execute(request)
        .await
        .expect_err("past its deadline");
    server
        .dropped
        .recv()
        .await
        .expect("the handler's future is dropped");

    // tonic's client gives up at the same instant: which answer it sees
    // first, and whether the server saw the call end or its client leave,
    // is a race.
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    assert_eq!(server.entered.try_recv(), Ok(()));
    let metrics = server.metrics();
    assert!(
        metrics.contains(&counted("DEADLINE_EXCEEDED", 1))
            || metrics.contains(&counted("CANCELLED", 1)),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_call_without_a_deadline_ends_at_the_servers_maximum_duration() {
    let mut server = spawn_dummy(GrpcLimits {
        max_call_duration: Duration::from_millis(200),
        ..roomy()
    })
    .await;

    let status = server.call("block").await.expect_err("past the maximum");
    server
        .dropped
        .recv()
        .await
        .expect("the handler's future is dropped");

    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("maximum call duration"),
        "{}",
        status.message()
    );
    assert!(server.metrics().contains(&counted("DEADLINE_EXCEEDED", 1)));
}

#[tokio::test]
async fn a_call_whose_message_came_in_time_runs_until_the_maximum_duration() {
    let mut server = spawn_dummy(GrpcLimits {
        request_timeout: Duration::from_millis(100),
        max_call_duration: Duration::from_millis(400),
        ..roomy()
    })
    .await;

    let status = server.call("block").await.expect_err("past the maximum");
    server
        .dropped
        .recv()
        .await
        .expect("the handler's future is dropped");

    // The request timeout passed first, with the message long received: the
    // call went on, to end at its maximum duration.
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("maximum call duration"),
        "{}",
        status.message()
    );
}

/// The server ends a call at its client's deadline (`grpc-timeout`) when
/// that is the shortest limit, whether or not the client gives up itself
/// (this one, raw HTTP/2, does not).
#[tokio::test]
async fn a_clients_shorter_deadline_ends_the_call_on_the_server() {
    let mut server = spawn_dummy(GrpcLimits {
        request_timeout: Duration::from_secs(600),
        max_call_duration: Duration::from_secs(600),
        ..roomy()
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connects");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::post(format!(
        "http://{}/testing.dummy.v1.DummyService/Execute",
        server.addr
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("grpc-timeout", "200m")
    .body(())
    .expect("a valid request");
    let (response, mut body) = client.send_request(request, false).expect("a stream");
    // ExecuteRequest { input: "block" }, in one gRPC message.
    let message = b"\0\0\0\0\x07\x0a\x05block";
    body.send_data(bytes::Bytes::from_static(message), true)
        .expect("sent");

    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("the server ends the call, not this test's timeout")
        .expect("a response");
    server
        .dropped
        .recv()
        .await
        .expect("the handler's future is dropped");

    // DEADLINE_EXCEEDED is 4.
    let header = |name| response.headers().get(name).map(|v| v.as_bytes());
    assert_eq!(header("grpc-status"), Some(&b"4"[..]), "{response:?}");
    let message = String::from_utf8_lossy(header("grpc-message").unwrap_or_default());
    assert!(message.contains("client's%20deadline"), "{message}");
    assert!(server.metrics().contains(&counted("DEADLINE_EXCEEDED", 1)));
}

fn short_lived() -> GrpcLimits {
    GrpcLimits {
        max_connection_age: Duration::from_millis(300),
        max_connection_age_grace: Duration::from_millis(300),
        ..roomy()
    }
}

#[tokio::test]
async fn past_its_maximum_age_a_connection_is_replaced_and_calls_go_on() {
    let server = spawn_dummy(short_lived()).await;
    let before = server.call("peer").await.expect("OK");

    // Past the maximum age the server has sent GOAWAY on that connection.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after = server.call("peer").await.expect("the client reconnects");

    assert_ne!(
        before, after,
        "the second call came over the same connection"
    );
}

#[tokio::test]
async fn a_call_still_running_after_age_and_grace_is_cut_off() {
    let mut server = spawn_dummy(short_lived()).await;

    let status = server
        .call("block")
        .await
        .expect_err("the connection is closed under it");
    server
        .dropped
        .recv()
        .await
        .expect("the handler's future is dropped");

    assert_ne!(status.code(), Code::Ok);
    assert_eq!(server.entered.try_recv(), Ok(()));
}
