//! The Prometheus registry and the metric families of gRPC calls, shared by
//! the server side (recommendations) and the client side (marketplace)
//! ([`rpc`]), and of HTTP requests (the web listener, [`http`]).
//!
//! Names and labels follow the OpenTelemetry semantic conventions in the
//! form their Prometheus exporter gives them (dots become underscores, the
//! unit a suffix): `rpc.server.call.duration` is
//! `rpc_server_call_duration_seconds`, with `rpc_system_name`,
//! `rpc_method` and `rpc_response_status_code`, and
//! `http.server.request.duration` is `http_server_request_duration_seconds`.
//! A histogram's `_count` is the number of calls, so no counter repeats it.

mod http;
mod rpc;

use std::sync::OnceLock;

use prometheus_client::{metrics::histogram::Histogram, registry::Registry};
use tonic::Code;

pub use http::{HttpMetrics, http_method};
pub use rpc::{CallLabels, OTHER_METHOD, RpcMetrics, Side};

/// Latency buckets in seconds: from 250 µs (a cached in-process answer) to
/// 10 s (far past any deadline we set).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram with [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Encodes every metric of `registry` in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::with_capacity(4096);
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

/// A metric per gRPC status code, each made on its first use and then
/// found by the code's number: a call builds, hashes and looks up no label
/// set.
#[derive(Debug)]
pub struct ByCode<M>([OnceLock<M>; 17]);

impl<M> Default for ByCode<M> {
    fn default() -> Self {
        Self(Default::default())
    }
}

impl<M> ByCode<M> {
    /// The metric of `code`, made by `make` on its first use.
    pub fn get_or_init(&self, code: Code, make: impl FnOnce() -> M) -> &M {
        let index = usize::try_from(code as i32).unwrap_or(0) % self.0.len();
        self.0[index].get_or_init(make)
    }
}

/// The canonical name of a status code, as the gRPC spec and grpcurl spell it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
