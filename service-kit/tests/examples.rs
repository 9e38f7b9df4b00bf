//! The kit's examples (examples/grpc_service.rs, examples/web_app.rs) as a
//! user runs them: each binary started on port 0, called over real sockets,
//! its metrics and health read from its admin listener, then stopped with
//! SIGTERM, which it drains and exits 0 on.

use std::{path::PathBuf, time::Duration};

use protobufs::dummy::{ExecuteRequest, dummy_service_client::DummyServiceClient};
use service_kit::testing::Process;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The example `name`, which `cargo test` builds beside this test's binary.
fn example(name: &str) -> PathBuf {
    let test = std::env::current_exe().expect("the test's path");
    let profile = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    profile.join("examples").join(name)
}

/// Starts example `name` on loopback, port 0 for every listener.
fn start(name: &str) -> Process {
    let mut process = Process::start(
        &example(name),
        &["--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0"],
    );
    process.serving();
    process
}

/// Whether example `name`'s `healthcheck` finds the one whose admin
/// listener is `admin` ready.
fn healthcheck(name: &str, admin: &str) -> bool {
    std::process::Command::new(example(name))
        .args([&format!("--admin-listen={admin}"), "healthcheck"])
        .status()
        .expect("the healthcheck runs")
        .success()
}

/// SIGTERM, waited for off the runtime, so that this test's connections
/// can close as the example drains them.
async fn terminate(process: Process) -> Option<i32> {
    tokio::task::spawn_blocking(move || process.terminate())
        .await
        .expect("no panic")
}

/// GET `path` over HTTP/1.1: the status line and the body.
async fn get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sent");
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .expect("answered in time")
        .expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

#[tokio::test]
async fn the_grpc_example_echoes_reports_health_and_metrics_and_drains() {
    let process = start("grpc_service");
    let grpc = format!("http://{}", process.listener("grpc"));
    let channel = tonic::transport::Endpoint::from_shared(grpc)
        .expect("a valid URI")
        .connect()
        .await
        .expect("connects");

    let echoed = DummyServiceClient::new(channel.clone())
        .execute(ExecuteRequest {
            input: "hi".to_owned(),
        })
        .await
        .expect("an answer")
        .into_inner()
        .output;
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .expect("health answers")
        .into_inner()
        .status();
    let (_, metrics) = get(&process.listener("admin"), "/metrics").await;
    let (ready, _) = get(&process.listener("admin"), "/readyz").await;

    assert_eq!(echoed, "hi");
    assert_eq!(health, ServingStatus::Serving);
    assert!(
        metrics.contains("rpc_server_call_duration_seconds_count{")
            && metrics.contains("testing.dummy.v1.DummyService/Execute"),
        "{metrics}"
    );
    assert!(ready.contains(" 200 "), "{ready}");
    assert!(healthcheck("grpc_service", &process.listener("admin")));
    assert_eq!(terminate(process).await, Some(0), "drained and exited 0");
}

#[tokio::test]
async fn the_web_example_says_hello_reports_metrics_and_drains() {
    let process = start("web_app");

    let (status, body) = get(&process.listener("http"), "/").await;
    let (missing, _) = get(&process.listener("http"), "/nowhere").await;
    let (_, metrics) = get(&process.listener("admin"), "/metrics").await;

    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, "Hello from the kit.\n");
    assert!(missing.contains(" 404 "), "{missing}");
    assert!(
        metrics.contains("http_server_request_duration_seconds_count{"),
        "{metrics}"
    );
    assert!(healthcheck("web_app", &process.listener("admin")));
    assert_eq!(terminate(process).await, Some(0), "drained and exited 0");
}
