//! The time limits on a call on the server:
//!
//! - the request message must have arrived within `request_timeout` of the
//!   call's start: a client that opens a call and then sends its message
//!   slowly, or never, holds a call slot for nothing;
//! - the whole call must end within its client's deadline (`grpc-timeout`)
//!   or `max_call_duration`, whichever is shorter: a client that sent none
//!   is bounded all the same, and one that gave up is not worked for.
//!
//! Past either, the call ends with DEADLINE_EXCEEDED and its future (and
//! so its slot) is dropped.
//!
//! One timer serves both, and only when needed: it is made when the call
//! first waits, and most calls are answered at the first poll. Each timer
//! registered costs a lock and often a wake-up of the runtime's driver (a
//! system call), a measurable share of a call this fast. For the same
//! reason the limits count from the call's first wait, not from its first
//! poll: the clock is read only when there is something to time, and a call
//! answered at once costs none (the two instants are apart by what the
//! first poll took, microseconds; a handler that blocks its thread for
//! longer is not stopped by a timer either way).
//!
//! The timer is set for the message's limit first. When it fires, the call
//! is polled: a request body still waiting for its message is past its own
//! deadline and fails the call (tonic answers with the body's status);
//! otherwise the message has come and the timer moves on to the call's
//! limit. So the body and the future share no state.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use http::{HeaderMap, HeaderName, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tonic::Status;
use tower::{Layer, Service};

/// Wraps a service in [`CallTimeout`].
#[derive(Clone, Copy, Debug)]
pub struct CallTimeoutLayer {
    request_timeout: Duration,
    max_call_duration: Duration,
}

impl CallTimeoutLayer {
    /// Request messages must arrive within `request_timeout`, and calls end
    /// within `max_call_duration`, both from the call's start.
    pub fn new(request_timeout: Duration, max_call_duration: Duration) -> Self {
        Self {
            request_timeout,
            max_call_duration,
        }
    }
}

impl<S> Layer<S> for CallTimeoutLayer {
    type Service = CallTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallTimeout {
            inner,
            limits: *self,
        }
    }
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct CallTimeout<S> {
    inner: S,
    limits: CallTimeoutLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CallTimeout<S>
where
    S: Service<Request<TimedBody<ReqBody>>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = CallTimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let limits = Limits::of(&self.limits, client_timeout(request.headers()));
        let request = request.map(|inner| TimedBody {
            inner,
            limit: limits.message,
            deadline: None,
        });
        CallTimeoutFuture {
            inner: self.inner.call(request),
            // Made when the call first waits: most calls never do.
            timer: None,
            limit: Limit::Message,
            start: None,
            limits,
        }
    }
}

/// One call's limits, from its start.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// For the request message; `None` when the call's own limit is as
    /// short.
    message: Option<Duration>,
    /// For the whole call.
    call: Duration,
    /// Whether `call` is the client's deadline rather than the server's
    /// maximum.
    clients: bool,
}

impl Limits {
    fn of(layer: &CallTimeoutLayer, client: Option<Duration>) -> Self {
        let (call, clients) = match client {
            Some(client) if client < layer.max_call_duration => (client, true),
            _ => (layer.max_call_duration, false),
        };
        Self {
            message: (layer.request_timeout < call).then_some(layer.request_timeout),
            call,
            clients,
        }
    }
}

/// Which limit the timer is set for.
#[derive(Clone, Copy, Debug)]
enum Limit {
    Message,
    Call,
}

pin_project! {
    /// The response future of [`CallTimeout`].
    pub struct CallTimeoutFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        timer: Option<Sleep>,
        limit: Limit,
        // When the call first waited.
        start: Option<Instant>,
        limits: Limits,
    }
}

impl<F, B, E> Future for CallTimeoutFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // A request body past its deadline fails the call here.
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        let start = *this.start.get_or_insert_with(Instant::now);
        let mut timer = this.timer;
        if timer.is_none() {
            let first = match this.limits.message {
                Some(message) => start + message,
                None => {
                    *this.limit = Limit::Call;
                    start + this.limits.call
                }
            };
            timer.set(Some(tokio::time::sleep_until(first)));
        }
        let Some(mut timer) = timer.as_pin_mut() else {
            return Poll::Pending;
        };
        ready!(timer.as_mut().poll(cx));
        match this.limit {
            Limit::Message => {
                // The call was polled past the message's deadline and is
                // still running: its message had come. What is left is the
                // call's own limit.
                *this.limit = Limit::Call;
                timer.as_mut().reset(start + this.limits.call);
                // Registers the waker for the new deadline.
                match timer.poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Ok(past_limit(this.limits))),
                }
            }
            Limit::Call => Poll::Ready(Ok(past_limit(this.limits))),
        }
    }
}

fn past_limit<B: Default>(limits: &Limits) -> Response<B> {
    let message = if limits.clients {
        format!(
            "the call ran past its client's deadline ({:?}, from grpc-timeout)",
            limits.call
        )
    } else {
        format!(
            "the call ran past the server's maximum call duration ({:?})",
            limits.call
        )
    };
    Status::deadline_exceeded(message).into_http()
}

/// The header that carries the client's deadline.
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The client's deadline, from `grpc-timeout` (a positive integer of at
/// most 8 digits and a unit: `H`, `M`, `S`, `m`, `u` or `n`); `None` when
/// absent or malformed, as tonic reads it.
fn client_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = crate::grpc_wire::header(headers, &GRPC_TIMEOUT)?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount = digits
        .iter()
        .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

pin_project! {
    /// A request body with a time limit for its whole message (the end of
    /// the stream), from when it first waits: polled past it while still
    /// waiting, it fails with DEADLINE_EXCEEDED. The clock is read only
    /// when the body waits.
    pub struct TimedBody<B> {
        #[pin]
        inner: B,
        // The limit for the message; `None` once it has been enforced, or
        // when the call's own limit comes first.
        limit: Option<Duration>,
        // Set when the body first waits.
        deadline: Option<Instant>,
    }
}

impl<B: Body<Error = Status>> Body for TimedBody<B> {
    type Data = B::Data;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Pending => {
                let Some(limit) = *this.limit else {
                    return Poll::Pending;
                };
                let now = Instant::now();
                let deadline = *this.deadline.get_or_insert(now + limit);
                if now < deadline {
                    return Poll::Pending;
                }
                // Said once: the call ends with it.
                *this.limit = None;
                Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                    "the request message did not arrive within {limit:?}"
                )))))
            }
            ready => ready,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn parsed(value: &'static str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", HeaderValue::from_static(value));
        client_timeout(&headers)
    }

    #[test]
    fn a_call_is_limited_by_the_shorter_of_its_clients_deadline_and_the_maximum() {
        let layer = CallTimeoutLayer::new(Duration::from_secs(5), Duration::from_secs(10));

        let none = Limits::of(&layer, None);
        let longer = Limits::of(&layer, Some(Duration::from_secs(60)));
        let between = Limits::of(&layer, Some(Duration::from_secs(7)));
        let shorter = Limits::of(&layer, Some(Duration::from_secs(1)));

        for limits in [none, longer] {
            assert_eq!(limits.call, Duration::from_secs(10));
            assert!(!limits.clients);
            assert_eq!(limits.message, Some(Duration::from_secs(5)));
        }
        assert_eq!(between.call, Duration::from_secs(7));
        assert!(between.clients);
        assert_eq!(between.message, Some(Duration::from_secs(5)));
        assert_eq!(shorter.call, Duration::from_secs(1));
        assert!(shorter.clients);
        assert_eq!(shorter.message, None, "the call's own limit comes first");
    }

    #[test]
    fn grpc_timeout_is_read_as_the_spec_writes_it() {
        assert_eq!(parsed("1000m"), Some(Duration::from_secs(1)));
        assert_eq!(parsed("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parsed("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parsed("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parsed("250u"), Some(Duration::from_micros(250)));
        assert_eq!(parsed("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(parsed("123456789S"), None, "more than 8 digits");
        assert_eq!(parsed("m"), None);
        assert_eq!(parsed("10x"), None);
        assert_eq!(parsed("-1S"), None);
        assert_eq!(client_timeout(&HeaderMap::new()), None);
    }
}
