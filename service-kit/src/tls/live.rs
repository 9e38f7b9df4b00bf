//! TLS whose files change under the running service: the configuration is
//! a [`Live`] value that each new handshake reads, reloaded from its files
//! on SIGHUP and when they change on disk ([`crate::reload`]); open
//! connections keep the material they were made with until their maximum
//! age. A bad change (a file unreadable, not PEM, a key that does not match
//! its certificate, a certificate expired) keeps what is served, and is
//! logged and counted by the reload.

use std::{sync::Arc, time::Duration};

use super::{CertificateMetrics, TlsFiles};
use crate::reload::{self, Hangups, Live, ReloadMetrics, Source, Watching};

/// The reload source name of the TLS files, in logs and metrics.
pub const SOURCE: &str = "tls";

/// A TLS configuration read from its files and kept current.
pub struct LiveTls<F: TlsFiles> {
    config: Live<F::Config>,
    files: Arc<F>,
    certificates: CertificateMetrics,
}

impl<F: TlsFiles> std::fmt::Debug for LiveTls<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTls")
            .field("paths", &self.files.paths())
            .finish_non_exhaustive()
    }
}

impl<F: TlsFiles> LiveTls<F> {
    /// Loads `files`, failing with an error that names the file and the
    /// problem, and shows their certificates in `certificates`.
    pub fn load(files: F, certificates: CertificateMetrics) -> anyhow::Result<Self> {
        let loaded = files.load()?;
        certificates.show(&loaded.certificates);
        Ok(Self {
            config: Live::new(loaded.config),
            files: Arc::new(files),
            certificates,
        })
    }

    /// The configuration, which each new connection reads.
    pub fn config(&self) -> Live<F::Config> {
        self.config.clone()
    }

    /// Keeps the configuration current: reloaded on each SIGHUP of
    /// `hangups` and, checked every `interval`, when a file changes; counted
    /// in `reloads` as the source `tls`. Runs until the returned
    /// [`Watching`] is dropped; must be called within the runtime.
    pub fn watch(&self, interval: Duration, hangups: Hangups, reloads: ReloadMetrics) -> Watching {
        let files = self.files.clone();
        let source = Source {
            name: SOURCE,
            paths: files.paths(),
            load: Arc::new(move || files.load()),
        };
        let (config, certificates) = (self.config.clone(), self.certificates.clone());
        reload::watch(source, interval, hangups, reloads, move |loaded| {
            certificates.show(&loaded.certificates);
            config.replace(loaded.config);
        })
    }
}
