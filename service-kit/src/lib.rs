//! The kit every bookstore service is built from: what it takes to run a
//! service in production, written once.
//!
//! - [`cli`]: every service's command line: its settings and `healthcheck`;
//! - [`telemetry`]: log setup (text or JSON, filtered by `RUST_LOG`);
//! - [`log_limit`]: a bounded number of lines a second for what clients cause;
//! - [`metrics`]: the Prometheus registry and the RPC metric families;
//! - [`panic`]: the innermost layer, a panicking handler's answer;
//! - [`reload`]: changing what a running service serves: SIGHUP and files
//!   watched, a source reloaded only when it is whole and valid;
//! - [`limits`]: every listener's limits, declared once as settings;
//! - [`server`]: everything about serving a listener: accepting under a
//!   cap, the one connection loop, graceful close, the web (HTTP) and gRPC
//!   servers with their limits and call layers;
//! - [`files`]: reading files named by settings, regular files only, capped;
//! - [`admin`]: the admin HTTP listener (`/metrics`, `/healthz`, `/readyz`);
//! - [`runtime`]: the tokio runtime, with a worker per usable CPU by default;
//! - [`lifecycle`]: a service's life: its common settings, the SIGTERM and
//!   SIGINT signals, readiness, the run and its ordered, bounded drain;
//! - [`tls`]: PEM files and rustls configs, checked whole, kept current as
//!   their files change; certificate expiry and refused handshakes shown;
//! - [`trace`]: trace context across services, spans, OTLP export;
//! - [`observe`]: a tower layer that reports how each gRPC call ended, to
//!   the logging and metrics built on it, server and client side alike;
//! - [`grpc_wire`]: the `grpc-status` of a header map, header lookups, the
//!   code of an error;
//! - [`client`]: everything about calling a service: discovery, the replica
//!   pool, retries and their budget, the deadline, the HTTP/2 channel.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod client;
pub mod files;
pub mod grpc_wire;
pub mod lifecycle;
pub mod limits;
pub mod log_limit;
pub mod metrics;
pub mod observe;
pub mod panic;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod trace;

pub use admin::{AdminHandle, AdminServer};
pub use lifecycle::{Lifecycle, Readiness};
pub use telemetry::LogFormat;
