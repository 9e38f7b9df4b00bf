//! The observe layer against services that answer in each of the three ways,
//! fail, or are dropped.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use http::HeaderValue;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use super::*;
use crate::grpc_wire::GRPC_STATUS;
use http::HeaderMap;
use tonic::Status;

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
