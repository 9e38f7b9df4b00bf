//! The kit every bookstore service is built from: what it takes to run a
//! service in production, written once.
//!
//! - [`cli`]: every service's command line: its settings and `healthcheck`;
//! - [`telemetry`]: log setup (text or JSON, filtered by `RUST_LOG`);
//! - [`log_limit`]: a bounded number of lines a second for what clients cause;
//! - [`metrics`]: the Prometheus registry and the RPC metric families;
//! - [`panic`]: the innermost layer, a panicking handler's answer;
//! - [`limits`]: every listener's limits, declared once as settings;
//! - [`server`]: everything about serving a listener: accepting under a
//!   cap, the one connection loop, graceful close, the web (HTTP) and gRPC
//!   servers with their limits and call layers;
//! - [`files`]: reading files named by settings, regular files only, capped;
//! - [`admin`]: the admin HTTP listener (`/metrics`, `/healthz`, `/readyz`);
//! - [`runtime`]: the tokio runtime, with a worker per usable CPU by default;
//! - [`shutdown`]: the SIGTERM/SIGINT signal and the bounded drain;
//! - [`service`]: the skeleton of every service: common settings, the admin
//!   listener and readiness, the run and its ordered drain;
//! - [`tls`]: PEM files and tonic's TLS configs, checked at start;
//! - [`trace`]: trace context across services, spans, OTLP export;
//! - [`rpc`]: a tower layer that reports how each gRPC call ended, used by
//!   the logging and metrics layers on both the server and the client side;
//! - [`client`]: everything about calling a service: discovery, the replica
//!   pool, retries and their budget, the deadline, the HTTP/2 channel.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod client;
pub mod files;
pub mod limits;
pub mod log_limit;
pub mod metrics;
pub mod panic;
pub mod rpc;
pub mod runtime;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod trace;

pub use admin::{AdminHandle, AdminServer, Readiness};
pub use telemetry::LogFormat;
