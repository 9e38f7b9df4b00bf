//! Error mapping, the innermost layer: failures below the handlers become
//! proper gRPC statuses, so every client and every outer layer sees a status
//! and never a broken connection. (Handler errors are typed: each service's `error`
//! maps those.)
//!
//! - A panicking handler becomes INTERNAL; the connection and the server
//!   live on.
//! - tonic's OUT_OF_RANGE for an oversized request message becomes the
//!   spec's RESOURCE_EXHAUSTED.
//!
//! Both are one layer, [`ErrorStatusLayer`]: service-kit's
//! [`CatchPanic`](crate::panic::CatchPanic), which keeps tonic's body
//! type, with [`GrpcAnswers`]. A call that does not panic costs only the
//! unwinding guard and one header lookup.

use std::any::Any;

use crate::panic::{Answers, CatchPanicLayer};
use http::Response;
use tonic::{Code, Status};

/// The innermost layer of the server's stack (see the module docs).
pub type ErrorStatusLayer = CatchPanicLayer<GrpcAnswers>;

/// The gRPC server's answers to a panic and to an oversized message.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcAnswers;

impl Answers<tonic::body::Body> for GrpcAnswers {
    fn panicked(&self, panic: Box<dyn Any + Send>) -> Response<tonic::body::Body> {
        panic_to_internal(panic)
    }

    fn answered(&self, response: Response<tonic::body::Body>) -> Response<tonic::body::Body> {
        oversized_to_resource_exhausted(response)
    }
}

/// The response to a panicking handler: INTERNAL, with a message that leaks
/// nothing. The panic itself is logged here, once (the tutorial's
/// ErrorLogger); the connection and the server live on.
pub fn panic_to_internal(panic: Box<dyn Any + Send + 'static>) -> Response<tonic::body::Body> {
    tracing::error!(
        panic = crate::panic::message(&*panic),
        "a request handler panicked; answering INTERNAL"
    );
    Status::internal("internal error").into_http()
}

/// tonic answers a request larger than the decoding limit with OUT_OF_RANGE;
/// the gRPC spec (and every other implementation) says RESOURCE_EXHAUSTED.
pub fn oversized_to_resource_exhausted<B>(mut response: Response<B>) -> Response<B> {
    // Only trailers-only error responses carry grpc-status in their headers,
    // so the common case costs one header lookup.
    if crate::grpc_wire::status_code(response.headers()) != Some(Code::OutOfRange) {
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::Request;
    use tower::{Layer as _, ServiceExt as _};

    use super::*;

    fn status_of(response: &Response<tonic::body::Body>) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn a_panic_while_handling_answers_internal() {
        let service =
            ErrorStatusLayer::default().layer(tower::service_fn(|_: Request<()>| async {
                if true {
                    panic!("in the handler");
                }
                Ok::<_, Infallible>(Response::new(tonic::body::Body::empty()))
            }));

        let response = service.oneshot(Request::new(())).await.expect("an answer");

        assert_eq!(status_of(&response), Some("13"));
    }

    #[tokio::test]
    async fn a_panic_while_starting_the_call_answers_internal() {
        let service = ErrorStatusLayer::default().layer(tower::service_fn(
            |_: Request<()>| -> std::future::Ready<Result<Response<tonic::body::Body>, Infallible>> {
                panic!("before any future exists")
            },
        ));

        let response = service.oneshot(Request::new(())).await.expect("an answer");

        assert_eq!(status_of(&response), Some("13"));
    }

    #[tokio::test]
    async fn an_oversized_message_answers_resource_exhausted() {
        let service = ErrorStatusLayer::default().layer(tower::service_fn(|_: Request<()>| async {
            let status = Status::out_of_range(
                "Error, decoded message length too large: found 70000 bytes, the limit is: 65536 bytes",
            );
            Ok::<_, Infallible>(status.into_http())
        }));

        let response = service.oneshot(Request::new(())).await.expect("an answer");

        assert_eq!(status_of(&response), Some("8"));
        let status = Status::from_header_map(response.headers()).expect("a status");
        assert!(status.message().contains("70000 bytes"), "{status:?}");
    }

    #[tokio::test]
    async fn an_answer_passes_through_untouched() {
        let service =
            ErrorStatusLayer::default().layer(tower::service_fn(|_: Request<()>| async {
                Ok::<_, Infallible>(Response::new(tonic::body::Body::empty()))
            }));

        let response = service.oneshot(Request::new(())).await.expect("an answer");

        assert_eq!(status_of(&response), None);
    }
}
