//! gRPC health, reflection, and the admin listener.

use protobufs::v1::recommendations_service_server::SERVICE_NAME as V1;
use tokio_stream::StreamExt as _;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_reflection::pb::v1 as reflection;

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_reports_serving_for_the_server_and_each_service() {
    let app = spawn_app().await;

    for service in ["", V1, "Recommendations"] {
        let request = HealthCheckRequest {
            service: service.to_owned(),
        };
        let response = app.health().check(request).await.expect("OK").into_inner();
        assert_eq!(
            response.status(),
            ServingStatus::Serving,
            "service {service:?}"
        );
    }
}

#[tokio::test]
async fn reflection_lists_both_contracts_and_health() {
    let app = spawn_app().await;
    let mut client =
        reflection::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = reflection::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            reflection::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };

    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("OK")
        .into_inner();
    let response = responses.next().await.expect("one answer").expect("OK");

    let Some(reflection::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("expected a service list, got {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [V1, "Recommendations", "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn reflection_describes_the_legacy_method_by_symbol() {
    let app = spawn_app().await;
    let mut client =
        tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(
            app.channel.clone(),
        );
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "Recommendations".to_owned(),
        )),
    };

    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("OK")
        .into_inner();
    let response = responses.next().await.expect("one answer").expect("OK");

    let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
        panic!("expected file descriptors, got {response:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test]
async fn admin_listener_serves_metrics_and_probes() {
    let app = spawn_app().await;
    app.health()
        .check(HealthCheckRequest::default())
        .await
        .expect("OK");

    let (status, metrics) = app.admin_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("recommendations_catalog_books 72"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"rpc_server_call_duration_seconds_count{rpc_system_name="grpc",rpc_method="grpc.health.v1.Health/Check",rpc_response_status_code="OK"} 1"#
        ),
        "{metrics}"
    );
    assert_eq!(app.admin_get("/healthz").await.0, 200);
    assert_eq!(app.admin_get("/readyz").await.0, 200);
}

#[tokio::test]
async fn metrics_are_not_served_on_the_grpc_port() {
    let app = spawn_app().await;

    // The gRPC listener speaks HTTP/2 only: an HTTP/1 GET gets no metrics.
    let result = service_kit::testing::http_get(format!("http://{}/metrics", app.addr)).await;

    if let Ok(response) = result {
        let body = response.text().await.unwrap_or_default();
        assert!(!body.contains("rpc_server_call_duration"), "{body}");
    }
}

#[tokio::test]
async fn the_healthcheck_passes_against_a_serving_server_and_fails_without_one() {
    let app = spawn_app().await;
    let timeout = std::time::Duration::from_secs(5);

    recommendations::healthcheck::check(app.addr, timeout)
        .await
        .expect("SERVING");
    let addr = app.addr;
    app.stop().await.expect("a clean exit");
    let error = recommendations::healthcheck::check(addr, timeout)
        .await
        .expect_err("nothing listens");

    assert!(format!("{error:#}").contains("cannot connect"), "{error:#}");
}
