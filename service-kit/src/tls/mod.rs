//! TLS for the gRPC hop (rustls, no OpenSSL), both sides:
//!
//! - [`ServerFiles`] and [`ClientFiles`]: the files a configuration is read
//!   from, checked whole (readable, PEM, the key matching its certificate,
//!   in date) with errors that name the file and the problem;
//! - [`ClientAuth`]: who may connect under mutual TLS, names as the
//!   tutorial's certificates carry them;
//! - [`LiveTls`]: a configuration kept current as its files change, for new
//!   handshakes;
//! - [`CertificateMetrics`]: when each certificate in use expires;
//! - [`HandshakeRefusals`]: refused handshakes, counted and logged;
//! - [`http_client`], [`https_config`]: HTTPS clients with the same TLS.

mod certificates;
mod client_auth;
mod config;
mod https;
mod live;
mod pem;
mod refusals;

pub use certificates::{Certificate, CertificateMetrics, CertificateName, Role};
pub use client_auth::ClientAuth;
pub use config::{ClientFiles, Loaded, ServerFiles, TlsFiles, server_name};
pub use https::{http_client, https_config};
pub use live::{LiveTls, SOURCE};
pub use pem::{read_certificates, read_private_key};
pub use refusals::{HandshakeRefusals, LOG_LINES_PER_SECOND, Reason};
pub use rustls_pki_types::ServerName;
