//! A minimal gRPC service built from the kit: an echo service with the
//! listener's limits, call logs, metrics and spans, gRPC health, an admin
//! listener (/metrics, /healthz, /readyz) and a bounded drain on SIGTERM.
//!
//! `cargo run -p service-kit --example grpc_service`, then
//! `grpcurl -plaintext -import-path protobufs -proto testing/dummy/v1/dummy.proto \
//!   -d '{"input": "hi"}' localhost:50061 testing.dummy.v1.DummyService/Execute`.
#![forbid(unsafe_code)]

use std::{net::SocketAddr, process::ExitCode};

use prometheus_client::registry::Registry;
use protobufs::dummy::{
    ExecuteRequest, ExecuteResponse,
    dummy_service_server::{DummyService, DummyServiceServer},
};
use service_kit::{
    Lifecycle,
    cli::ServiceArgs,
    lifecycle::{ServiceSettings, signal},
    limits::{GrpcLimits, with_env_prefix},
    metrics::{RpcMetrics, Side},
    server::{Listener, serve_grpc},
    trace::CallSpans,
};
use tonic::{Request, Response, Status, service::Routes};

/// The echo service's settings: its listener, its limits, and what every
/// service has (`--help` lists them all).
#[derive(clap::Args, Clone, Debug)]
struct Settings {
    /// Address of the gRPC listener.
    #[arg(long, env = "ECHO_LISTEN", default_value = "0.0.0.0:50061")]
    listen: SocketAddr,
    #[command(flatten)]
    limits: GrpcLimits,
    #[command(flatten)]
    service: ServiceSettings<8961>,
}

impl ServiceArgs for Settings {
    const NAME: &'static str = "echo";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "Echoes what it is sent, over gRPC.";
    const HEALTHCHECK: &'static str = "Exit 0 if /readyz answers 200, 1 otherwise";
    const ENV_PREFIX: &'static str = "ECHO";

    fn with_env_prefix(command: clap::Command) -> clap::Command {
        let command = with_env_prefix::<GrpcLimits>(command, Self::ENV_PREFIX);
        with_env_prefix::<ServiceSettings<8961>>(command, Self::ENV_PREFIX)
    }
}

struct Echo;

#[tonic::async_trait]
impl DummyService for Echo {
    async fn execute(
        &self,
        call: Request<ExecuteRequest>,
    ) -> Result<Response<ExecuteResponse>, Status> {
        Ok(Response::new(ExecuteResponse {
            output: call.into_inner().input,
        }))
    }
}

fn main() -> ExitCode {
    service_kit::cli::main(|settings: &Settings| &settings.service, "/readyz", run)
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let metrics = RpcMetrics::register(&mut registry, Side::Server);
    let (health, health_service) = tonic_health::server::health_reporter();
    let services = Routes::new(DummyServiceServer::new(Echo)).add_service(health_service);
    let max_connections = settings.limits.max_connections as usize;
    let listener = Listener::bind(settings.listen, max_connections, "grpc", "--listen").await?;
    let lifecycle = Lifecycle::bind("grpc", &settings.service, registry).await?;
    tracing::info!(grpc = %listener.local_addr()?, admin = %lifecycle.admin_addr()?, "serving");

    let limits = settings.limits;
    let serve = |stopped| async move {
        serve_grpc(
            services,
            listener,
            &limits,
            None,
            metrics,
            CallSpans::server(),
            stopped,
        )
        .await
    };
    // On SIGTERM, health says NOT_SERVING before the listener closes.
    let going_away = async move { health.set_not_serving::<DummyServiceServer<Echo>>().await };
    lifecycle.run(serve, going_away, signal()).await
}
