//! The certificates in use and when they expire: each is described (its
//! role, subject, serial number and not-after time) when its file is
//! loaded, one that has expired is refused, and each not-after time is a
//! gauge, so that an alert sees a certificate expiring well before any
//! call fails.

use std::{
    collections::HashSet,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{anyhow, ensure};
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};
use rustls_pki_types::CertificateDer;

/// What a certificate is used for.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Role {
    /// The server's own certificate.
    server,
    /// A CA the server trusts to sign client certificates.
    client_ca,
    /// The client's own certificate.
    client,
    /// A CA the client trusts to sign the server's certificate.
    ca,
}

/// One certificate in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// What it is, as the metrics' labels name it.
    pub name: CertificateName,
    /// Its not-after time, Unix seconds.
    pub not_after: i64,
}

/// What a certificate is: the labels of its gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateName {
    /// What it is used for.
    pub role: Role,
    /// Its subject's distinguished name, as OpenSSL prints it (`CN=...`).
    pub subject: String,
    /// Its serial number, hexadecimal.
    pub serial: String,
}

/// Describes the certificate `der` of the file `path`, used as `role`.
pub(super) fn describe(
    role: Role,
    path: &Path,
    der: &CertificateDer<'_>,
) -> anyhow::Result<Certificate> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|err| {
        anyhow!(
            "the file {} holds a certificate that cannot be read: {err}",
            path.display()
        )
    })?;
    Ok(Certificate {
        name: CertificateName {
            role,
            subject: parsed.subject().to_string(),
            serial: parsed.raw_serial_as_string().replace(':', ""),
        },
        not_after: parsed.validity().not_after.timestamp(),
    })
}

/// Refuses the file `path` whose certificates are `certificates` if a
/// certificate of its own (the first, a leaf) has expired, or if every CA
/// it holds has: neither can work. (A CA bundle may keep an expired CA
/// beside the current ones, as bundles often do.)
pub(super) fn ensure_in_date(path: &Path, certificates: &[Certificate]) -> anyhow::Result<()> {
    let now = now();
    let expired = |certificate: &Certificate| certificate.not_after < now;
    match certificates.first() {
        Some(own) if matches!(own.name.role, Role::server | Role::client) => ensure!(
            !expired(own),
            "the certificate in {} ({}) expired at {}",
            path.display(),
            own.name.subject,
            humantime::format_rfc3339_seconds(at(own.not_after)),
        ),
        _ => ensure!(
            !certificates.iter().all(expired),
            "every CA certificate in {} has expired",
            path.display()
        ),
    }
    Ok(())
}

fn now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}

fn at(unix_seconds: i64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix_seconds).unwrap_or_default())
}

/// The most certificates shown per role: CA bundles are the operator's
/// files, but a label set is bounded whatever they hold (four roles, so at
/// most 1,024 series), and a large bundle never hides another role's.
const MAX_SHOWN: usize = 256;

/// The not-after time of every certificate in use, by role, subject and
/// serial number. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct CertificateMetrics {
    not_after: Family<CertificateName, Gauge>,
    /// The labels shown, so that those no longer in use can be removed.
    shown: Arc<Mutex<HashSet<CertificateName>>>,
}

impl CertificateMetrics {
    /// Registers `{prefix}_tls_certificate_not_after_timestamp_seconds`.
    pub fn register(registry: &mut Registry, prefix: &str) -> Self {
        let metrics = Self::default();
        registry.register(
            format!("{prefix}_tls_certificate_not_after_timestamp_seconds"),
            "When each certificate in use expires (its not-after time), by role: the server's, the client's, and each CA's",
            metrics.not_after.clone(),
        );
        metrics
    }

    /// Shows `certificates` of the roles they have, in place of those of
    /// the same roles shown before (a client's reload leaves the server's
    /// certificates shown).
    pub fn show(&self, certificates: &[Certificate]) {
        let roles: HashSet<Role> = certificates.iter().map(|c| c.name.role).collect();
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        shown.retain(|name| {
            let kept = !roles.contains(&name.role);
            if !kept {
                self.not_after.remove(name);
            }
            kept
        });
        for certificate in certificates {
            let role = certificate.name.role;
            if shown.iter().filter(|name| name.role == role).count() >= MAX_SHOWN {
                continue;
            }
            self.not_after
                .get_or_create(&certificate.name)
                .set(certificate.not_after);
            shown.insert(certificate.name.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::metrics::encode;

    fn certificate(role: Role, serial: usize) -> Certificate {
        Certificate {
            name: CertificateName {
                role,
                subject: "CN=ca".to_owned(),
                serial: format!("{serial:x}"),
            },
            not_after: 4_102_444_800,
        }
    }

    fn series(registry: &Registry) -> usize {
        let text = encode(registry).expect("encodes");
        text.lines()
            .filter(|line| line.starts_with("test_tls_certificate_not_after_timestamp_seconds{"))
            .count()
    }

    #[test]
    fn a_bundle_of_many_shows_at_most_the_cap_and_a_reload_replaces_its_role_only() {
        let mut registry = Registry::default();
        let metrics = CertificateMetrics::register(&mut registry, "test");
        let mut bundle: Vec<Certificate> = (0..300).map(|n| certificate(Role::ca, n)).collect();
        bundle.insert(0, certificate(Role::client, 9999));

        metrics.show(&bundle);
        assert_eq!(
            series(&registry),
            MAX_SHOWN + 1,
            "the client's and 256 CAs: bounded whatever the files hold"
        );

        metrics.show(&[certificate(Role::server, 1)]);
        assert_eq!(series(&registry), MAX_SHOWN + 2, "the other roles stay");

        metrics.show(&[certificate(Role::client, 7), certificate(Role::ca, 8)]);
        assert_eq!(series(&registry), 3, "the old client and CAs are gone");
    }
}
