//! Error mapping: failures below the handlers become proper gRPC statuses,
//! so every client and every outer layer sees a status and never a broken
//! connection. (Handler errors are typed: `crate::error` maps those.)

use std::any::Any;

use http::Response;
use tonic::{Code, Status};

/// The response to a panicking handler: INTERNAL, with a message that leaks
/// nothing. The panic itself is logged here, once (the tutorial's
/// ErrorLogger); the connection and the server live on.
pub fn panic_to_internal(panic: Box<dyn Any + Send + 'static>) -> Response<tonic::body::Body> {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic payload");
    tracing::error!(
        panic = message,
        "a request handler panicked; answering INTERNAL"
    );
    Status::internal("internal error").into_http()
}

/// tonic answers a request larger than the decoding limit with OUT_OF_RANGE;
/// the gRPC spec (and every other implementation) says RESOURCE_EXHAUSTED.
pub fn oversized_to_resource_exhausted<B>(mut response: Response<B>) -> Response<B> {
    // Only trailers-only error responses carry grpc-status in their headers,
    // so the common case costs one header lookup.
    if operations::rpc::status_code(response.headers()) != Some(Code::OutOfRange) {
        return response;
    }
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    if status
        .message()
        .starts_with("Error, decoded message length too large")
    {
        let replacement = Status::resource_exhausted(status.message());
        if let Err(err) = replacement.add_header(response.headers_mut()) {
            tracing::warn!(cause = %err, "cannot rewrite an oversized-message status");
        }
    }
    response
}
