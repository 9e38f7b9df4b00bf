//! The admin HTTP listener: `/metrics`, `/healthz` and `/readyz`, on a port
//! of its own so that they are never exposed with the public API.

use std::{future::Future, io, net::SocketAddr, sync::Arc};

use anyhow::Context;
use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::registry::Registry;

use crate::{
    lifecycle::Readiness,
    limits::{AdminLimits, HttpLimits},
    server::Listener,
};

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    readiness: Readiness,
}

/// The admin routes: `/metrics` (OpenMetrics text), `/healthz` (liveness:
/// 200 while the process runs) and `/readyz` (readiness: 503 once shutdown
/// has begun).
pub fn router(registry: Arc<Registry>, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(AdminState {
            registry,
            readiness,
        })
}

async fn metrics(State(state): State<AdminState>) -> Response {
    match crate::metrics::encode(&state.registry) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(cause = %err, "cannot encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response()
        }
    }
}

async fn ready(State(state): State<AdminState>) -> Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

/// The admin listener, bound and ready to serve.
#[derive(Debug)]
pub struct AdminServer {
    listener: Listener,
    router: Router,
    limits: HttpLimits,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(
        addr: SocketAddr,
        registry: Arc<Registry>,
        readiness: Readiness,
        limits: &AdminLimits,
    ) -> anyhow::Result<Self> {
        let limits = limits.as_http();
        let max_connections = limits.http_max_connections as usize;
        Ok(Self {
            listener: Listener::bind(addr, max_connections, "admin", "--admin-listen").await?,
            router: router(registry, readiness),
            limits,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // The admin listener's own requests are not counted.
        crate::server::serve_http(self.listener, self.router, &self.limits, None, shutdown).await;
        Ok(())
    }

    /// Serves in a task of its own until [`AdminHandle::stop`].
    pub fn spawn(self) -> AdminHandle {
        let (trigger, stopped) = crate::lifecycle::trigger();
        AdminHandle {
            trigger,
            task: tokio::spawn(self.run_until_stopped(stopped)),
        }
    }
}

/// A running admin listener (see [`AdminServer::spawn`]).
#[derive(Debug)]
pub struct AdminHandle {
    trigger: crate::lifecycle::Trigger,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl AdminHandle {
    /// Stops accepting, finishes the requests in flight and waits for that.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.trigger.fire();
        self.task
            .await
            .context("the admin listener task failed")?
            .context("the admin listener failed")
    }
}

/// The address to probe a listener bound to `listen` at: the same port on
/// loopback when it is bound to every interface.
pub fn local_probe_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// GETs `path` on `addr` with plain HTTP/1.1 and succeeds on a 200, for
/// container health checks (the runtime images hold no curl). Fails with
/// what went wrong, within `timeout`.
pub async fn probe(
    addr: SocketAddr,
    path: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 64];
        let read = stream.read(&mut head).await?;
        Ok::<_, io::Error>(String::from_utf8_lossy(&head[..read]).into_owned())
    };
    let head = tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("no answer from http://{addr}{path} within {timeout:?}"))?
        .with_context(|| format!("cannot GET http://{addr}{path}"))?;
    let status = head.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status.starts_with("HTTP/1.1 200"),
        "http://{addr}{path} answered {status:?}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn probes_go_to_loopback_for_wildcard_listeners() {
        assert_eq!(
            local_probe_address("0.0.0.0:8950".parse().expect("valid")).to_string(),
            "127.0.0.1:8950"
        );
        assert_eq!(
            local_probe_address("[::]:1".parse().expect("valid")).to_string(),
            "[::1]:1"
        );
        assert_eq!(
            local_probe_address("10.1.2.3:7".parse().expect("valid")).to_string(),
            "10.1.2.3:7"
        );
    }

    #[tokio::test]
    async fn probe_succeeds_on_200_and_fails_on_503() {
        let readiness = Readiness::new();
        let server = AdminServer::bind(
            "127.0.0.1:0".parse().expect("valid"),
            Arc::default(),
            readiness.clone(),
            &AdminLimits {
                admin_max_connections: 4,
            },
        )
        .await
        .expect("bound");
        let addr = server.local_addr().expect("bound");
        let handle = server.spawn();
        let timeout = Duration::from_secs(5);

        probe(addr, "/readyz", timeout).await.expect("ready");
        readiness.set_not_ready();
        let error = probe(addr, "/readyz", timeout).await.expect_err("503");

        assert!(error.to_string().contains("503"), "{error}");
        handle.stop().await.expect("clean stop");
        assert!(
            probe(addr, "/healthz", timeout).await.is_err(),
            "nothing listens any more"
        );
    }
}
