//! `recommendations healthcheck`: asks the local server's gRPC health
//! service whether it is SERVING. For container health checks: the runtime
//! image holds no grpcurl or curl.
//!
//! With TLS on, the check speaks TLS with the server's own settings: it
//! accepts exactly the certificate of RECOMMENDATIONS_TLS_CERT (pinned: it
//! checks its own process over loopback, so no CA is involved). Under
//! mutual TLS the process holds no client identity the server accepts (its
//! own certificate is no client certificate), so the check asks the admin
//! listener's `/readyz` instead, which follows the same serving status.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, anyhow};
use hyper_util::rt::TokioIo;
use rustls::{
    ClientConfig, DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::Settings;

/// Checks the server that `settings` describe, on loopback.
pub async fn check_local(settings: &Settings, timeout: Duration) -> anyhow::Result<()> {
    let addr = service_kit::admin::local_probe_address(settings.listen);
    match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect)
                .map_err(|err| {
                    anyhow!(
                        "cannot read the TLS certificate file {}: {err}",
                        cert.display()
                    )
                })?;
            // Read, so that a broken file fails the check as it fails the
            // server.
            PrivateKeyDer::from_pem_file(key).map_err(|err| {
                anyhow!(
                    "cannot read the TLS private key file {}: {err}",
                    key.display()
                )
            })?;
            if settings.tls_client_ca.is_some() {
                let admin = service_kit::admin::local_probe_address(settings.service.admin_listen);
                return service_kit::admin::probe(admin, "/readyz", timeout).await;
            }
            check_tls(addr, chain, timeout).await
        }
        _ => check(addr, timeout).await,
    }
}

/// Succeeds when the plaintext server at `addr` reports SERVING for the
/// whole server (service ""), within `timeout`.
pub async fn check(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let uri = format!("http://{addr}");
    let channel = Endpoint::from_shared(uri.clone())
        .context("invalid address")?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {uri}"))?;
    serving(channel, &uri).await
}

async fn check_tls(
    addr: SocketAddr,
    chain: Vec<CertificateDer<'static>>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let own = chain
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("the TLS certificate file holds no certificate"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { own, provider }));
    let mut config = builder.with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connect = tower::service_fn(move |_uri| {
        let connector = connector.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            // The name is not checked: Pinned compares the certificate itself.
            let name = ServerName::IpAddress(addr.ip().into());
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    // "http": the connector above does the TLS; tonic sees an HTTP/2 stream.
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .context("invalid address")?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_with_connector(connect)
        .await
        .with_context(|| format!("cannot connect to https://{addr}"))?;
    serving(channel, &format!("https://{addr}")).await
}

async fn serving(channel: Channel, uri: &str) -> anyhow::Result<()> {
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

/// Accepts exactly one certificate: the server's own.
#[derive(Debug)]
struct Pinned {
    own: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.own.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server presented a certificate other than its own".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
