//! Reading PEM files: certificates, private keys and trust anchors, with
//! errors that name the file and the problem.

use std::path::Path;

use anyhow::{Context, anyhow, ensure};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

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
pub(super) fn certificate_chain(
    path: &Path,
    what: &str,
) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(&read_certificates(path, what)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| anyhow!("the {what} file {} is not valid PEM: {err}", path.display()))
}

/// The private key of a PEM file.
pub(super) fn private_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(&read_private_key(path)?).map_err(|err| {
        anyhow!(
            "the TLS private key file {} is not valid PEM: {err}",
            path.display()
        )
    })
}

/// The certificates `chain` of the file `path` as trust anchors; `what`
/// names it in errors.
pub(super) fn root_store(
    path: &Path,
    what: &str,
    chain: &[CertificateDer<'static>],
) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for der in chain.iter().cloned() {
        roots.add(der).with_context(|| {
            format!(
                "the {what} file {} holds an unusable certificate",
                path.display()
            )
        })?;
    }
    Ok(roots)
}
