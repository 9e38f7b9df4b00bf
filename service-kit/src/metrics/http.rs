//! The metric families of HTTP requests: their duration by method, route
//! and status.

use std::{
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use http::Method;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, histogram::Histogram},
    registry::Registry,
};

use super::{OTHER_METHOD, latency_histogram};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::encode;

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
}
