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

use std::{
    error::Error as StdError,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, uri::PathAndQuery};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tonic::{Code, Status};
use tower::{Layer, Service};
use tracing::Span;

use crate::{client::CallDeadline, trace::CallSpans};

pub use logging::RpcLogger;
pub use metrics::RpcMeter;

/// The error type of the observed service and body.
pub type BoxError = Box<dyn StdError + Send + Sync>;

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
        // (docs/benchmarks/history.md, "What the server's layers cost").
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

/// The `grpc-status` header. A `HeaderName` rather than a `&str`, so that a
/// lookup (several per call) does not parse the name each time.
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// The `grpc-status` of a header map, when present and valid.
pub fn status_code(headers: &HeaderMap) -> Option<Code> {
    let digits = header(headers, &GRPC_STATUS)?.as_bytes();
    if digits.is_empty() {
        return None;
    }
    let number = digits.iter().try_fold(0i32, |number, &byte| {
        let digit = byte.checked_sub(b'0').filter(|digit| *digit <= 9)?;
        number.checked_mul(10)?.checked_add(i32::from(digit))
    })?;
    Some(Code::from_i32(number))
}

/// Maps up to this many entries are searched by [`header`] in order.
const SCAN_LIMIT: usize = 8;

/// The first value of `name` in `headers`, as `HeaderMap::get` gives it.
///
/// The header maps of a gRPC call hold a handful of entries (a unary
/// response's headers one, its trailers one or two), and comparing a few
/// names costs less than hashing one, which `get` does first. A Recommend
/// call makes five such lookups on the server, and scanning (with reading
/// `grpc-status` digit by digit) saved 276 instructions per call
/// (docs/benchmarks/history.md, "Header lookups"). Larger maps are hashed.
pub fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    if headers.len() > SCAN_LIMIT {
        return headers.get(name);
    }
    headers
        .iter()
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// The status code a failed call ends with: the `Status` in the error's
/// source chain when there is one, otherwise what a gRPC client reports for
/// such a failure.
pub fn code_of_error(err: &(dyn StdError + 'static)) -> Code {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(status) = err.downcast_ref::<Status>() {
            return status.code();
        }
        if err.is::<tonic::TimeoutExpired>() {
            return Code::DeadlineExceeded;
        }
        if err.is::<tonic::ConnectError>() {
            return Code::Unavailable;
        }
        source = err.source();
    }
    Code::Unknown
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        sync::{Arc, Mutex},
    };

    use http::HeaderValue;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    /// Records how each call ended.
    #[derive(Clone, Default)]
    struct Recorder {
        started: Arc<Mutex<usize>>,
        ended: Arc<Mutex<Vec<(String, Code)>>>,
    }

    impl RpcObserver for Recorder {
        fn on_start(&self) {
            *self.started.lock().expect("not poisoned") += 1;
        }

        fn on_end(&self, end: &RpcEnd<'_>) {
            self.ended
                .lock()
                .expect("not poisoned")
                .push((end.method.to_owned(), end.code));
        }
    }

    impl Recorder {
        fn codes(&self) -> Vec<Code> {
            let ended = self.ended.lock().expect("not poisoned");
            ended.iter().map(|(_, code)| *code).collect()
        }
    }

    /// A response body of data frames and then, maybe, trailers.
    struct Frames(VecDeque<Frame<&'static [u8]>>);

    impl Body for Frames {
        type Data = &'static [u8];
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn trailers(code: Code) -> Frame<&'static [u8]> {
        let mut trailers = HeaderMap::new();
        trailers.insert(GRPC_STATUS, HeaderValue::from(code as i32));
        Frame::trailers(trailers)
    }

    fn request() -> Request<()> {
        Request::builder()
            .uri("/pkg.Service/Method")
            .body(())
            .expect("a valid request")
    }

    /// Calls a service answering `answer` through the observer and reads
    /// the whole body; what the observer recorded.
    async fn observed(answer: Result<Response<Frames>, BoxError>) -> Recorder {
        let recorder = Recorder::default();
        let answer = Mutex::new(Some(answer));
        let inner = tower::service_fn(move |_: Request<()>| {
            let answer = answer.lock().expect("not poisoned").take();
            async move { answer.expect("called once") }
        });
        let service = ObserveLayer::new(recorder.clone()).layer(inner);
        if let Ok(response) = service.oneshot(request()).await {
            let _ = response.into_body().collect().await;
        }
        recorder
    }

    #[tokio::test]
    async fn an_ok_call_is_reported_once_with_its_method_when_its_trailers_arrive() {
        let body = Frames(VecDeque::from([
            Frame::data(&b"message"[..]),
            trailers(Code::Ok),
        ]));

        let recorder = observed(Ok(Response::new(body))).await;

        assert_eq!(*recorder.started.lock().expect("not poisoned"), 1);
        assert_eq!(
            *recorder.ended.lock().expect("not poisoned"),
            [("/pkg.Service/Method".to_owned(), Code::Ok)]
        );
    }

    #[tokio::test]
    async fn an_error_status_in_the_headers_is_reported_at_once() {
        let mut response = Response::new(Frames(VecDeque::new()));
        response
            .headers_mut()
            .insert(GRPC_STATUS, HeaderValue::from(Code::NotFound as i32));

        let recorder = observed(Ok(response)).await;

        assert_eq!(recorder.codes(), [Code::NotFound]);
    }

    #[tokio::test]
    async fn an_error_status_in_the_trailers_is_reported() {
        let body = Frames(VecDeque::from([trailers(Code::Internal)]));

        let recorder = observed(Ok(Response::new(body))).await;

        assert_eq!(recorder.codes(), [Code::Internal]);
    }

    #[tokio::test]
    async fn a_body_that_ends_without_trailers_is_unknown() {
        let body = Frames(VecDeque::from([Frame::data(&b"message"[..])]));

        let recorder = observed(Ok(Response::new(body))).await;

        assert_eq!(recorder.codes(), [Code::Unknown]);
    }

    #[tokio::test]
    async fn a_call_dropped_before_its_end_is_cancelled() {
        // Dropped after the headers, before the trailers.
        let recorder = Recorder::default();
        let inner = tower::service_fn(|_: Request<()>| async {
            Ok::<_, BoxError>(Response::new(Frames(VecDeque::from([trailers(Code::Ok)]))))
        });
        let service = ObserveLayer::new(recorder.clone()).layer(inner);
        let response = service.oneshot(request()).await.expect("headers");
        drop(response);
        // Dropped before any answer.
        let pending = tower::service_fn(|_: Request<()>| {
            std::future::pending::<Result<Response<Frames>, BoxError>>()
        });
        let mut service = ObserveLayer::new(recorder.clone()).layer(pending);
        let call = service.call(request());
        drop(call);

        assert_eq!(recorder.codes(), [Code::Cancelled, Code::Cancelled]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_dropped_at_its_callers_deadline_is_a_deadline_miss() {
        let recorder = Recorder::default();
        let pending = tower::service_fn(|_: Request<()>| {
            std::future::pending::<Result<Response<Frames>, BoxError>>()
        });
        let mut service = ObserveLayer::new(recorder.clone()).layer(pending);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        let mut with_deadline = request();
        with_deadline
            .extensions_mut()
            .insert(CallDeadline(deadline));

        // As the caller's own timer at the deadline drops the call.
        let call = service.call(with_deadline);
        tokio::time::sleep_until(deadline).await;
        drop(call);

        assert_eq!(recorder.codes(), [Code::DeadlineExceeded]);
    }

    #[tokio::test]
    async fn a_deadline_is_reported_as_deadline_exceeded() {
        let from_our_layer: BoxError = Box::new(Status::deadline_exceeded("no answer in time"));
        let from_tonic: BoxError = Box::new(tonic::TimeoutExpired(()));

        let ours = observed(Err(from_our_layer)).await;
        let tonics = observed(Err(from_tonic)).await;

        assert_eq!(ours.codes(), [Code::DeadlineExceeded]);
        assert_eq!(tonics.codes(), [Code::DeadlineExceeded]);
    }

    /// Records the name of the span current when each call's end is
    /// reported.
    #[derive(Clone, Default)]
    struct SpanRecorder(Arc<Mutex<Vec<Option<&'static str>>>>);

    impl RpcObserver for SpanRecorder {
        fn on_end(&self, _: &RpcEnd<'_>) {
            let current = tracing::Span::current();
            self.0
                .lock()
                .expect("not poisoned")
                .push(current.metadata().map(|span| span.name()));
        }
    }

    #[tokio::test]
    async fn the_end_is_reported_in_the_calls_span_even_when_it_is_dropped() {
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
        let recorder = SpanRecorder::default();
        let traced = || {
            let mut request = request();
            request.headers_mut().insert(
                crate::trace::TRACEPARENT,
                HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            );
            request
        };
        let layer = ObserveLayer::new(recorder.clone()).with_spans(CallSpans::server());
        /// Calls a service that answers OK through `layer`, reading the
        /// whole body: the call ends by its trailers.
        async fn answered(layer: &ObserveLayer<SpanRecorder>, request: Request<()>) {
            let service = layer.layer(tower::service_fn(|_: Request<()>| async {
                Ok::<_, BoxError>(Response::new(Frames(VecDeque::from([trailers(Code::Ok)]))))
            }));
            let response = service.oneshot(request).await.expect("headers");
            response.into_body().collect().await.expect("the body");
        }

        answered(&layer, traced()).await;
        // Dropped before any answer.
        let pending = tower::service_fn(|_: Request<()>| {
            std::future::pending::<Result<Response<Frames>, BoxError>>()
        });
        drop(layer.layer(pending).call(traced()));
        // Without a trace context (and no export), no span is made.
        answered(&layer, request()).await;

        assert_eq!(
            *recorder.0.lock().expect("not poisoned"),
            [Some("grpc.server"), Some("grpc.server"), None]
        );
    }

    #[test]
    fn header_finds_what_get_finds_in_small_and_large_maps() {
        let name = HeaderName::from_static("x-wanted");
        for others in [0, 3, SCAN_LIMIT, SCAN_LIMIT + 5] {
            let mut headers = HeaderMap::new();
            for i in 0..others {
                let other = HeaderName::try_from(format!("x-other-{i}")).expect("a valid name");
                headers.insert(other, HeaderValue::from(i));
            }
            assert_eq!(header(&headers, &name), None, "{others} others");
            headers.append(name.clone(), HeaderValue::from_static("first"));
            headers.append(name.clone(), HeaderValue::from_static("second"));
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );

            assert_eq!(
                header(&headers, &name),
                headers.get(&name),
                "{others} others"
            );
            assert_eq!(
                header(&headers, &name),
                Some(&HeaderValue::from_static("first"))
            );
        }
    }

    #[test]
    fn status_code_reads_decimal_codes_and_nothing_else() {
        let code = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(GRPC_STATUS, HeaderValue::from_static(value));
            status_code(&headers)
        };

        assert_eq!(code("0"), Some(Code::Ok));
        assert_eq!(code("8"), Some(Code::ResourceExhausted));
        assert_eq!(code("16"), Some(Code::Unauthenticated));
        assert_eq!(code("17"), Some(Code::Unknown));
        for malformed in ["", "x", "1x", "-1", "+1", " 1", "99999999999"] {
            assert_eq!(code(malformed), None, "{malformed:?}");
        }
        assert_eq!(status_code(&HeaderMap::new()), None);
    }
}
