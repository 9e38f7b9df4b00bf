//! OpenTelemetry configured by the specification's `OTEL_*` variables, on
//! the real recommendations binary, against OTLP receivers that are not
//! our code (opentelemetry-proto's messages, over tonic and over hyper):
//! both protocols and the specification's default, headers, gzip, mutual
//! TLS, each precedence rule, each refusal and each warning.

use std::{path::Path, process::Command, sync::Arc, time::Duration};

use protobufs::v1::{self, recommendations_service_client::RecommendationsServiceClient};
use service_kit::{
    testing::{Pki, Process, Purpose, free_addr},
    tls::{ClientAuth, ServerFiles, TlsFiles as _},
};

use crate::{end_to_end::recommendations_binary, otlp::Receiver, otlp_http::HttpReceiver};

/// recommendations with `env`, exporting every 100 ms.
fn start(env: &[(&str, &str)]) -> Process {
    let mut env = env.to_vec();
    env.push(("OTEL_BSP_SCHEDULE_DELAY", "100"));
    let mut process = Process::start_with_env(
        &recommendations_binary(),
        &["--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0"],
        &env,
    );
    process.serving();
    process
}

/// Three Recommend calls: three server spans.
async fn call(process: &Process) {
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", process.listener("grpc")))
            .expect("a URI")
            .connect()
            .await
            .expect("connects");
    let mut client = RecommendationsServiceClient::new(channel);
    for _ in 0..3 {
        let request = v1::RecommendRequest {
            user_id: 1,
            category: v1::Category::Mystery as i32,
            max_results: 1,
        };
        client.recommend(request).await.expect("answered");
    }
}

/// Waits up to 10 s for `ready`.
async fn until(ready: impl Fn() -> bool) -> bool {
    for _ in 0..200 {
        if ready() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn stop(process: Process) {
    let code = tokio::task::spawn_blocking(move || process.terminate()).await;
    assert_eq!(code.expect("no panic"), Some(0));
}

#[tokio::test]
async fn spans_go_over_otlp_http_by_default_with_headers_gzip_and_the_service_name() {
    let receiver = HttpReceiver::default();
    let addr = receiver.start(None).await;
    let process = start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{addr}")),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20abc,x-tenant=books",
        ),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=not-this,team=shop",
        ),
        ("OTEL_SERVICE_NAME", "bookstore-recommendations"),
    ]);

    call(&process).await;

    assert!(
        until(|| !receiver.exports().is_empty()).await,
        "spans arrive"
    );
    let export = &receiver.exports()[0];
    assert_eq!(
        export.path, "/v1/traces",
        "the generic endpoint with the traces path"
    );
    assert_eq!(
        export.headers["authorization"], "Bearer abc",
        "percent-decoded"
    );
    assert_eq!(export.headers["x-tenant"], "books");
    assert_eq!(export.headers["content-encoding"], "gzip");
    assert_eq!(export.headers["content-type"], "application/x-protobuf");
    assert!(
        export
            .services
            .iter()
            .all(|s| s == "bookstore-recommendations"),
        "{export:?}"
    );
    stop(process).await;
}

#[tokio::test]
async fn the_traces_variables_win_over_the_generic_ones() {
    let receiver = HttpReceiver::default();
    let addr = receiver.start(None).await;
    let nowhere = free_addr([127, 0, 0, 1]);
    let process = start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{nowhere}")),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            &format!("http://{addr}/custom/traces"),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-from=generic"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-from=traces"),
    ]);

    call(&process).await;

    assert!(
        until(|| !receiver.exports().is_empty()).await,
        "spans arrive"
    );
    let export = &receiver.exports()[0];
    assert_eq!(export.path, "/custom/traces", "used as it is");
    assert_eq!(export.headers["x-from"], "traces");
    assert!(
        export.headers.get("content-encoding").is_none(),
        "no compression by default"
    );
    stop(process).await;
}

#[tokio::test]
async fn spans_go_over_otlp_grpc_with_metadata_and_gzip() {
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let process = start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{addr}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=k%3D1"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
    ]);

    call(&process).await;

    assert!(until(|| !receiver.spans.lock().expect("not poisoned").is_empty()).await);
    let metadata = receiver.metadata.lock().expect("not poisoned")[0].clone();
    assert_eq!(
        metadata.get("api-key").map(|v| v.to_str().ok()),
        Some(Some("k=1"))
    );
    assert_eq!(
        metadata.get("grpc-encoding").map(|v| v.to_str().ok()),
        Some(Some("gzip"))
    );
    stop(process).await;
}

#[tokio::test]
async fn spans_go_to_a_collector_that_requires_mutual_tls() {
    let pki = Pki::new();
    let (cert, key) = pki.issue_files("localhost", &[Purpose::ServerAuth]);
    let server = ServerFiles {
        cert,
        key,
        clients: Some(ClientAuth {
            ca: pki.ca_file(),
            names: vec!["recommendations".to_owned()],
        }),
    };
    let mut config = (*server.load().expect("loads").config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let receiver = HttpReceiver::default();
    let addr = receiver.start(Some(Arc::new(config))).await;
    let (client_cert, client_key) = pki.issue_files("recommendations", &[Purpose::ClientAuth]);
    let path = |p: &Path| p.display().to_string();
    let process = start(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &format!("https://localhost:{}", addr.port()),
        ),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", &path(&pki.ca_file())),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &path(&client_cert)),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &path(&client_key)),
    ]);

    call(&process).await;

    assert!(
        until(|| !receiver.exports().is_empty()).await,
        "spans arrive over mutual TLS"
    );
    stop(process).await;
}

#[tokio::test]
async fn spans_go_over_grpc_to_a_collector_that_requires_mutual_tls() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("localhost", &[Purpose::ServerAuth]);
    let receiver = Receiver::default();
    let addr = receiver.start_tls(&cert, &key, &pki.ca_pem()).await;
    let (client_cert, client_key) = pki.issue_files("recommendations", &[Purpose::ClientAuth]);
    let path = |p: &Path| p.display().to_string();
    // The generic CA is another: only the traces one can verify the
    // collector.
    let other = Pki::new();
    let process = start(&[
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", &path(&other.ca_file())),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            &format!("https://localhost:{}", addr.port()),
        ),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            &path(&pki.ca_file()),
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            &path(&client_cert),
        ),
        ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", &path(&client_key)),
    ]);

    call(&process).await;

    assert!(until(|| !receiver.spans.lock().expect("not poisoned").is_empty()).await);
    stop(process).await;
}

#[tokio::test]
async fn disabled_or_none_exports_nothing_and_an_unparsable_number_is_a_warning() {
    let receiver = HttpReceiver::default();
    let addr = receiver.start(None).await;
    let endpoint = format!("http://{addr}");
    let disabled = start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_SDK_DISABLED", "true"),
    ]);
    let none = start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_TRACES_EXPORTER", "none"),
    ]);
    call(&disabled).await;
    call(&none).await;
    let warned = start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_BSP_EXPORT_TIMEOUT", "5s"),
    ]);
    call(&warned).await;

    assert!(
        until(|| !receiver.exports().is_empty()).await,
        "the third exports"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        receiver
            .exports()
            .iter()
            .all(|e| e.services == ["recommendations"; 3]),
        "only the third's"
    );
    assert_eq!(
        receiver
            .exports()
            .iter()
            .map(|e| e.services.len())
            .sum::<usize>(),
        3
    );
    let warnings: Vec<String> = warned
        .log()
        .iter()
        .filter(|event| event["level"] == "WARN")
        .map(|event| event["setting"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("OTEL_BSP_EXPORT_TIMEOUT=\"5s\""),
        "{warnings:?}"
    );
    for process in [disabled, none, warned] {
        stop(process).await;
    }
}

#[test]
fn values_the_service_cannot_honour_stop_it_naming_the_variable_the_value_and_the_choices() {
    let cases = [
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "http/json",
            "grpc, http/protobuf",
        ),
        ("OTEL_PROPAGATORS", "b3", "tracecontext, baggage, none"),
        ("OTEL_TRACES_EXPORTER", "zipkin", "otlp, none"),
    ];
    for (name, value, supported) in cases {
        let output = Command::new(recommendations_binary())
            .args(["--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0"])
            .env(name, value)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{name}={value} must stop the start"
        );
        assert!(
            stderr.contains(&format!("{name}={value}")) && stderr.contains(supported),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn what_the_opentelemetry_operator_injects_is_taken() {
    let receiver = HttpReceiver::default();
    let addr = receiver.start(None).await;
    // As the Operator's Instrumentation injects them into a pod (its
    // defaults: tracecontext and baggage, a parent-based ratio sampler).
    let process = start(&[
        ("OTEL_SERVICE_NAME", "recommendations"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{addr}")),
        (
            "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
            "recommendations-7d9f-x2x",
        ),
        ("OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", "node-1"),
        ("OTEL_PROPAGATORS", "tracecontext,baggage"),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "1"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "k8s.container.name=recommendations,k8s.deployment.name=recommendations,k8s.namespace.name=bookstore,k8s.node.name=node-1,k8s.pod.name=recommendations-7d9f-x2x,service.version=0.1.0",
        ),
    ]);

    call(&process).await;

    assert!(
        until(|| !receiver.exports().is_empty()).await,
        "spans arrive"
    );
    let warnings = process
        .log()
        .iter()
        .filter(|e| e["level"] == "WARN")
        .count();
    assert_eq!(warnings, 0, "nothing the Operator sets is ignored");
    stop(process).await;
}
