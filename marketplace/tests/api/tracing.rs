//! One page followed across both services, with the real binaries: an
//! OTLP receiver in the test (opentelemetry-proto's tonic server) gets the
//! spans of one page load, which must form one trace, the caller's: the
//! marketplace's server span, its client span for the call, and
//! recommendations' server span, each the child of the one before, named
//! and attributed by the semantic conventions; and both services' log
//! lines carry the same trace id, and the request id. A call to a method
//! recommendations does not serve is a span named `_OTHER`, whatever path
//! the client chose.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use service_kit::testing::{Process, free_addr};
use tonic::Request;

use crate::end_to_end::recommendations_binary;

use crate::otlp::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_page_is_one_trace_across_both_services_and_their_logs() {
    let receiver = Receiver::default();
    let collector = format!("http://{}", receiver.start().await);
    let (recommendations, marketplace, url, grpc) =
        start_both(&collector, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);

    let response = traced_page(&url, "page-42").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-request-id"],
        "page-42",
        "the request id is echoed"
    );

    // The batch exporters send every 100 ms.
    let trace_id = unhex(TRACE_ID);
    let mut spans = Vec::new();
    for _ in 0..100 {
        spans = receiver.trace(&trace_id);
        if spans.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let by_kind: HashMap<(String, i32), &Received> = spans
        .iter()
        .map(|received| ((received.service.clone(), received.span.kind), received))
        .collect();
    assert_eq!(spans.len(), 3, "one trace of three spans: {spans:#?}");
    let page = by_kind[&("marketplace".to_owned(), SpanKind::Server as i32)];
    let call = by_kind[&("marketplace".to_owned(), SpanKind::Client as i32)];
    let served = by_kind[&("recommendations".to_owned(), SpanKind::Server as i32)];

    // The page continues the caller's trace; each span is the child of the
    // one before it.
    assert_eq!(hex(&page.span.parent_span_id), PARENT_ID);
    assert_eq!(call.span.parent_span_id, page.span.span_id);
    assert_eq!(served.span.parent_span_id, call.span.span_id);

    // Names and attributes by the conventions.
    let method = "bookstore.recommendations.v1.RecommendationsService/Recommend";
    assert_eq!(page.span.name, "GET /");
    assert_eq!(
        page.attribute("http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(page.attribute("http.route").as_deref(), Some("/"));
    assert_eq!(
        page.attribute("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(page.attribute("request_id").as_deref(), Some("page-42"));
    for rpc in [call, served] {
        assert_eq!(rpc.span.name, method);
        assert_eq!(rpc.attribute("rpc.system.name").as_deref(), Some("grpc"));
        assert_eq!(rpc.attribute("rpc.method").as_deref(), Some(method));
        assert_eq!(
            rpc.attribute("rpc.response.status_code").as_deref(),
            Some("OK")
        );
    }
    assert_eq!(
        call.attribute("server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(call.attribute("server.port"), Some(grpc.port().to_string()));
    assert_eq!(served.attribute("request_id").as_deref(), Some("page-42"));

    // Both services' log lines carry the trace id.
    let marketplace_lines = traced_lines(&marketplace);
    let recommendations_lines = traced_lines(&recommendations);
    assert!(
        marketplace_lines.contains(&"HTTP request finished".to_owned())
            && marketplace_lines.contains(&"gRPC call finished".to_owned()),
        "{marketplace_lines:?}"
    );
    assert!(
        recommendations_lines.contains(&"gRPC call finished".to_owned()),
        "{recommendations_lines:?}"
    );

    // And /metrics counts them: the page's two spans queued and exported
    // by the marketplace, the call's one by recommendations; none dropped.
    // (An export is counted once the collector has answered it.)
    for (process, spans) in [(&marketplace, 2.0), (&recommendations, 1.0)] {
        assert_eq!(metric(process, QUEUED).await, spans);
        let mut exported = metric(process, EXPORTED).await;
        for _ in 0..50 {
            if exported == spans {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            exported = metric(process, EXPORTED).await;
        }
        assert_eq!(exported, spans);
        assert_eq!(metric(process, DROPPED).await, 0.0);
    }
    assert_eq!(terminate(marketplace).await, Some(0));
    assert_eq!(terminate(recommendations).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_queued_at_sigterm_are_exported_before_exit() {
    let receiver = Receiver::default();
    let collector = format!("http://{}", receiver.start().await);
    // Nothing is exported on schedule within the test: only the flush at
    // exit can deliver the spans.
    let (recommendations, marketplace, url, _) =
        start_both(&collector, &[("OTEL_BSP_SCHEDULE_DELAY", "600000")]);
    assert_eq!(traced_page(&url, "flushed").await.status(), 200);

    assert_eq!(terminate(marketplace).await, Some(0));
    assert_eq!(terminate(recommendations).await, Some(0));

    let spans = receiver.trace(&unhex(TRACE_ID));
    assert_eq!(spans.len(), 3, "{spans:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_collector_that_never_answers_slows_no_page_and_no_exit() {
    a_collector_that_never_answers_slows_no_page_and_no_exit("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_collector_that_never_answers_slows_no_page_and_no_exit() {
    a_collector_that_never_answers_slows_no_page_and_no_exit("http/protobuf").await;
}

/// Spans exported over `protocol` to a collector that never answers.
async fn a_collector_that_never_answers_slows_no_page_and_no_exit(protocol: &str) {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let collector = format!("http://{}", silent.local_addr().expect("bound"));
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let (recommendations, marketplace, url, _) = start_both(
        &collector,
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ],
    );

    // Far more spans than the queue holds, while every export hangs.
    let client = service_kit::tls::http_client().expect("an HTTP client");
    for i in 0..300 {
        let response = client
            .get(&url)
            .header("x-request-id", format!("page-{i}"))
            .send()
            .await
            .expect("the homepage answers");
        assert_eq!(response.status(), 200, "page {i}");
        let html = response.text().await.expect("HTML");
        assert_eq!(html.matches("<li>").count(), 3, "page {i} lost its books");
    }

    // The spans beyond the queue were dropped, and counted: each of the
    // 600 (a page's and its call's) was queued or dropped, and no more
    // wait than the queue holds.
    let (queued, dropped) = (
        metric(&marketplace, QUEUED).await,
        metric(&marketplace, DROPPED).await,
    );
    eprintln!("a silent collector: {queued} spans queued, {dropped} dropped");
    assert_eq!(
        queued + dropped,
        600.0,
        "queued {queued}, dropped {dropped}"
    );
    assert!(dropped > 0.0, "none dropped");
    let waiting = metric(&marketplace, "otel_sdk_processor_span_queue_size").await;
    assert!(waiting <= 64.0, "{waiting} spans wait in a queue of 64");
    assert_eq!(
        metric(&marketplace, "otel_sdk_processor_span_queue_capacity").await,
        64.0
    );

    // And the exit waits for the collector only so long (the test fails
    // rather than hang if it did not).
    assert_eq!(terminate(marketplace).await, Some(0));
    assert_eq!(terminate(recommendations).await, Some(0));
}

/// Without export (the default) a page that brings no trace context gets
/// no span, but still a request id: the caller's, or a new one, echoed.
#[tokio::test]
async fn every_page_has_a_request_id_the_callers_or_a_new_one() {
    use crate::helpers::{Upstream, marketplace};
    use tower::ServiceExt as _;

    let upstream = Upstream::start(None).await;
    let (router, _) = marketplace(upstream.addr, Duration::from_secs(5)).await;
    let page = |id: Option<&str>| {
        let mut request = http::Request::get("/");
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        let request = request.body(axum::body::Body::empty()).expect("valid");
        router.clone().oneshot(request)
    };

    let given = page(Some("abc-1")).await.expect("infallible");
    let made = page(None).await.expect("infallible");
    let refused = page(Some("no spaces allowed")).await.expect("infallible");

    assert_eq!(given.headers()["x-request-id"], "abc-1");
    for response in [&made, &refused] {
        let id = response.headers()["x-request-id"]
            .to_str()
            .expect("ASCII")
            .to_owned();
        assert_eq!(id.len(), 16, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_another_replica_is_a_second_client_span_marked_as_one() {
    let receiver = Receiver::default();
    let collector = format!("http://{}", receiver.start().await);
    // One live replica on 127.0.0.1, and one on 127.0.0.2 where nothing
    // listens: a call sent there is refused and retried on the live one.
    let live = free_addr([127, 0, 0, 1]);
    let dead = SocketAddr::from(([127, 0, 0, 2], live.port()));
    let hosts = service_kit::testing::HostsFile::new("recommendations", [live, dead]);
    let hosts_file = format!("--hosts-file={}", hosts.path().display());
    let (recommendations, marketplace, url) = start_both_on(
        live,
        &["--recommendations-host=recommendations", &hosts_file],
        &collector,
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );

    // Round robin sends one of the first pages to the dead replica.
    for _ in 0..4 {
        let response = service_kit::testing::http_get(&url)
            .await
            .expect("the homepage answers");
        assert_eq!(response.status(), 200);
    }
    let mut retried = None;
    for _ in 0..100 {
        let spans = receiver.spans.lock().expect("not poisoned").clone();
        retried = spans
            .iter()
            .find(|received| received.attribute("http.request.resend_count").is_some())
            .cloned()
            .map(|retry| (retry, spans));
        if retried.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (retry, spans) = retried.expect("a retried call's span");

    // The retry and the refused first attempt: two client spans of one
    // page, siblings, the first an error.
    let attempts: Vec<&Received> = spans
        .iter()
        .filter(|received| {
            received.span.kind == SpanKind::Client as i32
                && received.span.trace_id == retry.span.trace_id
        })
        .collect();
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert!(
        attempts
            .iter()
            .all(|attempt| attempt.span.parent_span_id == retry.span.parent_span_id),
        "both are children of the page's span"
    );
    assert_eq!(
        retry.attribute("http.request.resend_count").as_deref(),
        Some("1")
    );
    assert_eq!(
        retry.attribute("server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        retry.attribute("rpc.response.status_code").as_deref(),
        Some("OK")
    );
    let first = attempts
        .iter()
        .find(|attempt| attempt.span.span_id != retry.span.span_id)
        .expect("the first attempt");
    assert_eq!(
        first.attribute("server.address").as_deref(),
        Some("127.0.0.2")
    );
    assert_eq!(
        first.attribute("rpc.response.status_code").as_deref(),
        Some("UNAVAILABLE")
    );
    assert_eq!(
        first.attribute("error.type").as_deref(),
        Some("UNAVAILABLE")
    );
    assert_eq!(terminate(marketplace).await, Some(0));
    assert_eq!(terminate(recommendations).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_call_to_a_method_recommendations_does_not_serve_is_named_other() {
    let receiver = Receiver::default();
    let collector = format!("http://{}", receiver.start().await);
    let grpc = free_addr([127, 0, 0, 1]);
    let mut recommendations = Process::start_with_env(
        &recommendations_binary(),
        &[&format!("--listen={grpc}"), "--admin-listen=127.0.0.1:0"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    recommendations.serving();

    // A client choosing the path, as a scanner would, in a trace.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("recommendations accepts");
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.expect("ready");
    let mut request = Request::new(());
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_ID}-01")
            .parse()
            .expect("valid metadata"),
    );
    let status = client
        .unary::<(), (), _>(
            request,
            http::uri::PathAndQuery::from_static("/probe.Random7f3a/Scan"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect_err("no such method");
    assert_eq!(status.code(), tonic::Code::Unimplemented);

    let trace_id = unhex(TRACE_ID);
    let mut spans = Vec::new();
    for _ in 0..100 {
        spans = receiver.trace(&trace_id);
        if !spans.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(spans.len(), 1, "the server's span: {spans:#?}");
    let served = &spans[0];
    assert_eq!(served.span.name, "_OTHER");
    assert_eq!(served.attribute("rpc.method").as_deref(), Some("_OTHER"));
    assert_eq!(
        served.attribute("rpc.response.status_code").as_deref(),
        Some("UNIMPLEMENTED")
    );
    assert_eq!(terminate(recommendations).await, Some(0));
}
