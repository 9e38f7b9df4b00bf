//! The logging observer: one tracing event per gRPC call.

use std::sync::Arc;

use tonic::Code;
use tracing::Level;

use super::{RpcEnd, RpcObserver};
use crate::{
    log_limit::LogLimiter,
    metrics::{Side, code_name},
};

/// Logs one event per call with its method, status code, latency and peer,
/// and records the status on the call's span (see [`crate::trace`]).
///
/// The level follows the outcome, so that the default `info` filter keeps
/// the log about what needs attention while `RUST_LOG=debug` shows every
/// call: OK at DEBUG; errors a caller caused (bad argument, not found,
/// cancelled, ...) at INFO; errors of this side or its dependencies
/// (unavailable, deadline exceeded, resource exhausted) at WARN; bugs
/// (internal, unknown, data loss) at ERROR. A server's own refusals
/// (RESOURCE_EXHAUSTED) are at DEBUG: under overload a line per refused call
/// would cost more than the refusal, so the admission layer says so once a
/// second instead, with a count.
///
/// Lines above DEBUG are limited to a few a second at each level (see
/// [`crate::log_limit`]): beyond that they are written at DEBUG, and the
/// next line let through counts them in `held_back`.
#[derive(Clone, Debug)]
pub struct RpcLogger {
    side: Side,
    limiter: Arc<LogLimiter>,
}

impl RpcLogger {
    /// Logs the calls of one side (`rpc.side` field of every event).
    pub fn new(side: Side) -> Self {
        Self {
            side,
            limiter: Arc::default(),
        }
    }
}

impl RpcObserver for RpcLogger {
    fn on_end(&self, end: &RpcEnd<'_>) {
        let side = self.side.as_str();
        let code = code_name(end.code);
        record_on_span(self.side, end.code, code);
        let latency_ms = end.elapsed.as_secs_f64() * 1e3;
        let peer = end.peer.map(tracing::field::display);
        let wanted = match end.code {
            Code::Ok => Level::DEBUG,
            Code::ResourceExhausted if matches!(self.side, Side::Server) => Level::DEBUG,
            Code::Internal | Code::Unknown | Code::DataLoss => Level::ERROR,
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted => Level::WARN,
            _ => Level::INFO,
        };
        let (level, held_back) = self.limiter.level(wanted);
        crate::event_at!(
            level,
            rpc.side = side,
            method = end.method,
            code,
            latency_ms,
            peer,
            held_back,
            "gRPC call finished"
        );
    }
}

/// Records the call's final status on its span, the current one (a no-op
/// when there is none, or it is not a call's): `rpc.response.status_code`,
/// and, for what the gRPC conventions count as errors (any status but OK
/// on a client; on a server only those that are the server's fault), the
/// span's error status and `error.type`.
fn record_on_span(side: Side, code: Code, name: &'static str) {
    let span = tracing::Span::current();
    if span.is_none() {
        return;
    }
    span.record("rpc.response.status_code", name);
    let error = match side {
        Side::Client => code != Code::Ok,
        Side::Server => matches!(
            code,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        ),
    };
    if error {
        span.record("otel.status_code", "error");
        span.record("error.type", name);
    }
}
