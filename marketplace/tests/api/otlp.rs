//! What the tracing tests share: an OTLP receiver (opentelemetry-proto's
//! tonic server) that keeps the spans it gets, both binaries started to
//! export to it, and readers of their logs and metrics.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{KeyValue, any_value::Value},
    trace::v1::Span,
};
use service_kit::testing::{Process, free_addr};
use tonic::{Request, Response, Status};

use crate::end_to_end::recommendations_binary;

pub(crate) const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub(crate) const PARENT_ID: &str = "00f067aa0ba902b7";

/// A received span, with the name of the service that sent it.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) service: String,
    pub(crate) span: Span,
}

impl Received {
    pub(crate) fn attribute(&self, key: &str) -> Option<String> {
        text_of(&self.span.attributes, key)
    }
}

/// The value of `key` among `attributes`, as text.
pub(crate) fn text_of(attributes: &[KeyValue], key: &str) -> Option<String> {
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

/// The spans of an export request, each with its service's name.
pub(crate) fn received(request: ExportTraceServiceRequest) -> Vec<Received> {
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|resource| text_of(&resource.attributes, "service.name"))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            spans.extend(scope.spans.into_iter().map(|span| Received {
                service: service.clone(),
                span,
            }));
        }
    }
    spans
}

/// An OTLP/gRPC trace receiver that keeps every span it is sent.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    pub(crate) spans: Arc<Mutex<Vec<Received>>>,
    /// The metadata of each export request.
    pub(crate) metadata: Arc<Mutex<Vec<tonic::metadata::MetadataMap>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.metadata
            .lock()
            .expect("not poisoned")
            .push(request.metadata().clone());
        let received = received(request.into_inner());
        self.spans.lock().expect("not poisoned").extend(received);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    /// Serves on a free loopback port; returns its address.
    pub(crate) async fn start(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let service = TraceServiceServer::new(self.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        addr
    }

    /// Serves over mutual TLS (certificate and key PEM, the client CA PEM)
    /// on a free loopback port; returns its address.
    pub(crate) async fn start_tls(&self, cert: &str, key: &str, client_ca: &str) -> SocketAddr {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert, key))
            .client_ca_root(Certificate::from_pem(client_ca));
        let server = tonic::transport::Server::builder()
            .tls_config(tls)
            .expect("a TLS configuration")
            .add_service(TraceServiceServer::new(self.clone()));
        tokio::spawn(
            server.serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        addr
    }

    /// The spans of trace `trace_id` received so far.
    pub(crate) fn trace(&self, trace_id: &[u8]) -> Vec<Received> {
        self.spans
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|received| received.span.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The messages of the lines `process` logged inside a span of trace
/// [`TRACE_ID`].
pub(crate) fn traced_lines(process: &Process) -> Vec<String> {
    process
        .log()
        .iter()
        .filter(|event| event["span"]["trace_id"] == TRACE_ID)
        .map(|event| event["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Both binaries, exporting to `collector` with `env` besides, the
/// marketplace calling recommendations: (recommendations, marketplace, the
/// homepage's URL, the gRPC address).
pub(crate) fn start_both(
    collector: &str,
    env: &[(&str, &str)],
) -> (Process, Process, String, SocketAddr) {
    let grpc = free_addr([127, 0, 0, 1]);
    let (recommendations, marketplace, url) =
        start_both_on(grpc, &["--recommendations-host=127.0.0.1"], collector, env);
    (recommendations, marketplace, url, grpc)
}

/// [`start_both`], recommendations listening on `grpc`, the marketplace
/// finding it as `find` (flags) says.
pub(crate) fn start_both_on(
    grpc: SocketAddr,
    find: &[&str],
    collector: &str,
    env: &[(&str, &str)],
) -> (Process, Process, String) {
    let mut env = env.to_vec();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", collector));
    // The receiver here speaks OTLP/gRPC; the specification's default is
    // OTLP/HTTP.
    if !env.iter().any(|(name, _)| name.ends_with("PROTOCOL")) {
        env.push(("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"));
    }
    env.push((
        "RUST_LOG",
        "info,service_kit::observe=debug,service_kit::server::http::observe=debug,marketplace=debug",
    ));
    let mut recommendations = Process::start_with_env(
        &recommendations_binary(),
        &[&format!("--listen={grpc}"), "--admin-listen=127.0.0.1:0"],
        &env,
    );
    recommendations.serving();
    let port = format!("--recommendations-port={}", grpc.port());
    let mut args = vec!["--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0", &port];
    args.extend_from_slice(find);
    let mut marketplace = Process::start_with_env(
        &std::path::PathBuf::from(env!("CARGO_BIN_EXE_marketplace")),
        &args,
        &env,
    );
    let url = format!(
        "http://{}/",
        Process::address(&marketplace.serving(), "http")
    );
    (recommendations, marketplace, url)
}

/// Loads the homepage once in trace [`TRACE_ID`], with request id `id`.
pub(crate) async fn traced_page(url: &str, id: &str) -> reqwest::Response {
    service_kit::tls::http_client()
        .expect("an HTTP client")
        .get(url)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .header("x-request-id", id)
        .send()
        .await
        .expect("the homepage answers")
}

/// The value of `series` (its name and labels, as written) in the
/// process's `/metrics`.
pub(crate) async fn metric(process: &Process, series: &str) -> f64 {
    let admin = process.listener("admin");
    let text = crate::helpers::admin_get(&admin, "/metrics").await;
    crate::helpers::metric_value(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

pub(crate) const EXPORTED: &str = r#"otel_sdk_exporter_span_exported_total{error_type=""}"#;
pub(crate) const QUEUED: &str = r#"otel_sdk_processor_span_processed_total{error_type=""}"#;
pub(crate) const DROPPED: &str =
    r#"otel_sdk_processor_span_processed_total{error_type="queue_full"}"#;

/// SIGTERM, and the exit code, in a thread: a test that would hang fails
/// after a minute instead.
pub(crate) async fn terminate(process: Process) -> Option<i32> {
    let exit = tokio::task::spawn_blocking(move || process.terminate());
    tokio::time::timeout(Duration::from_secs(60), exit)
        .await
        .expect("the process exits after SIGTERM")
        .expect("no panic")
}
