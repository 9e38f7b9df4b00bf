//! `recommendations healthcheck`: asks the local server's gRPC health
//! service whether it is SERVING. For container health checks: the runtime
//! image holds no grpcurl or curl.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use tonic::transport::Endpoint;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Succeeds when the server at `addr` reports SERVING for the whole server
/// (service ""), within `timeout`.
pub async fn check(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let uri = format!("http://{addr}");
    let channel = Endpoint::from_shared(uri.clone())
        .context("invalid address")?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {uri}"))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .with_context(|| format!("health check of {uri} failed"))?;
    let status = response.into_inner().status();
    anyhow::ensure!(
        status == ServingStatus::Serving,
        "{uri} reports {}",
        status.as_str_name()
    );
    Ok(())
}
