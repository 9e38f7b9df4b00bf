//! Admission: the global bound on calls in flight. A call takes a slot when
//! it arrives and gives it back when its whole response has been sent (its
//! body dropped), not when the handler returns: a client that stops reading
//! its responses keeps its calls counted. Over the bound the call is refused
//! at once with RESOURCE_EXHAUSTED, never queued.
//!
//! Health checks draw on a limit of their own, so that probes answer while
//! the data-plane calls are saturated or under attack.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tonic::Status;
use tower::{Layer, Service};

use crate::{
    log_limit::LineBudget,
    server::{
        guarded_body::GuardedBody,
        in_flight::{InFlightLimit, Slot},
    },
};

/// The path prefix of gRPC health's methods.
const HEALTH: &str = "/grpc.health.v1.Health/";

/// Wraps a service in [`Admission`].
#[derive(Clone, Debug)]
pub struct AdmissionLayer {
    limits: Arc<Limits>,
}

#[derive(Debug)]
struct Limits {
    calls: Arc<InFlightLimit>,
    health: Arc<InFlightLimit>,
    refusals: RefusalLog,
}

impl AdmissionLayer {
    /// At most `calls` data-plane calls and `health` health checks in flight.
    pub fn new(calls: usize, health: usize) -> Self {
        Self {
            limits: Arc::new(Limits {
                calls: InFlightLimit::new(calls),
                health: InFlightLimit::new(health),
                refusals: RefusalLog::new(),
            }),
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            limits: self.limits.clone(),
        }
    }
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct Admission<S> {
    inner: S,
    limits: Arc<Limits>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Admission<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<AdmittedBody<ResBody>>;
    type Error = S::Error;
    type Future = AdmissionFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let limit = if request.uri().path().starts_with(HEALTH) {
            &self.limits.health
        } else {
            &self.limits.calls
        };
        match limit.try_take() {
            Some(slot) => AdmissionFuture {
                inner: Some(self.inner.call(request)),
                slot: Some(slot),
            },
            None => {
                self.limits.refusals.refused();
                AdmissionFuture {
                    inner: None,
                    slot: None,
                }
            }
        }
    }
}

pin_project! {
    /// The response future of [`Admission`].
    pub struct AdmissionFuture<F> {
        // `None` for a refused call.
        #[pin]
        inner: Option<F>,
        slot: Option<Slot>,
    }
}

impl<F, ResBody, E> std::future::Future for AdmissionFuture<F>
where
    F: std::future::Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Default,
{
    type Output = Result<Response<AdmittedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            let refused = Status::resource_exhausted(
                "the server has too many calls in flight; retry with backoff",
            )
            .into_http::<ResBody>();
            return Poll::Ready(Ok(refused.map(|inner| GuardedBody::new(inner, None))));
        };
        let response = ready!(inner.poll(cx))?;
        let slot = this.slot.take();
        Poll::Ready(Ok(response.map(|inner| GuardedBody::new(inner, slot))))
    }
}

/// A response body that holds its call's slot until it is dropped.
pub type AdmittedBody<B> = GuardedBody<B, Slot>;

/// Says in the log that calls are being refused, at most once a second and
/// with how many, rather than once per call: under overload, a line per
/// refusal would cost more than the refusals themselves. (Each refusal is
/// still counted in the RPC metrics, code RESOURCE_EXHAUSTED.)
#[derive(Debug)]
struct RefusalLog(LineBudget);

impl RefusalLog {
    fn new() -> Self {
        Self(LineBudget::new(1))
    }

    fn refused(&self) {
        if let Some(held_back) = self.0.take() {
            tracing::warn!(
                refused = held_back + 1,
                "calls refused: too many in flight (see --concurrency-limit)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tonic::body::Body as TonicBody;
    use tower::ServiceExt as _;

    use super::*;

    fn echo()
    -> impl Service<
        Request<()>,
        Response = Response<TonicBody>,
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        tower::service_fn(|_: Request<()>| async { Ok(Response::new(TonicBody::empty())) })
    }

    fn call(path: &str) -> Request<()> {
        Request::builder()
            .uri(path)
            .body(())
            .expect("a valid request")
    }

    fn code<B>(response: &Response<B>) -> Option<tonic::Code> {
        crate::grpc_wire::status_code(response.headers())
    }

    #[tokio::test]
    async fn a_slot_is_held_until_the_response_body_is_dropped() {
        let layer = AdmissionLayer::new(1, 1);
        let service = layer.layer(echo());

        let first = service.clone().oneshot(call("/bookstore/Recommend")).await;
        let first = first.expect("admitted");
        let refused = service
            .clone()
            .oneshot(call("/bookstore/Recommend"))
            .await
            .expect("answered");

        assert_eq!(code(&first), None, "the first call goes through");
        assert_eq!(code(&refused), Some(tonic::Code::ResourceExhausted));
        drop(first);
        let again = service
            .clone()
            .oneshot(call("/bookstore/Recommend"))
            .await
            .expect("admitted");
        assert_eq!(code(&again), None, "the slot came back with the body");
    }

    #[tokio::test]
    async fn health_checks_have_a_pool_of_their_own() {
        let layer = AdmissionLayer::new(1, 1);
        let service = layer.layer(echo());
        let _busy = service
            .clone()
            .oneshot(call("/bookstore/Recommend"))
            .await
            .expect("admitted");

        let health = service
            .clone()
            .oneshot(call("/grpc.health.v1.Health/Check"))
            .await
            .expect("answered");

        assert_eq!(code(&health), None);
    }
}
