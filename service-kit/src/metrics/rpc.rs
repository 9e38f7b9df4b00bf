//! The metric families of gRPC calls, server or client side: their duration
//! by method and status, and the calls in flight.

use std::{
    sync::{Arc, OnceLock, PoisonError, RwLock},
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tonic::Code;

use super::{ByCode, code_name, latency_histogram};

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
    pub fn finished(&self, method: &str, code: Code, elapsed: Duration) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::encode;

    #[test]
    fn finished_calls_are_timed_by_method_and_code() {
        let mut registry = Registry::default();
        let metrics = RpcMetrics::register(&mut registry, Side::Server);

        metrics.started();
        metrics.finished("/pkg.Svc/Do", Code::NotFound, Duration::from_millis(2));

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
            metrics.finished(path, Code::Unimplemented, Duration::ZERO);
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
            metrics.finished(path, code, Duration::ZERO);
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
