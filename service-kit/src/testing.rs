//! Test support (feature `testing`), shared by every crate's tests:
//!
//! - [`Running`]: a service's real application on a task, stopped as
//!   SIGTERM stops it; [`Process`]: its binary as a child process;
//! - [`files`]: catalogs, hosts files and FIFOs for the services to read;
//!   [`ProjectedDir`]: files swapped whole, as the kubelet swaps a Secret's;
//! - [`free_addr`]: a free port to bind later;
//! - [`Pki`]: a throwaway PKI, made with rcgen in a temp dir, so that no
//!   certificate or key is ever committed;
//! - [`raw_h2`]: a raw HTTP/2 client for attacks; [`tls_probe`]: a bare
//!   TLS client, to see the certificate a server presents;
//! - [`docs`]: documentation generated from the code, checked.

pub mod docs;
pub mod files;
pub mod ports;
pub mod process;
pub mod projected;
pub mod raw_h2;
pub mod running;
pub mod tls_probe;

use std::path::{Path, PathBuf};

pub use files::{HostsFile, csv_catalog, make_fifo, numbered_catalog, write_hosts};
pub use ports::{free_addr, try_free_addr};
pub use process::Process;
pub use projected::ProjectedDir;
pub use running::Running;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

pub use rcgen::ExtendedKeyUsagePurpose as Purpose;

/// A CA, and PEM files it signed, in a temp dir removed on drop.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA, named apart from every other (as two real CAs are, so
    /// that a certificate of another is refused as of an unknown issuer).
    pub fn new() -> Self {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let name = format!("bookstore test CA {:016x}", rand::random::<u64>());
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
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

    /// A certificate whose subject's common name is `name`, with the DNS
    /// subject alternative names `alt_names` (none: as the tutorial makes
    /// its client's, `openssl req -subj /CN=name` signed with no
    /// extensions) and no extended key usage. (certificate PEM, key PEM)
    pub fn issue_common_name(&self, name: &str, alt_names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("rcgen makes a key");
        let alt_names: Vec<String> = alt_names.iter().map(|alt| (*alt).to_owned()).collect();
        let mut params = CertificateParams::new(alt_names).expect("valid names");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.ca).expect("rcgen signs");
        (cert.pem(), key.serialize_pem())
    }

    /// A certificate for `name` allowed `purposes`, signed by the CA, that
    /// expired on 1 January 2020. (certificate PEM, key PEM)
    pub fn issue_expired(&self, name: &str, purposes: &[Purpose]) -> (String, String) {
        let key = KeyPair::generate().expect("rcgen makes a key");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("a valid name");
        params.extended_key_usages = purposes.to_vec();
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
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

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

/// A GET of `url` with the kit's HTTP client (see [`crate::tls::http_client`]).
pub async fn http_get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    crate::tls::http_client()
        .expect("an HTTP client")
        .get(url)
        .send()
        .await
}
