//! The server's layer stack around a dummy service, over a real socket (the
//! tutorial's `dummy_client`): logging, metrics, panics, limits.

use std::time::Duration;

use protobufs::dummy::ExecuteRequest;
use service_kit::limits::GrpcLimits;
use tonic::Code;

use crate::dummy::*;

#[tokio::test]
async fn every_call_is_logged_once_with_method_code_latency_and_peer() {
    let logs = Captured::default();
    let _guard = logs.install();
    let server = spawn_dummy(roomy()).await;

    server.call("hello").await.expect("OK");
    server.call("error").await.expect_err("NOT_FOUND");

    let events = logs.rpc_events();
    assert_eq!(events.len(), 2, "{events:#?}");
    let (ok, not_found) = (&events[0], &events[1]);
    assert_eq!(ok["level"], "DEBUG");
    assert_eq!(ok["method"], METHOD);
    assert_eq!(ok["code"], "OK");
    assert_eq!(ok["rpc.side"], "server");
    assert!(
        ok["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{ok}"
    );
    assert!(
        ok["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{ok}"
    );
    assert_eq!(not_found["code"], "NOT_FOUND");
    assert_eq!(not_found["level"], "INFO");
}

#[tokio::test]
async fn a_flood_of_client_errors_writes_a_few_lines_a_second_and_the_rest_at_debug() {
    const CALLS: usize = 500;
    let logs = Captured::default();
    let _guard = logs.install();
    let server = spawn_dummy(roomy()).await;

    let started = std::time::Instant::now();
    for _ in 0..CALLS {
        server.call("error").await.expect_err("NOT_FOUND");
    }
    // The one-second windows the calls fell in.
    let windows = started.elapsed().as_secs() + 2;
    // One more in a later window: its line is let through and counts the
    // lines moved since the last one.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    server.call("error").await.expect_err("NOT_FOUND");

    let events = logs.rpc_events();
    assert_eq!(
        events.len(),
        CALLS + 1,
        "every call is logged, at INFO or DEBUG"
    );
    let last = events.last().expect("the last call's line");
    assert_eq!(
        last["level"], "INFO",
        "a later window lets a line through: {last}"
    );
    let info = events[..CALLS]
        .iter()
        .filter(|e| e["level"] == "INFO")
        .count();
    let per_second = service_kit::log_limit::LogLimiter::LINES_PER_SECOND as usize;
    assert!(
        (1..=per_second * windows as usize).contains(&info),
        "{info} lines at INFO in {windows} windows"
    );
    assert_eq!(events[0]["level"], "INFO", "the first is let through");
    // Each line let through counts exactly the lines moved to DEBUG since
    // the one before it.
    let mut moved = 0;
    for event in &events {
        assert_eq!(event["code"], "NOT_FOUND");
        match event["level"].as_str() {
            Some("DEBUG") => moved += 1,
            Some("INFO") => {
                let held_back = event["held_back"].as_u64().unwrap_or(0);
                assert_eq!(held_back, moved, "{event}");
                moved = 0;
            }
            other => panic!("a line at {other:?}: {event}"),
        }
    }
    assert!(
        CALLS - info >= CALLS / 2,
        "most of the flood was moved to DEBUG: {info} at INFO"
    );
    assert!(
        server
            .metrics()
            .contains(&counted("NOT_FOUND", CALLS as u64 + 1))
    );
}

#[tokio::test]
async fn metrics_count_calls_by_method_and_code() {
    let server = spawn_dummy(roomy()).await;

    server.call("one").await.expect("OK");
    server.call("two").await.expect("OK");
    server.call("error").await.expect_err("NOT_FOUND");

    let metrics = server.metrics();
    assert!(metrics.contains(&counted("OK", 2)), "{metrics}");
    assert!(metrics.contains(&counted("NOT_FOUND", 1)), "{metrics}");
    assert!(metrics.contains("rpc_server_active_calls 0"), "{metrics}");
}

#[tokio::test]
async fn a_panicking_handler_answers_internal_and_the_next_call_succeeds() {
    let logs = Captured::default();
    let _guard = logs.install();
    let server = spawn_dummy(roomy()).await;

    let status = server.call("panic").await.expect_err("INTERNAL");
    let next = server.call("still alive").await;

    assert_eq!(status.code(), Code::Internal);
    assert_eq!(
        status.message(),
        "internal error",
        "the panic text must not leak"
    );
    assert_eq!(next.expect("the server keeps serving"), "still alive");
    let events = logs.events();
    assert!(
        events
            .iter()
            .any(|e| e["level"] == "ERROR" && e["panic"] == "dummy handler panicked on purpose"),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["code"] == "INTERNAL" && e["method"] == METHOD),
        "{events:#?}"
    );
    assert!(server.metrics().contains(&counted("INTERNAL", 1)));
}

#[tokio::test]
async fn calls_over_the_concurrency_limit_get_resource_exhausted_at_once() {
    let mut server = spawn_dummy(GrpcLimits {
        concurrency_limit: 1,
        ..roomy()
    })
    .await;
    let blocked = {
        let client = server.client.clone();
        tokio::spawn(async move {
            let mut client = client;
            client
                .execute(ExecuteRequest {
                    input: "block".to_owned(),
                })
                .await
        })
    };
    server
        .entered
        .recv()
        .await
        .expect("the first call reaches its handler");

    let refused = server.call("second").await.expect_err("over the limit");
    server.release.notify_one();
    let first = blocked.await.expect("no panic");

    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("too many calls in flight"),
        "{}",
        refused.message()
    );
    assert_eq!(
        first.expect("the first call completes").into_inner().output,
        "block"
    );
    assert!(server.metrics().contains(&counted("RESOURCE_EXHAUSTED", 1)));
}

#[tokio::test]
async fn oversized_requests_get_resource_exhausted() {
    let server = spawn_dummy(roomy()).await;

    let status = server
        .call(&"x".repeat(MAX_MESSAGE_BYTES * 4))
        .await
        .expect_err("too large");

    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
}
