//! One page followed across both services, with the real binaries: an
//! OTLP receiver in the test (opentelemetry-proto's tonic server) gets the
//! spans of one page load, which must form one trace, the caller's: the
//! marketplace's server span, its client span for the call, and
//! recommendations' server span, each the child of the one before, named
//! and attributed by the semantic conventions; and both services' log
//! lines carry the same trace id, and the request id.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{KeyValue, any_value::Value},
    trace::v1::{Span, span::SpanKind},
};
use service_kit::testing::{Process, free_addr};
use tonic::{Request, Response, Status};

use crate::end_to_end::recommendations_binary;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// A received span, with the name of the service that sent it.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<String> {
        text_of(&self.span.attributes, key)
    }
}

/// The value of `key` among `attributes`, as text.
fn text_of(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        Value::StringValue(text) => text.clone(),
        Value::IntValue(number) => number.to_string(),
        Value::BoolValue(flag) => flag.to_string(),
        Value::DoubleValue(number) => number.to_string(),
        other => format!("{other:?}"),
    })
}

/// An OTLP/gRPC trace receiver that keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().expect("not poisoned");
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|resource| text_of(&resource.attributes, "service.name"))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    /// Serves on a free loopback port; returns its address.
    async fn start(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        addr
    }

    /// The spans of trace `trace_id` received so far.
    fn trace(&self, trace_id: &[u8]) -> Vec<Received> {
        self.spans
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|received| received.span.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The messages of the lines `process` logged inside a span of trace
/// [`TRACE_ID`].
fn traced_lines(process: &Process) -> Vec<String> {
    process
        .log()
        .iter()
        .filter(|event| event["span"]["trace_id"] == TRACE_ID)
        .map(|event| event["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_page_is_one_trace_across_both_services_and_their_logs() {
    let receiver = Receiver::default();
    let collector = format!("http://{}", receiver.start().await);
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100ms"),
        ("RUST_LOG", "info,service_kit::rpc=debug,marketplace=debug"),
    ];
    let grpc = free_addr([127, 0, 0, 1]);
    let mut recommendations = Process::start_with_env(
        &recommendations_binary(),
        &[&format!("--listen={grpc}"), "--admin-listen=127.0.0.1:0"],
        &env,
    );
    recommendations.serving();
    let mut marketplace = Process::start_with_env(
        &std::path::PathBuf::from(env!("CARGO_BIN_EXE_marketplace")),
        &[
            "--listen=127.0.0.1:0",
            "--admin-listen=127.0.0.1:0",
            "--recommendations-host=127.0.0.1",
            &format!("--recommendations-port={}", grpc.port()),
        ],
        &env,
    );
    let url = format!(
        "http://{}/",
        Process::address(&marketplace.serving(), "http")
    );

    let response = reqwest::Client::new()
        .get(&url)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .header("x-request-id", "page-42")
        .send()
        .await
        .expect("the homepage answers");
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
    assert_eq!(marketplace.terminate(), Some(0));
    assert_eq!(recommendations.terminate(), Some(0));
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
