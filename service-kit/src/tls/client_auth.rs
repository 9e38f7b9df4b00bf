//! Who may connect under mutual TLS: a client certificate signed by the
//! client CA, meant for client authentication, and carrying an allowed name.

use std::{path::PathBuf, sync::Arc};

use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    server::danger::{ClientCertVerified, ClientCertVerifier},
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Who may connect under mutual TLS.
#[derive(Clone, Debug)]
pub struct ClientAuth {
    /// PEM CA certificates, one of which must have signed a client's.
    pub ca: PathBuf,
    /// Names, one of which a client certificate must carry: as a DNS
    /// subject alternative name, or as its subject's common name when it
    /// has no subject alternative name.
    pub names: Vec<String>,
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
pub(super) struct NamedClients {
    pub(super) inner: Arc<dyn ClientCertVerifier>,
    pub(super) names: Vec<ServerName<'static>>,
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
