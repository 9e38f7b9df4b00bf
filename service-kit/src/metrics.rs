//! The Prometheus registry and the metric families of gRPC calls, shared by
//! the server side (recommendations) and the client side (marketplace), and
//! of HTTP requests (the marketplace's web listener).
//!
//! Names and labels follow the OpenTelemetry semantic conventions in the
//! form their Prometheus exporter gives them (dots become underscores, the
//! unit a suffix): `rpc.server.call.duration` is
//! `rpc_server_call_duration_seconds`, with `rpc_system_name`,
//! `rpc_method` and `rpc_response_status_code`, and
//! `http.server.request.duration` is `http_server_request_duration_seconds`.
//! A histogram's `_count` is the number of calls, so no counter repeats it.

use std::{
    sync::{Arc, OnceLock, PoisonError, RwLock},
    time::Duration,
};

use http::Method;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tonic::Code;

/// Latency buckets in seconds: from 250 µs (a cached in-process answer) to
/// 10 s (far past any deadline we set).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram with [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Encodes every metric of `registry` in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::with_capacity(4096);
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

/// Labels of a finished call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// Always `grpc`.
    pub rpc_system_name: &'static str,
    /// The method, `package.Service/Method`, or `_OTHER` for one the
    /// server does not implement.
    pub rpc_method: String,
    /// The canonical status name, `OK`, `NOT_FOUND`, ...
    pub rpc_response_status_code: &'static str,
}

/// The `rpc_method` of calls to methods the server does not implement,
/// as the conventions name it: one label for every such path, so that a
/// client probing random paths cannot grow the metrics without bound.
pub const OTHER_METHOD: &str = "_OTHER";

/// Which end of a call the metrics describe; it prefixes the metric names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Calls this process served: `rpc_server_*`.
    Server,
    /// Calls this process made: `rpc_client_*`.
    Client,
}

impl Side {
    /// `"server"` or `"client"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Client => "client",
        }
    }
}

/// The metric families of gRPC calls: their duration by method and status,
/// and the calls in flight. Cloning shares the families.
#[derive(Clone, Debug)]
pub struct RpcMetrics {
    duration: Family<CallLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    /// Each method's series, taken from the families on its first call:
    /// later calls cost no label allocation and no family lookup. A short
    /// list, searched in order (cheaper than hashing a path per call), and
    /// bounded as the method labels are (see [`RpcMetrics::finished`]).
    series: Arc<Series>,
}

/// A method and its series.
type NamedSeries = (Box<str>, Arc<MethodSeries>);

/// The methods with series of their own.
#[derive(Debug, Default)]
struct Series {
    /// Set by [`RpcMetrics::only_methods`]: from then on the list is fixed,
    /// and read without a lock.
    closed: OnceLock<ClosedSeries>,
    /// Until then, methods as their first calls end.
    open: RwLock<Vec<NamedSeries>>,
}

/// A fixed list of methods, and the series of every other.
#[derive(Debug)]
struct ClosedSeries {
    named: Box<[(Box<str>, MethodSeries)]>,
    other: MethodSeries,
}

/// One method's series: a duration histogram per status code, made on
/// first use.
#[derive(Debug, Default)]
struct MethodSeries {
    duration: ByCode<Histogram>,
}

/// A metric per gRPC status code, each made on its first use and then
/// found by the code's number: a call builds, hashes and looks up no label
/// set.
#[derive(Debug)]
pub struct ByCode<M>([OnceLock<M>; 17]);

impl<M> Default for ByCode<M> {
    fn default() -> Self {
        Self(Default::default())
    }
}

impl<M> ByCode<M> {
    /// The metric of `code`, made by `make` on its first use.
    pub fn get_or_init(&self, code: Code, make: impl FnOnce() -> M) -> &M {
        let index = usize::try_from(code as i32).unwrap_or(0) % self.0.len();
        self.0[index].get_or_init(make)
    }
}

impl RpcMetrics {
    /// Registers the families as `rpc_{side}_call_duration_seconds` and
    /// `rpc_{side}_active_calls`.
    pub fn register(registry: &mut Registry, side: Side) -> Self {
        let metrics = Self {
            duration: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
            series: Arc::default(),
        };
        let side = side.as_str();
        registry.register(
            format!("rpc_{side}_call_duration_seconds"),
            "gRPC calls by method and status code, and how long each took until its status was \
             known (OpenTelemetry's rpc.{side}.call.duration)",
            metrics.duration.clone(),
        );
        registry.register(
            format!("rpc_{side}_active_calls"),
            "gRPC calls started and not yet finished",
            metrics.in_flight.clone(),
        );
        metrics
    }

    /// From now on, labels only `methods` (`package.Service/Method`) by
    /// name: calls to any other count as [`OTHER_METHOD`], whatever their
    /// status. For a server, whose clients choose the path: without it, a
    /// call refused before it reached a service (RESOURCE_EXHAUSTED under
    /// overload) would be labelled with its path, and a client sending
    /// random paths would grow the metrics, and this list, without bound.
    /// Only the first call counts. (The series of calls ended before it
    /// go on: a method's series are the families', whatever list finds
    /// them.)
    pub fn only_methods<M: Into<Box<str>>>(self, methods: impl IntoIterator<Item = M>) -> Self {
        let named = methods
            .into_iter()
            .map(|method| (method.into(), MethodSeries::default()))
            .collect();
        // Already closed: the first list stays.
        let _ = self.series.closed.set(ClosedSeries {
            named,
            other: MethodSeries::default(),
        });
        self
    }

    /// Records the start of a call.
    pub fn started(&self) {
        self.in_flight.inc();
    }

    /// Records the end of a call started with [`RpcMetrics::started`] to
    /// `method` (its path, `/package.Service/Method`). Methods the server
    /// does not implement all share [`OTHER_METHOD`].
    pub fn finished(&self, method: &str, code: Code, elapsed: std::time::Duration) {
        self.in_flight.dec();
        let method = if code == Code::Unimplemented {
            OTHER_METHOD
        } else {
            method.strip_prefix('/').unwrap_or(method)
        };
        let seconds = elapsed.as_secs_f64();
        if let Some(closed) = self.series.closed.get() {
            // Fixed: no lock, no reference count.
            let (method, series) = closed
                .named
                .iter()
                .find(|(known, _)| **known == *method)
                .map_or((OTHER_METHOD, &closed.other), |(known, series)| {
                    (&**known, series)
                });
            self.observe(series, method, code, seconds);
        } else {
            let series = self.open_series(method);
            self.observe(&series, method, code, seconds);
        }
    }

    /// Adds `seconds` to the histogram of `method` and `code` in `series`.
    fn observe(&self, series: &MethodSeries, method: &str, code: Code, seconds: f64) {
        series
            .duration
            .get_or_init(code, || {
                self.duration
                    .get_or_create(&CallLabels {
                        rpc_system_name: "grpc",
                        rpc_method: method.to_owned(),
                        rpc_response_status_code: code_name(code),
                    })
                    .clone()
            })
            .observe(seconds);
    }

    /// The series of `method` in the open list, added on its first call.
    fn open_series(&self, method: &str) -> Arc<MethodSeries> {
        let find = |named: &[NamedSeries]| {
            named
                .iter()
                .find(|(known, _)| **known == *method)
                .map(|(_, found)| Arc::clone(found))
        };
        let open = &self.series.open;
        if let Some(found) = find(&open.read().unwrap_or_else(PoisonError::into_inner)) {
            return found;
        }
        let mut named = open.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = find(&named) {
            return found;
        }
        let found = Arc::new(MethodSeries::default());
        named.push((method.into(), Arc::clone(&found)));
        found
    }
}

/// Labels of a finished HTTP request, named by the OpenTelemetry HTTP
/// conventions in their Prometheus form.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    http_request_method: &'static str,
    http_route: String,
    http_response_status_code: u16,
}

/// HTTP requests by method, route and status, and how long each took:
/// `http_server_request_duration_seconds` (its `_count` is the number of
/// requests). Cloning shares the family.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    /// The series requests have used so far, found by comparing their
    /// labels in place: a request then builds no label set (the route a new
    /// `String`) and hashes nothing. At most [`Self::MAX_SEEN`]; the rest
    /// are looked up in the family.
    seen: Arc<RwLock<Vec<SeenSeries>>>,
}

/// One series of [`HttpMetrics`] and its labels.
#[derive(Debug)]
struct SeenSeries {
    method: &'static str,
    route: Box<str>,
    status: u16,
    histogram: Histogram,
}

impl HttpMetrics {
    /// How many series [`HttpMetrics::finished`] finds without the family:
    /// more than a service's routes, methods and statuses in common use.
    const MAX_SEEN: usize = 64;

    /// Registers the family.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            duration: Family::new_with_constructor(latency_histogram),
            seen: Arc::default(),
        };
        registry.register(
            "http_server_request_duration_seconds",
            "HTTP requests by method, matched route and status, and how long each took until \
             the response headers (OpenTelemetry's http.server.request.duration)",
            metrics.duration.clone(),
        );
        metrics
    }

    /// Records a finished request. `method` is an [`http_method`] label;
    /// `route` the matched route, never the raw path (so that the series
    /// stay bounded), or empty for a request answered before routing.
    pub fn finished(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let is = |series: &SeenSeries| {
            series.status == status && series.method == method && *series.route == *route
        };
        {
            let seen = self.seen.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = seen.iter().find(|series| is(series)) {
                series.histogram.observe(seconds);
                return;
            }
        }
        let histogram = self
            .duration
            .get_or_create(&RequestLabels {
                http_request_method: method,
                http_route: route.to_owned(),
                http_response_status_code: status,
            })
            .clone();
        histogram.observe(seconds);
        let mut seen = self.seen.write().unwrap_or_else(PoisonError::into_inner);
        if seen.len() < Self::MAX_SEEN && !seen.iter().any(is) {
            seen.push(SeenSeries {
                method,
                route: route.into(),
                status,
                histogram,
            });
        }
    }
}

/// The `http_request_method` label: the standard methods by name, every
/// other one as [`OTHER_METHOD`]. Any token is a valid method, and one
/// series per made-up method would let a client grow `/metrics` without
/// bound.
pub fn http_method(method: &Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or(OTHER_METHOD)
}

/// The canonical name of a status code, as the gRPC spec and grpcurl spell it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_requests_count_in_their_series_whether_or_not_it_was_seen_before() {
        let mut registry = Registry::default();
        let metrics = HttpMetrics::register(&mut registry);
        let took = Duration::from_millis(1);

        for _ in 0..3 {
            metrics.finished("GET", "/", 200, took);
        }
        metrics.finished("GET", "/", 503, took);
        metrics.finished("HEAD", "/", 200, took);
        metrics.finished("GET", "/books", 200, took);
        // More series than are kept outside the family: twice each.
        let many = u16::try_from(HttpMetrics::MAX_SEEN).expect("small") + 10;
        for status in 1000..1000 + many {
            metrics.finished("GET", "/x", status, took);
            metrics.finished("GET", "/x", status, took);
        }

        let text = encode(&registry).expect("encoding into a String cannot fail");
        let count = |method: &str, route: &str, status: u16| {
            let series = format!(
                r#"http_server_request_duration_seconds_count{{http_request_method="{method}",http_route="{route}",http_response_status_code="{status}"}} "#
            );
            text.lines()
                .find_map(|line| line.strip_prefix(&series))
                .map(|n| n.parse::<u64>().expect("a count"))
        };
        assert_eq!(count("GET", "/", 200), Some(3), "{text}");
        assert_eq!(count("GET", "/", 503), Some(1), "{text}");
        assert_eq!(count("HEAD", "/", 200), Some(1), "{text}");
        assert_eq!(count("GET", "/books", 200), Some(1), "{text}");
        for status in 1000..1000 + many {
            assert_eq!(count("GET", "/x", status), Some(2), "{status}: {text}");
        }
        assert_eq!(count("POST", "/", 200), None, "{text}");
    }

    #[test]
    fn finished_calls_are_timed_by_method_and_code() {
        let mut registry = Registry::default();
        let metrics = RpcMetrics::register(&mut registry, Side::Server);

        metrics.started();
        metrics.finished(
            "/pkg.Svc/Do",
            Code::NotFound,
            std::time::Duration::from_millis(2),
        );

        let text = encode(&registry).expect("encoding into a String cannot fail");
        assert!(
            text.contains(
                r#"rpc_server_call_duration_seconds_count{rpc_system_name="grpc",rpc_method="pkg.Svc/Do",rpc_response_status_code="NOT_FOUND"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("rpc_server_active_calls 0"), "{text}");
    }

    #[test]
    fn unimplemented_methods_share_one_label() {
        let mut registry = Registry::default();
        let metrics = RpcMetrics::register(&mut registry, Side::Client);

        for path in ["/a.B/C", "/x.Y/Z"] {
            metrics.started();
            metrics.finished(path, Code::Unimplemented, std::time::Duration::ZERO);
        }

        let text = encode(&registry).expect("encoding into a String cannot fail");
        assert!(
            text.contains(
                r#"rpc_client_call_duration_seconds_count{rpc_system_name="grpc",rpc_method="_OTHER",rpc_response_status_code="UNIMPLEMENTED"} 2"#
            ),
            "{text}"
        );
        assert!(!text.contains("a.B/C"), "{text}");
    }

    #[test]
    fn once_closed_only_the_served_methods_are_named_whatever_the_status() {
        let mut registry = Registry::default();
        let metrics =
            RpcMetrics::register(&mut registry, Side::Server).only_methods(["pkg.Svc/Do"]);

        for (path, code) in [
            ("/pkg.Svc/Do", Code::Ok),
            ("/probe.Random/One", Code::ResourceExhausted),
            ("/probe.Random/Two", Code::ResourceExhausted),
            ("/pkg.Svc/Do", Code::ResourceExhausted),
        ] {
            metrics.started();
            metrics.finished(path, code, std::time::Duration::ZERO);
        }

        let text = encode(&registry).expect("encoding into a String cannot fail");
        for expected in [
            r#"rpc_method="pkg.Svc/Do",rpc_response_status_code="OK"} 1"#,
            r#"rpc_method="pkg.Svc/Do",rpc_response_status_code="RESOURCE_EXHAUSTED"} 1"#,
            r#"rpc_method="_OTHER",rpc_response_status_code="RESOURCE_EXHAUSTED"} 2"#,
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
        assert!(!text.contains("probe.Random"), "{text}");
        let closed = metrics.series.closed.get().expect("closed");
        assert_eq!(closed.named.len(), 1, "pkg.Svc/Do only, and _OTHER");
        assert!(metrics.series.open.read().expect("not poisoned").is_empty());
    }
}
