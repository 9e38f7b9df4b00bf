//! Refused TLS handshakes, made visible: each is counted by its reason, a
//! bounded set, and logged at WARN with the peer and the reason, at most
//! [`LOG_LINES_PER_SECOND`] lines a second ([`LineBudget`]), so that a
//! flood of bad clients cannot flood the log: the rest go to DEBUG, and the
//! next WARN line says how many were held back (`held_back`). A client that
//! closes before its handshake (a TCP probe) is counted but logged only at
//! DEBUG.

use std::{io, net::SocketAddr, sync::Arc};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use rustls::CertificateError;

use crate::log_limit::LineBudget;

/// Why a handshake was refused.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Reason {
    /// The client's certificate is not signed by a CA the server trusts.
    unknown_ca,
    /// The client's certificate has expired.
    expired,
    /// The client's certificate is not valid yet.
    not_yet_valid,
    /// The client's certificate is not meant for client authentication
    /// (a server's certificate, say).
    wrong_purpose,
    /// The client's certificate carries none of the allowed names.
    name_not_allowed,
    /// The client sent no certificate, under mutual TLS.
    no_client_certificate,
    /// The client's certificate is otherwise unusable (bad signature,
    /// encoding, revoked).
    bad_certificate,
    /// The client refused the server's certificate (it sent an alert:
    /// it trusts another CA, or expects another name).
    refused_by_client,
    /// The client sent what is not TLS, or broken TLS (plaintext gRPC to
    /// a TLS port, say).
    malformed,
    /// The client and the server share no protocol version, cipher suite
    /// or application protocol.
    incompatible,
    /// The handshake did not finish within the time limit.
    timeout,
    /// The client closed the connection before the handshake ended.
    closed,
    /// Any other failure.
    other,
}

impl Reason {
    /// The reason of the handshake error `err`.
    pub fn of(err: &io::Error) -> Self {
        use rustls::Error as E;
        let Some(tls) = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return match err.kind() {
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe => Self::closed,
                _ => Self::other,
            };
        };
        match tls {
            E::InvalidCertificate(certificate) => Self::of_certificate(certificate),
            E::NoCertificatesPresented => Self::no_client_certificate,
            E::AlertReceived(_) => Self::refused_by_client,
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerMisbehaved(_)
            | E::PeerSentOversizedRecord
            | E::DecryptError => Self::malformed,
            E::PeerIncompatible(_) | E::NoApplicationProtocol => Self::incompatible,
            _ => Self::other,
        }
    }

    fn of_certificate(error: &CertificateError) -> Self {
        use CertificateError as C;
        match error {
            C::UnknownIssuer => Self::unknown_ca,
            C::Expired | C::ExpiredContext { .. } => Self::expired,
            C::NotValidYet | C::NotValidYetContext { .. } => Self::not_yet_valid,
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => Self::wrong_purpose,
            C::NotValidForName | C::NotValidForNameContext { .. } => Self::name_not_allowed,
            _ => Self::bad_certificate,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: Reason,
}

/// The most WARN lines about refused handshakes in a second.
pub const LOG_LINES_PER_SECOND: u32 = 5;

/// The refused handshakes of one listener. Cloning shares them.
#[derive(Clone, Debug)]
pub struct HandshakeRefusals {
    counts: Family<ReasonLabel, Counter>,
    log: Arc<LineBudget>,
}

impl Default for HandshakeRefusals {
    fn default() -> Self {
        Self {
            counts: Family::default(),
            log: Arc::new(LineBudget::new(LOG_LINES_PER_SECOND)),
        }
    }
}

impl HandshakeRefusals {
    /// Registers `{prefix}_tls_handshake_refusals` (a counter: `_total`).
    pub fn register(registry: &mut Registry, prefix: &str) -> Self {
        let refusals = Self::default();
        registry.register(
            format!("{prefix}_tls_handshake_refusals"),
            "TLS handshakes refused, by reason",
            refusals.counts.clone(),
        );
        refusals
    }

    /// The handshake from `peer` was refused for `reason`; `cause` is the
    /// error as it came.
    pub fn refused(&self, peer: SocketAddr, reason: Reason, cause: &dyn std::fmt::Display) {
        self.counts.get_or_create(&ReasonLabel { reason }).inc();
        let held_back = match reason {
            Reason::closed => None,
            _ => self.log.take(),
        };
        match held_back {
            Some(held_back) => {
                tracing::warn!(%peer, ?reason, %cause, held_back, "TLS handshake refused");
            }
            None => tracing::debug!(%peer, ?reason, %cause, "TLS handshake refused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_come_from_rustls_errors_and_closed_sockets() {
        let tls = |error: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, error);
        let certificate = |error| tls(rustls::Error::InvalidCertificate(error));

        assert_eq!(
            Reason::of(&certificate(CertificateError::UnknownIssuer)),
            Reason::unknown_ca
        );
        assert_eq!(
            Reason::of(&certificate(CertificateError::NotValidForName)),
            Reason::name_not_allowed
        );
        assert_eq!(
            Reason::of(&tls(rustls::Error::NoCertificatesPresented)),
            Reason::no_client_certificate
        );
        assert_eq!(
            Reason::of(&io::ErrorKind::UnexpectedEof.into()),
            Reason::closed
        );
    }
}
