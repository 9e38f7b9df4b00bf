//! HTTPS clients with the kit's TLS: rustls with ring, as every TLS
//! connection of the services. reqwest is built here with rustls but
//! without a crypto provider of its own (its provider is aws-lc-rs, a C
//! library), so that every reqwest client in a process that links the kit
//! (the OTLP/HTTP exporter, the tools, the tests) must be given this
//! configuration: [`http_client`] does it.

use std::{path::Path, sync::Arc};

use anyhow::{Context, anyhow};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// The rustls configuration of an HTTPS client: the server verified
/// against the PEM CA certificates of `ca` (else the system's), presenting
/// `identity` (certificate chain, key) when given. `what` names the files
/// in errors ("OTLP").
pub fn https_config(
    what: &str,
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> anyhow::Result<rustls::ClientConfig> {
    let read = |path: &Path, kind: &str| {
        std::fs::read(path)
            .with_context(|| format!("cannot read the {what} {kind} file {}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(ca) => {
            for der in CertificateDer::pem_slice_iter(&read(ca, "CA certificate")?) {
                let der = der.map_err(|err| {
                    anyhow!(
                        "the {what} CA certificate file {} is not PEM: {err}",
                        ca.display()
                    )
                })?;
                roots.add(der).with_context(|| {
                    format!(
                        "the {what} CA certificate file {} holds an unusable certificate",
                        ca.display()
                    )
                })?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("rustls has no safe protocol version")?
    .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(&read(cert, "client certificate")?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| {
                    anyhow!(
                        "the {what} client certificate file {} is not PEM: {err}",
                        cert.display()
                    )
                })?;
            let key_der =
                PrivateKeyDer::from_pem_slice(&read(key, "client key")?).map_err(|err| {
                    anyhow!(
                        "the {what} client key file {} is not PEM: {err}",
                        key.display()
                    )
                })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .with_context(|| {
                    format!("the {what} client certificate and key do not go together")
                })?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An HTTP(S) client (reqwest, async) with the system's CA certificates:
/// use it, never `reqwest::Client::new()` or `reqwest::get`, which find no
/// crypto provider in a process linking the kit.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(https_config("HTTP", None, None)?)
        .build()
        .context("cannot make an HTTP client")
}
