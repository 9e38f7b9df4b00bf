//! Error mapping, the innermost layer: failures below the handlers become
//! proper gRPC statuses, so every client and every outer layer sees a status
//! and never a broken connection. (Handler errors are typed: `crate::error`
//! maps those.)
//!
//! - A panicking handler becomes INTERNAL; the connection and the server
//!   live on.
//! - tonic's OUT_OF_RANGE for an oversized request message becomes the
//!   spec's RESOURCE_EXHAUSTED.
//!
//! Both are one layer, [`ErrorStatus`]: each layer costs every call a move
//! of its future and a level of polling. tower-http's `CatchPanic` would
//! also box every response body to fit its own body type; this one keeps
//! tonic's, so a call that does not panic costs only the unwinding guard
//! and one header lookup.

use std::{
    any::Any,
    future::Future,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::Pin,
    task::{Context, Poll},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tonic::{Code, Status};
use tower::{Layer, Service};

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
    if service_kit::rpc::status_code(response.headers()) != Some(Code::OutOfRange) {
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

/// Wraps a service in [`ErrorStatus`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorStatusLayer;

impl<S> Layer<S> for ErrorStatusLayer {
    type Service = ErrorStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorStatus { inner }
    }
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct ErrorStatus<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for ErrorStatus<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>>,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = ErrorStatusFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The inner service and its future are not used again after a
        // panic, so no broken state can be observed (hence the assertion).
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => ErrorStatusFuture::Running { future },
            Err(panic) => ErrorStatusFuture::Panicked {
                response: Some(panic_to_internal(panic)),
            },
        }
    }
}

pin_project! {
    /// The response future of [`ErrorStatus`].
    #[project = State]
    pub enum ErrorStatusFuture<F> {
        /// The handler is running.
        Running { #[pin] future: F },
        /// The handler panicked in `call`: the answer, until taken.
        Panicked { response: Option<Response<tonic::body::Body>> },
    }
}

impl<F, E> Future for ErrorStatusFuture<F>
where
    F: Future<Output = Result<Response<tonic::body::Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            State::Running { future } => catch_unwind(AssertUnwindSafe(|| future.poll(cx)))
                .unwrap_or_else(|panic| Poll::Ready(Ok(panic_to_internal(panic))))
                .map_ok(oversized_to_resource_exhausted),
            // Polled again after its answer: a caller bug, which the
            // Future contract lets us answer with Pending.
            State::Panicked { response } => response
                .take()
                .map_or(Poll::Pending, |r| Poll::Ready(Ok(r))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt as _;

    use super::*;

    fn status_of(response: &Response<tonic::body::Body>) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn a_panic_while_handling_answers_internal() {
        let service = ErrorStatusLayer.layer(tower::service_fn(|_: Request<()>| async {
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
        let service = ErrorStatusLayer.layer(tower::service_fn(
            |_: Request<()>| -> std::future::Ready<Result<Response<tonic::body::Body>, Infallible>> {
                panic!("before any future exists")
            },
        ));

        let response = service.oneshot(Request::new(())).await.expect("an answer");

        assert_eq!(status_of(&response), Some("13"));
    }

    #[tokio::test]
    async fn an_oversized_message_answers_resource_exhausted() {
        let service = ErrorStatusLayer.layer(tower::service_fn(|_: Request<()>| async {
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
        let service = ErrorStatusLayer.layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(tonic::body::Body::empty()))
        }));

        let response = service.oneshot(Request::new(())).await.expect("an answer");

        assert_eq!(status_of(&response), None);
    }
}
