//! The router as one connection serves it, with every per-request bound in
//! one step: requests in flight over the listener (503 beyond), the request
//! timeout (503), and the request counted as in flight until its response
//! body ends.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{HeaderValue, Request, Response, StatusCode, header},
};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::Service;

use super::connection::Activity;
use crate::{
    metrics::http_method,
    server::{
        guarded_body::GuardedBody,
        in_flight::{InFlightLimit, Slot},
    },
};

/// The router as one connection serves it, with every per-request bound in
/// one step rather than a layer each (each `Router::layer` would box the
/// route and its future once more per request):
///
/// - the request counts as in flight for the idle timeout until its
///   response body ends;
/// - over the listener's cap on requests in flight it gets an immediate 503
///   with `Retry-After: 1` rather than a place in a queue;
/// - past the request timeout it gets a 503.
#[derive(Clone)]
pub(super) struct Bounded {
    pub(super) router: Router,
    pub(super) activity: Arc<Activity>,
    pub(super) slots: Arc<InFlightLimit>,
    pub(super) timeout: Duration,
}

impl Service<Request<hyper::body::Incoming>> for Bounded {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = BoundedFuture<<Router as Service<Request<Body>>>::Future>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<hyper::body::Incoming>) -> Self::Future {
        self.activity.request_started(request.version());
        let guard = Some(RequestGuard(self.activity.clone()));
        let method = http_method(request.method());
        match self.slots.try_take() {
            Some(slot) => BoundedFuture::Admitted {
                inner: self.router.call(request.map(Body::new)),
                // Not registered with the timer until first polled.
                timer: tokio::time::sleep(self.timeout),
                timeout: self.timeout,
                method,
                slot: Some(slot),
                guard,
            },
            None => {
                self.activity.refused(method, Duration::ZERO);
                BoundedFuture::Refused { guard }
            }
        }
    }
}

pin_project! {
    /// The response future of [`Bounded`].
    #[project = BoundedProj]
    pub(super) enum BoundedFuture<F> {
        /// Under the cap: the router's response, holding its slot.
        Admitted {
            #[pin]
            inner: F,
            #[pin]
            timer: Sleep,
            timeout: Duration,
            method: &'static str,
            slot: Option<Slot>,
            guard: Option<RequestGuard>,
        },
        /// Over the cap.
        Refused { guard: Option<RequestGuard> },
    }
}

impl<F> Future for BoundedFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (response, guard) = match self.project() {
            BoundedProj::Admitted {
                inner,
                timer,
                timeout,
                method,
                slot,
                guard,
            } => {
                let response = match inner.poll(cx) {
                    Poll::Ready(Ok(response)) => response,
                    Poll::Pending => {
                        ready!(timer.poll(cx));
                        if let Some(RequestGuard(activity)) = guard {
                            activity.refused(method, *timeout);
                        }
                        busy("The server took too long to answer this request. Please retry.\n")
                    }
                };
                drop(slot.take());
                (response, guard.take())
            }
            BoundedProj::Refused { guard } => (
                busy("The server is busy: too many requests at once. Please retry in a second.\n"),
                guard.take(),
            ),
        };
        Poll::Ready(Ok(response.map(|inner| GuardedBody::new(inner, guard))))
    }
}

/// Ends a request for [`Activity`] when dropped, however the request ended.
pub(super) struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A response body that keeps its request counted until it is dropped.
pub(super) type TrackedBody = GuardedBody<Body, RequestGuard>;

/// 503 with `Retry-After: 1` and `message`.
fn busy(message: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
