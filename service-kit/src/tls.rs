//! TLS for the gRPC hop (rustls, no OpenSSL): reading the PEM files, with
//! errors that name the file and the problem, and building the rustls configs
//! so that a bad or mismatched file stops the process at start.

use std::{path::Path, sync::Arc};

use anyhow::{Context, anyhow, ensure};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    server::danger::{ClientCertVerified, ClientCertVerifier},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};

/// Reads a PEM file of one or more certificates; `what` names it in errors
/// ("TLS certificate", "client CA").
pub fn read_certificates(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    let count = CertificateDer::pem_slice_iter(&pem)
        .try_fold(0, |count, cert| cert.map(|_| count + 1))
        .map_err(|err| anyhow!("the {what} file {} is not valid PEM: {err}", path.display()))?;
    ensure!(
        count > 0,
        "the {what} file {} holds no PEM certificate",
        path.display()
    );
    Ok(pem)
}

/// Reads a PEM private key file.
pub fn read_private_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the TLS private key file {}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| {
        anyhow!(
            "the TLS private key file {} holds no usable PEM private key: {err}",
            path.display()
        )
    })?;
    Ok(pem)
}

/// The certificates of a PEM file; `what` names it in errors.
fn certificate_chain(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(&read_certificates(path, what)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| anyhow!("the {what} file {} is not valid PEM: {err}", path.display()))
}

/// The private key of a PEM file.
fn private_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(&read_private_key(path)?).map_err(|err| {
        anyhow!(
            "the TLS private key file {} is not valid PEM: {err}",
            path.display()
        )
    })
}

/// The certificates of a PEM file as trust anchors; `what` names it in
/// errors.
fn root_store(path: &Path, what: &str) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for der in certificate_chain(path, what)? {
        roots.add(der).with_context(|| {
            format!(
                "the {what} file {} holds an unusable certificate",
                path.display()
            )
        })?;
    }
    Ok(roots)
}

/// Who may connect under mutual TLS.
#[derive(Clone, Copy, Debug)]
pub struct ClientAuth<'a> {
    /// PEM CA that client certificates must be signed by.
    pub ca: &'a Path,
    /// Names, one of which a client certificate must carry: as a DNS
    /// subject alternative name, or as its subject's common name when it
    /// has no subject alternative name.
    pub names: &'a [String],
}

/// The server side: serve with `cert` and `key`; with `clients`, require
/// client certificates signed by its CA, meant for client authentication
/// and carrying one of its names (mutual TLS). HTTP/2 only (ALPN `h2`), as
/// gRPC needs. The handshake itself is the listener's, so that it can be
/// given a time limit.
pub fn server_config(
    cert: &Path,
    key: &Path,
    clients: Option<ClientAuth<'_>>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = certificate_chain(cert, "TLS certificate")?;
    let private_key = private_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("rustls has no safe protocol version")?;
    let builder = match clients {
        Some(ClientAuth { ca, names }) => {
            let roots = root_store(ca, "client CA")?;
            let inner = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .with_context(|| {
                format!("the client CA file {} cannot verify clients", ca.display())
            })?;
            let names = names
                .iter()
                .map(|name| {
                    ServerName::try_from(name.clone())
                        .map_err(|err| anyhow!("the client name {name:?} is not a DNS name: {err}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            ensure!(
                !names.is_empty(),
                "mutual TLS needs at least one client name to allow"
            );
            builder.with_client_cert_verifier(Arc::new(NamedClients { inner, names }))
        }
        None => builder.with_no_client_auth(),
    };
    // rustls checks here that the key belongs to the certificate, so that a
    // mismatch fails at start.
    let mut config = builder
        .with_single_cert(chain, private_key)
        .with_context(|| {
            format!(
                "the TLS certificate {} and private key {} cannot be used together",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Client certificates as rustls's WebPKI verifier checks them (signed by
/// the CA, in date, proving the key, and meant for client authentication
/// as RFC 5280 reads it: an extended key usage that leaves client
/// authentication out, a server's certificate, is refused, and one with no
/// extended key usage at all is valid for any purpose, as Go's crypto/x509,
/// gRPC core and Kubernetes take it), and besides carrying one of the
/// allowed names: as a DNS subject alternative name, or as the subject's
/// common name when the certificate has no subject alternative name (the
/// tutorial's `openssl req -subj /CN=marketplace`, which Kubernetes also
/// reads as the client's name).
#[derive(Debug)]
struct NamedClients {
    inner: Arc<dyn ClientCertVerifier>,
    names: Vec<ServerName<'static>>,
}

impl NamedClients {
    /// Whether `end_entity` carries one of the allowed names.
    fn allows(&self, end_entity: &CertificateDer<'_>) -> Result<bool, rustls::Error> {
        let bad_encoding = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| bad_encoding())?;
        if self
            .names
            .iter()
            .any(|name| cert.verify_is_valid_for_subject_name(name).is_ok())
        {
            return Ok(true);
        }
        let (_, parsed) =
            x509_parser::parse_x509_certificate(end_entity.as_ref()).map_err(|_| bad_encoding())?;
        let has_alternative_names = parsed
            .subject_alternative_name()
            .map_err(|_| bad_encoding())?
            .is_some();
        if has_alternative_names {
            return Ok(false);
        }
        let common_names = parsed.subject().iter_common_name();
        let allowed = common_names
            .filter_map(|common_name| common_name.as_str().ok())
            .any(|common_name| {
                self.names.iter().any(|name| match name {
                    ServerName::DnsName(dns) => dns.as_ref().eq_ignore_ascii_case(common_name),
                    _ => false,
                })
            });
        Ok(allowed)
    }
}

impl ClientCertVerifier for NamedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if !self.allows(end_entity)? {
            tracing::debug!("a client certificate is refused: none of the allowed names");
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The client side: verify the server against `ca` under the name
/// `domain`; with `identity` (certificate, key), present a client
/// certificate. HTTP/2 only (ALPN `h2`).
pub fn client_config(
    ca: &Path,
    domain: &str,
    identity: Option<(&Path, &Path)>,
) -> anyhow::Result<crate::client::ClientTls> {
    let roots = root_store(ca, "CA certificate")?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("rustls has no safe protocol version")?
    .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                certificate_chain(cert, "client certificate")?,
                private_key(key)?,
            )
            .with_context(|| {
                format!(
                    "the client certificate {} and key {} do not go together",
                    cert.display(),
                    key.display()
                )
            })?,
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let server_name = ServerName::try_from(domain.to_owned()).map_err(|err| {
        anyhow!("the TLS domain {domain:?} is not a DNS name or IP address: {err}")
    })?;
    Ok(crate::client::ClientTls {
        config: Arc::new(config),
        server_name,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rcgen::{CertificateParams, CertifiedIssuer, KeyPair};

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("a writable temp dir");
        path
    }

    fn leaf(name: &str) -> (String, String) {
        let ca = CertifiedIssuer::self_signed(
            CertificateParams::default(),
            KeyPair::generate().expect("a key"),
        )
        .expect("a CA");
        let key = KeyPair::generate().expect("a key");
        let cert = CertificateParams::new(vec![name.to_owned()])
            .and_then(|params| params.signed_by(&key, &ca))
            .expect("a certificate");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_certificate_and_key_make_a_server_config() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (cert, key) = leaf("localhost");

        let config = server_config(
            &write(dir.path(), "c.pem", &cert),
            &write(dir.path(), "k.pem", &key),
            None,
        );

        assert_eq!(config.expect("usable").alpn_protocols, [b"h2".to_vec()]);
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = server_config(
            Path::new("/no/such/cert.pem"),
            Path::new("/no/key.pem"),
            None,
        )
        .expect_err("missing");

        assert!(
            format!("{error:#}")
                .starts_with("cannot read the TLS certificate file /no/such/cert.pem"),
            "{error:#}"
        );
    }

    #[test]
    fn a_file_without_a_certificate_is_named() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (_, key) = leaf("localhost");
        let not_a_cert = write(dir.path(), "key-as-cert.pem", &key);

        let error = server_config(&not_a_cert, &not_a_cert, None).expect_err("no certificate");

        assert!(
            error
                .to_string()
                .contains("key-as-cert.pem holds no PEM certificate"),
            "{error}"
        );
    }

    #[test]
    fn a_file_without_a_key_is_named() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (cert, _) = leaf("localhost");
        let cert = write(dir.path(), "cert.pem", &cert);

        let error = server_config(&cert, &cert, None).expect_err("no key");

        assert!(
            error
                .to_string()
                .contains("cert.pem holds no usable PEM private key"),
            "{error}"
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_at_start() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (cert, _) = leaf("localhost");
        let (_, other_key) = leaf("localhost");

        let error = server_config(
            &write(dir.path(), "c.pem", &cert),
            &write(dir.path(), "other.pem", &other_key),
            None,
        )
        .expect_err("mismatch");

        assert!(
            error.to_string().contains("cannot be used together"),
            "{error}"
        );
    }
}
