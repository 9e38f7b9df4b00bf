//! `spawn_app()`: the real server on free loopback ports, and typed clients
//! (the rest of the test support is `service_kit::testing`).

use std::{net::SocketAddr, path::PathBuf};

use protobufs::{
    legacy::recommendations_client::RecommendationsClient,
    v1::recommendations_service_client::RecommendationsServiceClient,
};
use recommendations::{Application, Settings};
use service_kit::testing::Running;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_client::HealthClient;

/// A running server. Dropping it without [`TestApp::stop`] aborts it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub channel: Channel,
    running: Running,
}

impl TestApp {
    pub fn v1(&self) -> RecommendationsServiceClient<Channel> {
        RecommendationsServiceClient::new(self.channel.clone())
    }

    pub fn legacy(&self) -> RecommendationsClient<Channel> {
        RecommendationsClient::new(self.channel.clone())
    }

    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }

    /// Begins the shutdown sequence, as SIGTERM does in production.
    pub fn begin_shutdown(&mut self) {
        self.running.begin_shutdown();
    }

    /// Shuts down and returns how `run_until_stopped` ended.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.running.stop().await
    }

    /// GET on the admin listener: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let response = service_kit::testing::http_get(format!("http://{}{path}", self.admin_addr))
            .await
            .expect("the admin listener answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("a text body"))
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Settings::for_tests()).await
}

pub async fn spawn_app_with_catalog(catalog: PathBuf) -> TestApp {
    spawn_app_with(Settings {
        catalog: Some(catalog),
        ..Settings::for_tests()
    })
    .await
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let app = Application::build(settings)
        .await
        .expect("the server builds");
    let addr = app.local_addr();
    let admin_addr = app.admin_addr().expect("the admin listener is bound");
    let running = Running::spawn(|shutdown| app.run_until_stopped(shutdown));
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect_lazy();
    TestApp {
        addr,
        admin_addr,
        channel,
        running,
    }
}

/// The /metrics text of the binary `process`.
pub async fn admin_metrics(process: &service_kit::testing::Process) -> String {
    let url = format!("http://{}/metrics", process.listener("admin"));
    service_kit::testing::http_get(url)
        .await
        .expect("answers")
        .text()
        .await
        .expect("a body")
}

/// SIGTERM, waited for off the runtime, so that the test's connections
/// can close as the server drains them: the exit code.
pub async fn terminate(process: service_kit::testing::Process) -> Option<i32> {
    tokio::task::spawn_blocking(move || process.terminate())
        .await
        .expect("no panic")
}
