//! The rustls configurations of both sides, read from their files
//! ([`ServerFiles`], [`ClientFiles`]) so that a bad, mismatched or expired
//! file is refused with an error naming it, at start and at each reload.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, anyhow, ensure};
use rustls_pki_types::{CertificateDer, ServerName};

use super::{
    certificates::{Certificate, Role, describe, ensure_in_date},
    client_auth::{ClientAuth, NamedClients},
    pem::{certificate_chain, private_key, root_store},
};

/// A configuration read from files, and the certificates it uses.
#[derive(Debug)]
pub struct Loaded<C> {
    /// The rustls configuration.
    pub config: Arc<C>,
    /// Every certificate it uses: its own first, then the CAs it trusts.
    pub certificates: Vec<Certificate>,
}

/// Files a TLS configuration is read from.
pub trait TlsFiles: Send + Sync + 'static {
    /// The rustls configuration they make.
    type Config: Send + Sync + 'static;

    /// Reads and checks every file; the error names the file and the
    /// problem.
    fn load(&self) -> anyhow::Result<Loaded<Self::Config>>;

    /// The files, whose change on disk is a change to the configuration.
    fn paths(&self) -> Vec<PathBuf>;
}

/// The certificates of `path` for `role`, described and checked in date.
fn certificates(
    path: &Path,
    what: &str,
    role: Role,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, Vec<Certificate>)> {
    let chain = certificate_chain(path, what)?;
    let mut described = chain
        .iter()
        .map(|der| describe(role, path, der))
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure_in_date(path, &described)?;
    if matches!(role, Role::server | Role::client) {
        // The chain's intermediates are not shown: its leaf is what expires
        // first as a rule, and what the role names.
        described.truncate(1);
    }
    Ok((chain, described))
}

/// The server side: serve with `cert` and `key`; with `clients`, require
/// client certificates signed by its CA, meant for client authentication
/// and carrying one of its names (mutual TLS). HTTP/2 only (ALPN `h2`), as
/// gRPC needs. The handshake itself is the listener's, so that it can be
/// given a time limit.
#[derive(Clone, Debug)]
pub struct ServerFiles {
    /// PEM certificate chain, the server's own first.
    pub cert: PathBuf,
    /// PEM private key of the certificate.
    pub key: PathBuf,
    /// Who may connect, under mutual TLS.
    pub clients: Option<ClientAuth>,
}

impl TlsFiles for ServerFiles {
    type Config = rustls::ServerConfig;

    fn load(&self) -> anyhow::Result<Loaded<rustls::ServerConfig>> {
        let Self { cert, key, clients } = self;
        let (chain, mut shown) = certificates(cert, "TLS certificate", Role::server)?;
        let private_key = private_key(key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("rustls has no safe protocol version")?;
        let builder = match clients {
            Some(ClientAuth { ca, names }) => {
                let (cas, described) = certificates(ca, "client CA", Role::client_ca)?;
                shown.extend(described);
                let roots = root_store(ca, "client CA", &cas)?;
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
                        ServerName::try_from(name.clone()).map_err(|err| {
                            anyhow!("the client name {name:?} is not a DNS name: {err}")
                        })
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
        // rustls checks here that the key belongs to the certificate.
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
        Ok(Loaded {
            config: Arc::new(config),
            certificates: shown,
        })
    }

    fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.cert.clone(), self.key.clone()];
        paths.extend(self.clients.as_ref().map(|clients| clients.ca.clone()));
        paths
    }
}

/// The client side: verify the server against `ca`; with `identity`
/// (certificate, key), present a client certificate. HTTP/2 only (ALPN
/// `h2`).
#[derive(Clone, Debug)]
pub struct ClientFiles {
    /// PEM CA certificates the server's must be signed by.
    pub ca: PathBuf,
    /// PEM certificate chain and private key presented to the server.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles for ClientFiles {
    type Config = rustls::ClientConfig;

    fn load(&self) -> anyhow::Result<Loaded<rustls::ClientConfig>> {
        let (cas, mut shown) = certificates(&self.ca, "CA certificate", Role::ca)?;
        let roots = root_store(&self.ca, "CA certificate", &cas)?;
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("rustls has no safe protocol version")?
        .with_root_certificates(roots);
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let (chain, own) = certificates(cert, "client certificate", Role::client)?;
                shown.splice(0..0, own);
                builder
                    .with_client_auth_cert(chain, private_key(key)?)
                    .with_context(|| {
                        format!(
                            "the client certificate {} and key {} do not go together",
                            cert.display(),
                            key.display()
                        )
                    })?
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Loaded {
            config: Arc::new(config),
            certificates: shown,
        })
    }

    fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.ca.clone()];
        if let Some((cert, key)) = &self.identity {
            paths.extend([cert.clone(), key.clone()]);
        }
        paths
    }
}

/// `domain` as the name a server's certificate must carry (and the SNI).
pub fn server_name(domain: &str) -> anyhow::Result<ServerName<'static>> {
    ServerName::try_from(domain.to_owned())
        .map_err(|err| anyhow!("the TLS domain {domain:?} is not a DNS name or IP address: {err}"))
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

    fn server_config(
        cert: &Path,
        key: &Path,
        clients: Option<ClientAuth>,
    ) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let files = ServerFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            clients,
        };
        files.load().map(|loaded| loaded.config)
    }

    /// A certificate for `name` valid until the start of the day
    /// (year, month, day), and its key.
    fn leaf_until(name: &str, (year, month, day): (i32, u8, u8)) -> (String, String) {
        let ca = CertifiedIssuer::self_signed(
            CertificateParams::default(),
            KeyPair::generate().expect("a key"),
        )
        .expect("a CA");
        let key = KeyPair::generate().expect("a key");
        let cert = CertificateParams::new(vec![name.to_owned()])
            .and_then(|mut params| {
                params.not_before = rcgen::date_time_ymd(2000, 1, 1);
                params.not_after = rcgen::date_time_ymd(year, month, day);
                params.signed_by(&key, &ca)
            })
            .expect("a certificate");
        (cert.pem(), key.serialize_pem())
    }

    fn leaf(name: &str) -> (String, String) {
        leaf_until(name, (4000, 1, 1))
    }

    #[test]
    fn an_expired_certificate_is_refused_naming_the_file_and_when() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (cert, key) = leaf_until("localhost", (2020, 1, 1));

        let error = server_config(
            &write(dir.path(), "old.pem", &cert),
            &write(dir.path(), "k.pem", &key),
            None,
        )
        .expect_err("expired");

        let error = error.to_string();
        assert!(error.contains("old.pem"), "{error}");
        assert!(error.contains("expired at 2020-01-01T00:00:00Z"), "{error}");
    }

    #[test]
    fn the_certificates_in_use_are_described_by_role() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (cert, key) = leaf_until("marketplace", (2100, 1, 2));
        let (ca, _) = leaf("ca");
        let files = ClientFiles {
            ca: write(dir.path(), "ca.pem", &ca),
            identity: Some((
                write(dir.path(), "c.pem", &cert),
                write(dir.path(), "k.pem", &key),
            )),
        };

        let shown = files.load().expect("loads").certificates;

        let roles: Vec<Role> = shown.iter().map(|c| c.name.role).collect();
        assert_eq!(roles, [Role::client, Role::ca]);
        assert_eq!(shown[0].not_after, 4_102_531_200, "2100-01-02");
        assert!(!shown[0].name.serial.is_empty());
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
