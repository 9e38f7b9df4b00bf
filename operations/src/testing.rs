//! Test support (feature `testing`): a throwaway PKI, made with rcgen in a
//! temp dir, so that no certificate or key is ever committed, and a raw
//! HTTP/2 client for attacks.

pub mod docs;
pub mod raw_h2;

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

pub use rcgen::ExtendedKeyUsagePurpose as Purpose;

/// A CA, and PEM files it signed, in a temp dir removed on drop.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA.
    pub fn new() -> Self {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("rcgen makes a key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("rcgen makes a CA");
        Self {
            dir: tempfile::tempdir().expect("a temp dir"),
            ca,
        }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The CA certificate, written to `ca.pem`.
    pub fn ca_file(&self) -> PathBuf {
        self.write("ca.pem", &self.ca_pem())
    }

    /// Writes `text` to `name` in the temp dir.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("a writable temp dir");
        path
    }

    /// The temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A certificate for `name` allowed `purposes`, signed by the CA: (certificate PEM, key PEM).
    pub fn issue(&self, name: &str, purposes: &[Purpose]) -> (String, String) {
        let key = KeyPair::generate().expect("rcgen makes a key");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("a valid name");
        params.extended_key_usages = purposes.to_vec();
        let cert = params.signed_by(&key, &self.ca).expect("rcgen signs");
        (cert.pem(), key.serialize_pem())
    }

    /// [`Pki::issue`], written to `name.pem` and `name.key`: (certificate file, key file).
    pub fn issue_files(&self, name: &str, purposes: &[Purpose]) -> (PathBuf, PathBuf) {
        let (cert, key) = self.issue(name, purposes);
        (
            self.write(&format!("{name}.pem"), &cert),
            self.write(&format!("{name}.key"), &key),
        )
    }
}

/// Makes a FIFO (named pipe) at `path`, as an input that would block a
/// reader forever.
pub fn make_fifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", path.display());
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}
