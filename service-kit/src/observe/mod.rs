//! A tower layer that reports how each gRPC call ended, in the call's span.
//!
//! A gRPC status arrives in one of three places: in the response headers
//! (a "trailers-only" error), in the trailers after the last message, or
//! nowhere, because the call failed or was dropped on the way. [`Observe`]
//! watches all three and tells its [`RpcObserver`] exactly once per call, so
//! that the logging and metrics built on it (server and client side alike)
//! never miss or double-count a call. With [`ObserveLayer::with_spans`] it
//! also makes each call's span ([`crate::trace::CallSpans`]) and enters it
//! around everything it wraps, the report of the call's end included.

mod logging;
mod metrics;
#[cfg(test)]
mod tests;

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use http::{Request, Response, uri::PathAndQuery};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tonic::Code;
use tower::{Layer, Service};
use tracing::Span;

use crate::{
    client::CallDeadline,
    grpc_wire::{BoxError, code_of_error, status_code},
    trace::CallSpans,
};

pub use logging::RpcLogger;
pub use metrics::RpcMeter;

/// A finished call, as the observer sees it.
#[derive(Debug)]
pub struct RpcEnd<'a> {
    /// The method path, `/package.Service/Method`.
    pub method: &'a str,
    /// The final status code.
    pub code: Code,
    /// From the request entering the layer until the status was known.
    pub elapsed: Duration,
    /// The remote address, when the transport knows it (server side).
    pub peer: Option<SocketAddr>,
}

/// Told about every call that passes through an [`ObserveLayer`].
pub trait RpcObserver: Clone + Send + Sync + 'static {
    /// A call has started.
    fn on_start(&self) {}
    /// A call has ended; called exactly once per started call.
    fn on_end(&self, end: &RpcEnd<'_>);
}

/// Two observers of one layer, called in order: one future and one body
/// wrapper per call, one clock, rather than a layer each.
impl<A: RpcObserver, B: RpcObserver> RpcObserver for (A, B) {
    fn on_start(&self) {
        self.0.on_start();
        self.1.on_start();
    }

    fn on_end(&self, end: &RpcEnd<'_>) {
        self.0.on_end(end);
        self.1.on_end(end);
    }
}

/// Wraps a service in [`Observe`].
#[derive(Clone, Debug)]
pub struct ObserveLayer<O> {
    /// Shared by every call: one reference count per call, rather than one
    /// for each of the observers' own shared parts.
    observer: Arc<O>,
    spans: Option<CallSpans>,
}

impl<O> ObserveLayer<O> {
    /// A layer that reports every call to `observer`.
    pub fn new(observer: O) -> Self {
        Self {
            observer: Arc::new(observer),
            spans: None,
        }
    }

    /// Each call also in a span made by `spans`, entered while the inner
    /// service runs, while the response body is polled and while the call's
    /// end is reported: the log line of the call, and any the service
    /// writes, carry its ids, and its final status is recorded on it.
    pub fn with_spans(self, spans: CallSpans) -> Self {
        Self {
            spans: Some(spans),
            ..self
        }
    }
}

impl<S, O> Layer<S> for ObserveLayer<O> {
    type Service = Observe<S, O>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            observer: self.observer.clone(),
            spans: self.spans.clone(),
        }
    }
}

/// Reports the end of each call to an [`RpcObserver`]. See the module docs.
#[derive(Clone, Debug)]
pub struct Observe<S, O> {
    inner: S,
    observer: Arc<O>,
    spans: Option<CallSpans>,
}

impl<S, O, ReqBody, ResBody> Service<Request<ReqBody>> for Observe<S, O>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
    O: RpcObserver,
{
    type Response = Response<ObservedBody<ResBody, O>>;
    type Error = BoxError;
    type Future = ObserveFuture<S::Future, O>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let span = self
            .spans
            .as_ref()
            .map_or_else(Span::none, |spans| spans.make(&mut request));
        self.observer.on_start();
        let call = Box::new(Call {
            observer: self.observer.clone(),
            // Cloning a PathAndQuery only bumps a reference count.
            method: request.uri().path_and_query().cloned(),
            peer: peer_of(&request),
            deadline: request.extensions().get::<CallDeadline>().map(|d| d.0),
            started: Instant::now(),
            span,
            ended: false,
        });
        let inner = call.span.in_scope(|| self.inner.call(request));
        ObserveFuture {
            inner,
            call: Some(call),
        }
    }
}

fn peer_of<B>(request: &Request<B>) -> Option<SocketAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .map(TlsConnectInfo::get_ref)
        })
        .and_then(TcpConnectInfo::remote_addr)
}

pin_project! {
    /// The response future of [`Observe`].
    pub struct ObserveFuture<F, O: RpcObserver> {
        #[pin]
        inner: F,
        // `Some` until the response arrives; dropping it early reports
        // CANCELLED. Boxed, as in `ObservedBody`.
        call: Option<Box<Call<O>>>,
    }
}

impl<F, O, ResBody, E> Future for ObserveFuture<F, O>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: Into<BoxError>,
    O: RpcObserver,
{
    type Output = Result<Response<ObservedBody<ResBody, O>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.call.as_ref().map(|call| call.span.enter());
            ready!(this.inner.poll(cx))
        };
        let Some(call) = this.call.take() else {
            // Polled after completion: a caller bug, but not ours to panic on.
            return Poll::Ready(
                result
                    .map(|r| r.map(ObservedBody::done))
                    .map_err(Into::into),
            );
        };
        Poll::Ready(match result {
            Ok(response) => match status_code(response.headers()) {
                // Trailers-only: the status is already known.
                Some(code) => {
                    call.end(code);
                    Ok(response.map(ObservedBody::done))
                }
                None => Ok(response.map(|inner| ObservedBody {
                    inner,
                    call: Some(call),
                })),
            },
            Err(err) => {
                let err = err.into();
                call.end(code_of_error(&*err));
                Err(err)
            }
        })
    }
}

pin_project! {
    /// A response body that reports the status found in its trailers.
    pub struct ObservedBody<B, O: RpcObserver> {
        #[pin]
        inner: B,
        // `Some` until the status is known. Boxed: the future and then the
        // body are moved many times between the service and the
        // connection's task, and a pointer is cheaper to move than the call
        // (docs/benchmarks/history.md, "What the server's layers cost per call").
        call: Option<Box<Call<O>>>,
    }
}

impl<B, O: RpcObserver> ObservedBody<B, O> {
    fn done(inner: B) -> Self {
        Self { inner, call: None }
    }
}

impl<B, O> Body for ObservedBody<B, O>
where
    B: Body,
    B::Error: Into<BoxError>,
    O: RpcObserver,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = {
            let _entered = this.call.as_ref().map(|call| call.span.enter());
            ready!(this.inner.poll_frame(cx)).map(|f| f.map_err(Into::into))
        };
        let code = match &frame {
            // A body without grpc-status in its trailers is a broken
            // response; clients treat it as UNKNOWN.
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|t| status_code(t).unwrap_or(Code::Unknown)),
            Some(Err(err)) => Some(code_of_error(&**err)),
            None => Some(Code::Unknown),
        };
        if let Some(code) = code
            && let Some(call) = this.call.take()
        {
            call.end(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One call in progress. Reports its end exactly once, in its span:
/// explicitly through [`Call::end`], or when dropped before the status was
/// known: as DEADLINE_EXCEEDED if the caller's [`CallDeadline`] had passed
/// (a timer at that instant dropped the call, possibly before the call's
/// own timer at the same instant could end it), else as CANCELLED (the
/// peer went away, or the caller gave up).
struct Call<O: RpcObserver> {
    observer: Arc<O>,
    method: Option<PathAndQuery>,
    peer: Option<SocketAddr>,
    deadline: Option<tokio::time::Instant>,
    started: Instant,
    /// `Span::none()` without [`ObserveLayer::with_spans`], or when the
    /// call needs no span.
    span: Span,
    ended: bool,
}

impl<O: RpcObserver> Call<O> {
    #[expect(
        clippy::boxed_local,
        reason = "the call stays where it is until it is freed: moving it out of its box is what boxing it saves"
    )]
    fn end(mut self: Box<Self>, code: Code) {
        self.report(code);
        self.ended = true;
    }

    fn report(&self, code: Code) {
        let _entered = self.span.enter();
        self.observer.on_end(&RpcEnd {
            method: self.method.as_ref().map_or("", PathAndQuery::path),
            code,
            elapsed: self.started.elapsed(),
            peer: self.peer,
        });
    }
}

impl<O: RpcObserver> Drop for Call<O> {
    fn drop(&mut self) {
        if !self.ended {
            let past_deadline = self
                .deadline
                .is_some_and(|deadline| tokio::time::Instant::now() >= deadline);
            self.report(if past_deadline {
                Code::DeadlineExceeded
            } else {
                Code::Cancelled
            });
        }
    }
}
