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

use super::{BoxError, status_code};

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

fn deadline_exceeded(timeout: Duration) -> Status {
    Status::deadline_exceeded(format!("no response within the {timeout:?} deadline"))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::BodyExt as _;

    use super::*;

    #[test]
    fn grpc_timeout_is_announced_in_milliseconds_rounded_up() {
        assert_eq!(grpc_timeout(Duration::from_secs(1)), "1000m");
        assert_eq!(grpc_timeout(Duration::from_micros(1500)), "2m");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_without_an_answer_fails_with_deadline_exceeded() {
        let service = tower::service_fn(|_request: Request<()>| {
            std::future::pending::<Result<Response<()>, BoxError>>()
        });
        let mut service = DeadlineLayer::new(Duration::from_millis(100)).layer(service);

        let error = service.call(Request::new(())).await.expect_err("times out");

        let status = error.downcast_ref::<Status>().expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    }

    /// A body that sends `first` and then nothing, ever.
    struct Stalls {
        first: Option<Bytes>,
    }

    impl Body for Stalls {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            match self.first.take() {
                Some(first) => Poll::Ready(Some(Ok(Frame::data(first)))),
                None => Poll::Pending,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_whose_body_stalls_ends_at_the_deadline() {
        let service = tower::service_fn(|_request: Request<()>| async {
            Ok::<_, BoxError>(Response::new(Stalls {
                first: Some(Bytes::from_static(b"part of a message")),
            }))
        });
        let mut service = DeadlineLayer::new(Duration::from_millis(100)).layer(service);
        let started = Instant::now();

        let response = service
            .call(Request::new(()))
            .await
            .expect("headers in time");
        let mut body = response.into_body();
        let first = body.frame().await.expect("a frame").expect("data");
        let error = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("ended by the deadline, not this test's timeout")
            .expect("the end")
            .expect_err("past the deadline");
        let after = body.frame().await;

        assert_eq!(
            first.into_data().ok(),
            Some(Bytes::from_static(b"part of a message"))
        );
        let status = error.downcast_ref::<Status>().expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        assert!(after.is_none(), "the body ends with the deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn a_callers_deadline_replaces_the_timeout_on_the_wire_and_here() {
        let service = tower::service_fn(|request: Request<()>| {
            let sent = request.headers().get("grpc-timeout").cloned();
            async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok::<_, BoxError>(Response::new(sent))
            }
        });
        let mut service = DeadlineLayer::new(Duration::from_secs(1)).layer(service);
        let mut request = Request::new(());
        let deadline = Instant::now() + Duration::from_millis(150);
        request.extensions_mut().insert(CallDeadline(deadline));
        let outer = tokio::time::sleep_until(deadline);
        tokio::pin!(outer);

        // The caller waits on the same instant, as Recommendations::call does:
        // the attempt, polled first, must end itself with DEADLINE_EXCEEDED.
        let call = service.call(request);
        let error = tokio::select! {
            biased;
            result = call => result.expect_err("times out"),
            () = &mut outer => panic!("the caller's timer fired before the attempt's"),
        };

        let status = error.downcast_ref::<Status>().expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(CallDeadline(Instant::now() + Duration::from_millis(400)));
        let sent = service.call(request).await.expect("answers in time");
        assert_eq!(
            sent.into_body().into_inner(),
            Some(HeaderValue::from_static("400m"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_callers_deadline_is_announced_in_milliseconds_rounded_up() {
        let echo = tower::service_fn(|request: Request<()>| async move {
            Ok::<_, BoxError>(Response::new(
                request.headers().get("grpc-timeout").cloned(),
            ))
        });
        let mut service = DeadlineLayer::new(Duration::from_secs(1)).layer(echo);

        let mut announced = Vec::new();
        for left in [
            Duration::from_secs(1),
            Duration::from_micros(999_500),
            Duration::from_micros(1_000_001),
            Duration::from_micros(1),
        ] {
            let mut request = Request::new(());
            request
                .extensions_mut()
                .insert(CallDeadline(Instant::now() + left));
            let sent = service.call(request).await.expect("ok");
            announced.push(sent.into_body().into_inner());
        }

        let expected = ["1000m", "1000m", "1001m", "1m"].map(|v| Some(HeaderValue::from_static(v)));
        assert_eq!(announced, expected);
    }

    #[tokio::test]
    async fn the_deadline_is_sent_unless_the_caller_set_one() {
        let echo = tower::service_fn(|request: Request<()>| async move {
            Ok::<_, BoxError>(Response::new(
                request.headers().get("grpc-timeout").cloned(),
            ))
        });
        let mut service = DeadlineLayer::new(Duration::from_secs(1)).layer(echo);
        let mut own = Request::new(());
        own.headers_mut()
            .insert("grpc-timeout", HeaderValue::from_static("50m"));

        let sent = service
            .call(Request::new(()))
            .await
            .expect("ok")
            .into_body()
            .into_inner();
        let kept = service
            .call(own)
            .await
            .expect("ok")
            .into_body()
            .into_inner();

        assert_eq!(sent, Some(HeaderValue::from_static("1000m")));
        assert_eq!(kept, Some(HeaderValue::from_static("50m")));
    }

    /// A server that ends the call at its `grpc-timeout` with CANCELLED,
    /// at this call's deadline or after it (`late`), or before it.
    fn cancelling_at(
        deadline: Instant,
        late: bool,
    ) -> impl Service<Request<()>, Response = Response<()>, Error = BoxError, Future: Send> {
        tower::service_fn(move |_request: Request<()>| async move {
            let at = if late {
                deadline
            } else {
                deadline - Duration::from_millis(10)
            };
            tokio::time::sleep_until(at).await;
            let mut response = Response::new(());
            response
                .headers_mut()
                .insert("grpc-status", HeaderValue::from(Code::Cancelled as i32));
            Ok::<_, BoxError>(response)
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_cancelling_at_the_deadline_is_the_deadline_exceeded() {
        let deadline = Instant::now() + Duration::from_millis(100);
        let mut request = Request::new(());
        request.extensions_mut().insert(CallDeadline(deadline));
        let mut service =
            DeadlineLayer::new(Duration::from_secs(1)).layer(cancelling_at(deadline, true));

        // Both timers fire at the same instant; the answer is polled first.
        let error = service.call(request).await.expect_err("past the deadline");

        let status = error.downcast_ref::<Status>().expect("a gRPC status");
        assert_eq!(status.code(), Code::DeadlineExceeded);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_cancelling_before_the_deadline_is_passed_on() {
        let deadline = Instant::now() + Duration::from_millis(100);
        let mut request = Request::new(());
        request.extensions_mut().insert(CallDeadline(deadline));
        let mut service =
            DeadlineLayer::new(Duration::from_secs(1)).layer(cancelling_at(deadline, false));

        let response = service.call(request).await.expect("the server's answer");

        assert_eq!(status_code(response.headers()), Some(Code::Cancelled));
    }
}
