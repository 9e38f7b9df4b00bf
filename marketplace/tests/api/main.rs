//! Integration tests: pages rendered from a real recommendations server,
//! degraded mode and recovery, both binaries end to end, and one page
//! traced across both.

mod attacks;
mod balance;
mod degraded;
mod discovery;
mod end_to_end;
mod helpers;
mod otel_variables;
mod otlp;
mod otlp_http;
mod outliers;
mod pages;
mod partition;
mod replicas;
mod shutdown;
mod tls;
mod tls_rotation;
mod tracing;
mod wire;
