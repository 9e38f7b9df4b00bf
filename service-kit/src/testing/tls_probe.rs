//! A bare TLS client for tests: which certificate does a server present to
//! a new handshake now, and does it accept a client's?

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::io::AsyncReadExt;

/// The DER of the first certificate in `pem`.
pub fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("a PEM certificate")
        .to_vec()
}

/// Makes a new TLS connection to `addr`, verifying the server as `name`
/// against the CA `ca_pem` and presenting `identity` (certificate PEM,
/// key PEM) if any, and returns the certificate the server presented (DER).
/// Fails with the reason when either side refuses the other (a server's
/// refusal of the client shows when it answers the first read).
pub async fn presented_certificate(
    addr: SocketAddr,
    name: &str,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(der.map_err(|err| err.to_string())?)
            .map_err(|err| err.to_string())?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| err.to_string())?
    .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).map_err(|e| e.to_string())?],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| e.to_string())?,
            )
            .map_err(|err| err.to_string())?,
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from(name.to_owned()).map_err(|err| err.to_string())?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|err| err.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|err| format!("handshake: {err}"))?;
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|der| der.to_vec())
        .ok_or("no server certificate")?;
    // The server's first bytes (its HTTP/2 SETTINGS), or its refusal.
    let mut first = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut first)).await {
        Ok(Ok(n)) if n > 0 => Ok(presented),
        Ok(Ok(_)) => Err("closed by the server".to_owned()),
        Ok(Err(err)) => Err(format!("refused: {err}")),
        Err(_) => Err("no answer within 5 s".to_owned()),
    }
}

/// The serial number of the first certificate in `pem`, hexadecimal, as
/// the certificate gauges' `serial` label writes it.
pub fn serial_of(pem: &str) -> String {
    let der = der_of(pem);
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("a certificate");
    parsed.raw_serial_as_string().replace(':', "")
}
