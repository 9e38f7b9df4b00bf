//! One log event and the metrics of every HTTP request, by matched route
//! (never the raw path, so metrics stay bounded and logs hold no ids).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Instant,
};

use crate::{
    log_limit::LogLimiter,
    metrics::{HttpMetrics, http_method},
    trace,
};
use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderValue, Method, Response},
};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};
use tracing::{Instrument as _, Level, Span, field::Empty, instrument::Instrumented};

/// The route label of requests that matched no route (404s).
const UNMATCHED: &str = "unmatched";

/// What the middleware shares between requests.
#[derive(Debug)]
pub struct HttpObserver {
    metrics: HttpMetrics,
    limiter: LogLimiter,
}

impl HttpObserver {
    /// Records into `metrics`, with a fresh [`LogLimiter`].
    fn new(metrics: HttpMetrics) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            limiter: LogLimiter::new(),
        })
    }
}

/// The layer (see the module docs): one [`HttpObserve`] around each route.
#[derive(Clone, Debug)]
pub struct HttpObserveLayer {
    observer: Arc<HttpObserver>,
}

impl HttpObserveLayer {
    /// Records into `metrics`.
    pub fn new(metrics: HttpMetrics) -> Self {
        Self {
            observer: HttpObserver::new(metrics),
        }
    }
}

impl<S> Layer<S> for HttpObserveLayer {
    type Service = HttpObserve<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpObserve {
            inner,
            observer: Arc::clone(&self.observer),
        }
    }
}

/// The middleware (see the module docs). Each request is served in a span
/// named by the HTTP conventions (`GET /category/{slug}/books`) that
/// continues the caller's trace (W3C `traceparent`) or starts one, and with
/// a request id, the caller's `x-request-id` or else the trace id, echoed
/// in the response and carried to recommendations. Successful requests log
/// at DEBUG, client errors at INFO, server errors at ERROR, at most a few
/// lines a second at each level (see [`crate::log_limit`]: a flood of
/// 404s is not a flood of lines).
///
/// A layer of its own rather than `axum::middleware::from_fn`, which boxes
/// its future and a copy of the inner service on every request
/// (docs/benchmarks/history.md, "The page's observer, a layer of its own").
#[derive(Clone, Debug)]
pub struct HttpObserve<S> {
    inner: S,
    observer: Arc<HttpObserver>,
}

impl<S, B> Service<Request> for HttpObserve<S>
where
    S: Service<Request, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = HttpObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let method = request.method().clone();
        let method_label = http_method(&method);
        let route = request.extensions().get::<MatchedPath>().cloned();
        let route_label = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
        // A span for a page that arrives with a trace context, or for every
        // page when spans are exported: see crate::trace::exporting.
        let parent = (trace::propagates_trace_context()
            && request.headers().contains_key(trace::TRACEPARENT))
        .then(|| trace::extract(request.headers()));
        let span = if parent.is_some() || trace::exporting() {
            tracing::info_span!(
                target: "http",
                "http.server",
                otel.name = %format_args!("{method_label} {route_label}"),
                otel.kind = "server",
                otel.status_code = Empty,
                http.request.method = method_label,
                http.route = route_label,
                url.path = request.uri().path(),
                url.scheme = "http",
                http.response.status_code = Empty,
                error.type = Empty,
                request_id = Empty,
                trace_id = Empty,
                span_id = Empty,
            )
        } else {
            Span::none()
        };
        trace::start(&span, parent.unwrap_or_default());
        let mut request_id = trace::request_id(request.headers())
            .or_else(|| trace::trace_id(&span).and_then(|id| HeaderValue::from_str(&id).ok()))
            .unwrap_or_else(trace::new_request_id);
        // One value per page: never HPACK-indexed, toward an HTTP/2 browser
        // or recommendations (see trace::with_request_id).
        request_id.set_sensitive(true);
        span.record("request_id", request_id.to_str().unwrap_or_default());
        let page = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        HttpObserveFuture {
            page: trace::with_request_id(request_id.clone(), page.instrument(span.clone())),
            finish: Some(Finish {
                observer: Arc::clone(&self.observer),
                started,
                method,
                route,
                span,
                request_id,
            }),
        }
    }
}

pin_project! {
    /// The response future of [`HttpObserve`].
    pub struct HttpObserveFuture<F> {
        #[pin]
        page: TaskLocalFuture<HeaderValue, Instrumented<F>>,
        finish: Option<Finish>,
    }
}

impl<F, B, E> Future for HttpObserveFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.page.poll(cx))?;
        if let Some(finish) = this.finish.take() {
            finish.record(&mut response);
        }
        Poll::Ready(Ok(response))
    }
}

/// What a request's end records, from what its start saw.
struct Finish {
    observer: Arc<HttpObserver>,
    started: Instant,
    method: Method,
    route: Option<MatchedPath>,
    span: Span,
    request_id: HeaderValue,
}

impl Finish {
    /// The request's metrics, its span's status and its log event; and its
    /// request id, in the response.
    fn record<B>(self, response: &mut Response<B>) {
        let Self {
            observer,
            started,
            method,
            route,
            span,
            request_id,
        } = self;
        let latency = started.elapsed();
        let method_label = http_method(&method);
        let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
        let status = response.status().as_u16();
        observer
            .metrics
            .finished(method_label, route, status, latency);

        let latency_ms = latency.as_secs_f64() * 1e3;
        span.record("http.response.status_code", status);
        if status >= 500 {
            span.record("otel.status_code", "error");
            span.record("error.type", status);
        }
        let wanted = match status {
            500.. => Level::ERROR,
            400..=499 => Level::INFO,
            _ => Level::DEBUG,
        };
        let (level, held_back) = observer.limiter.level(wanted);
        span.in_scope(|| {
            crate::event_at!(
                level,
                method = %method,
                route,
                status,
                latency_ms,
                request_id = request_id.to_str().unwrap_or_default(),
                held_back,
                "HTTP request finished"
            );
        });
        response.headers_mut().insert(trace::REQUEST_ID, request_id);
    }
}
