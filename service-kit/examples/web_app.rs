//! A minimal web app built from the kit: one page, with the listener's
//! limits, request logs, metrics and spans, a panic caught as a 500, an
//! admin listener (/metrics, /healthz, /readyz) and a bounded drain on
//! SIGTERM.
//!
//! `cargo run -p service-kit --example web_app`, then `curl localhost:5061`.
#![forbid(unsafe_code)]

use std::{any::Any, net::SocketAddr, process::ExitCode};

use axum::{Router, body::Body, http::StatusCode, response::Response, routing::get};
use prometheus_client::registry::Registry;
use service_kit::{
    Lifecycle,
    cli::ServiceArgs,
    lifecycle::{ServiceSettings, signal},
    limits::{HttpLimits, with_env_prefix},
    metrics::HttpMetrics,
    panic::{Answers, CatchPanicLayer},
    server::{Listener, http::HttpObserveLayer, serve_http},
};
use tower::ServiceBuilder;

/// The web app's settings: its listener, its limits, and what every
/// service has (`--help` lists them all).
#[derive(clap::Args, Clone, Debug)]
struct Settings {
    /// Address of the web listener.
    #[arg(long, env = "HELLO_LISTEN", default_value = "0.0.0.0:5061")]
    listen: SocketAddr,
    #[command(flatten)]
    limits: HttpLimits,
    #[command(flatten)]
    service: ServiceSettings<8962>,
}

impl ServiceArgs for Settings {
    const NAME: &'static str = "hello";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "Says hello, over HTTP.";
    const HEALTHCHECK: &'static str = "Exit 0 if /readyz answers 200, 1 otherwise";
    const ENV_PREFIX: &'static str = "HELLO";

    fn with_env_prefix(command: clap::Command) -> clap::Command {
        let command = with_env_prefix::<HttpLimits>(command, Self::ENV_PREFIX);
        with_env_prefix::<ServiceSettings<8962>>(command, Self::ENV_PREFIX)
    }
}

/// A panicking handler's answer: a plain 500.
#[derive(Clone)]
struct Plain500;

impl Answers<Body> for Plain500 {
    fn panicked(&self, panic: Box<dyn Any + Send>) -> Response {
        tracing::error!(
            panic = service_kit::panic::message(&*panic),
            "a handler panicked"
        );
        let mut response = Response::new(Body::from("Something went wrong.\n"));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response
    }
}

fn main() -> ExitCode {
    service_kit::cli::main(|settings: &Settings| &settings.service, "/readyz", run)
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let metrics = HttpMetrics::register(&mut registry);
    // Router::layer applies after routing; ServiceBuilder's first layer is
    // the outermost: logs and metrics see the 500 a panic becomes.
    let router = Router::new()
        .route("/", get(|| async { "Hello from the kit.\n" }))
        .layer(
            ServiceBuilder::new()
                .layer(HttpObserveLayer::new(metrics.clone()))
                .layer(CatchPanicLayer::new(Plain500)),
        );
    let max_connections = settings.limits.http_max_connections as usize;
    let listener = Listener::bind(settings.listen, max_connections, "http", "--listen").await?;
    let lifecycle = Lifecycle::bind("http", &settings.service, registry).await?;
    tracing::info!(http = %listener.local_addr()?, admin = %lifecycle.admin_addr()?, "serving");

    let limits = settings.limits;
    let serve = |stopped| async move {
        serve_http(listener, router, &limits, Some(metrics), stopped).await;
        Ok::<(), std::convert::Infallible>(())
    };
    lifecycle.run(serve, async {}, signal()).await
}
