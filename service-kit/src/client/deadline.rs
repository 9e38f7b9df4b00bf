//! The client-side deadline: every call gets one, and the server hears of it.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use http::{HeaderName, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tonic::{Code, Status};
use tower::{Layer, Service};

use crate::grpc_wire::{BoxError, status_code};

/// The `grpc-timeout` header, parsed once.
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Gives every call a deadline: sends it as `grpc-timeout` (so the server
/// stops working on a call nobody waits for any more) unless the caller set
/// its own, and fails the call with DEADLINE_EXCEEDED when the answer has
/// not arrived in time: its headers, or the rest of its body (a unary
/// call's message and trailers, or a stream), on one timer.
///
/// The deadline is `timeout` from the call, or the caller's [`CallDeadline`]
/// when the request carries one: a caller that bounds several attempts by
/// one deadline hands it down, so that this timer, not the caller's, ends
/// an attempt that runs out of time, and the attempt is observed as
/// DEADLINE_EXCEEDED rather than dropped (CANCELLED).
#[derive(Clone, Copy, Debug)]
pub struct DeadlineLayer {
    timeout: Duration,
}

impl DeadlineLayer {
    /// A deadline of `timeout` per call.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            timeout: self.timeout,
            header: grpc_timeout(self.timeout),
        }
    }
}

/// An absolute deadline for one call, set in the request's extensions
/// (`tonic::Request::extensions_mut`) by a caller that has its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallDeadline(pub Instant);

/// See [`DeadlineLayer`].
#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
    timeout: Duration,
    header: HeaderValue,
}

/// `grpc-timeout` in milliseconds ("1000m"), rounded up so that a deadline
/// is never announced shorter than it is.
fn grpc_timeout(timeout: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("{}m", timeout_millis(timeout)))
        .unwrap_or(HeaderValue::from_static("99999999m"))
}

/// The milliseconds [`grpc_timeout`] announces for `timeout`.
fn timeout_millis(timeout: Duration) -> u128 {
    timeout.as_nanos().div_ceil(1_000_000).clamp(1, 99_999_999)
}

impl<S> Deadline<S> {
    /// The `grpc-timeout` of a call with `left` to its deadline. A first
    /// attempt's deadline is the layer's timeout from now, which rounds up
    /// to the layer's own header: that is shared, not formatted anew.
    fn header_for(&self, left: Duration) -> HeaderValue {
        if timeout_millis(left) == timeout_millis(self.timeout) {
            self.header.clone()
        } else {
            grpc_timeout(left)
        }
    }
}

impl<S, B, RB> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<DeadlineBody<RB>>;
    type Error = BoxError;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let (sleep, header) = match request.extensions().get::<CallDeadline>() {
            Some(&CallDeadline(at)) => (
                tokio::time::sleep_until(at),
                self.header_for(at.saturating_duration_since(Instant::now())),
            ),
            None => (tokio::time::sleep(self.timeout), self.header.clone()),
        };
        // A caller's own header (Request::set_timeout) wins on the wire; the
        // timer above still bounds the wait here.
        request.headers_mut().entry(GRPC_TIMEOUT).or_insert(header);
        DeadlineFuture {
            inner: self.inner.call(request),
            sleep: Some(Box::pin(sleep)),
            timeout: self.timeout,
        }
    }
}

pin_project! {
    /// The response future of [`Deadline`].
    pub struct DeadlineFuture<F> {
        #[pin]
        inner: F,
        // Boxed so that the timer, once registered, goes on with the
        // response's body rather than a second one being made for it.
        // `None` once the future is done.
        sleep: Option<Pin<Box<Sleep>>>,
        timeout: Duration,
    }
}

impl<F, RB, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<DeadlineBody<RB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let sleep = this
            .sleep
            .as_mut()
            .expect("DeadlineFuture polled after it completed");
        if let Poll::Ready(result) = this.inner.poll(cx) {
            // The server ends a call at the `grpc-timeout` it was sent, with
            // CANCELLED from some (tonic's "Timeout expired"); when that
            // answer wins the race with the timer here, it is this call's
            // deadline all the same, and says so.
            let cancelled_late = matches!(&result, Ok(response)
                if status_code(response.headers()) == Some(Code::Cancelled)
                    && Instant::now() >= sleep.deadline());
            if !cancelled_late {
                let timeout = *this.timeout;
                let sleep = this.sleep.take();
                return Poll::Ready(result.map_err(Into::into).map(|response| {
                    response.map(|inner| DeadlineBody {
                        inner,
                        sleep,
                        timeout,
                    })
                }));
            }
        } else {
            ready!(sleep.as_mut().poll(cx));
        }
        *this.sleep = None;
        Poll::Ready(Err(Box::new(deadline_exceeded(*this.timeout))))
    }
}

pin_project! {
    /// The response body of [`Deadline`]: fails with DEADLINE_EXCEEDED
    /// when the rest of the answer has not come by the call's deadline.
    #[derive(Debug)]
    pub struct DeadlineBody<B> {
        #[pin]
        inner: B,
        // The call's timer; `None` once it has rung.
        sleep: Option<Pin<Box<Sleep>>>,
        timeout: Duration,
    }
}

impl<B> DeadlineBody<B> {
    /// The body within.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(sleep) = this.sleep.as_mut() else {
            // The deadline was said; the body ends with it.
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        ready!(sleep.as_mut().poll(cx));
        *this.sleep = None;
        Poll::Ready(Some(Err(Box::new(deadline_exceeded(*this.timeout)))))
    }

    fn is_end_stream(&self) -> bool {
        self.sleep.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The status of a call that had no answer within its deadline.
pub(crate) fn deadline_exceeded(timeout: Duration) -> Status {
    Status::deadline_exceeded(format!("no answer within the {timeout:?} deadline"))
}

#[cfg(test)]
mod tests;
