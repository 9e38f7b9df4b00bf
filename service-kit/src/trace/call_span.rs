//! A span per gRPC call, on either side: the server's continues the
//! caller's trace; the client's is a child of the current span (a page) and
//! passes its context and the request id on in the call's metadata.
//!
//! [`CallSpans`] makes the span; the observing layer
//! ([`crate::observe::ObserveLayer::with_spans`]) keeps it with the rest of the
//! call's state and enters it while the inner service runs, while the
//! response body is polled and when it reports the call's end, so that the
//! call's log line carries its ids and its final status is recorded on it.
//! One layer, one future and one body per call rather than a layer of its
//! own (docs/benchmarks/history.md, "The span in the observer").

use std::{net::SocketAddr, sync::Arc};

use http::Request;
use tracing::{Span, field::Empty};

use super::{
    REQUEST_ID, TRACEPARENT, current_request_id, exporting, extract, inject, request_id, start,
};
use crate::metrics::{OTHER_METHOD, Side};

/// How many times a call was sent before this attempt (a retry on another
/// replica is 1), as a request extension the client span records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResendCount(pub u32);

/// Makes the span of each gRPC call, server or client side.
#[derive(Clone, Debug)]
pub struct CallSpans {
    side: Side,
    /// The replica a client calls.
    server: Option<SocketAddr>,
    /// The methods named as they are; any other is [`OTHER_METHOD`]. All
    /// when `None`.
    methods: Option<Arc<[Box<str>]>>,
}

impl CallSpans {
    /// Server side: a span for each call that carries a trace context, and
    /// for every call when spans are exported (so that a call made without
    /// one starts a trace of its own; see [`super::exporting`]). A call
    /// without costs no span.
    pub fn server() -> Self {
        Self {
            side: Side::Server,
            server: None,
            methods: None,
        }
    }

    /// Names only `methods` (`package.Service/Method`) in span names and
    /// `rpc.method`; a call to any other is `_OTHER`, as the conventions
    /// ask of a method the server does not know. For a server, whose
    /// clients choose the path: otherwise a client sending random paths
    /// would give the trace backend a span name per path.
    pub fn only_methods<M: Into<Box<str>>>(self, methods: impl IntoIterator<Item = M>) -> Self {
        Self {
            methods: Some(methods.into_iter().map(Into::into).collect()),
            ..self
        }
    }

    /// Client side, calling the replica at `server`: a span for each call
    /// made in a traced page, or for every call when exporting. Either way
    /// the page's request id goes on.
    pub fn client(server: SocketAddr) -> Self {
        Self {
            side: Side::Client,
            server: Some(server),
            methods: None,
        }
    }

    /// The span of the call `request` starts (`Span::none()` when it needs
    /// none); a client's passes its context on in `request`'s headers.
    pub fn make<B>(&self, request: &mut Request<B>) -> Span {
        match self.side {
            Side::Server => self.server_span(request),
            Side::Client => self.client_span(request),
        }
    }

    /// The method of a call, `package.Service/Method`, from its path; or
    /// [`OTHER_METHOD`] when it is not one of the named methods.
    fn method<'r, B>(&self, request: &'r Request<B>) -> &'r str {
        let method = request.uri().path().trim_start_matches('/');
        match &self.methods {
            Some(named) if !named.iter().any(|known| **known == *method) => OTHER_METHOD,
            _ => method,
        }
    }

    fn server_span<B>(&self, request: &Request<B>) -> Span {
        let headers = request.headers();
        let parent = (crate::grpc_wire::header(headers, &TRACEPARENT).is_some()
            && super::propagates_trace_context())
        .then(|| extract(headers));
        if parent.is_none() && !exporting() {
            return Span::none();
        }
        let request_id = request_id(headers);
        let method = self.method(request);
        let span = tracing::info_span!(
            target: "rpc",
            "grpc.server",
            otel.name = method,
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system.name = "grpc",
            rpc.method = method,
            rpc.response.status_code = Empty,
            error.type = Empty,
            request_id = request_id.as_ref().and_then(|id| id.to_str().ok()),
            trace_id = Empty,
            span_id = Empty,
        );
        start(&span, parent.unwrap_or_default());
        span
    }

    fn client_span<B>(&self, request: &mut Request<B>) -> Span {
        if let Some(id) = current_request_id() {
            request.headers_mut().insert(REQUEST_ID, id);
        }
        if Span::current().is_none() && !exporting() {
            return Span::none();
        }
        let method = self.method(request);
        let server = self.server;
        let host = server.map(|addr| tracing::field::display(addr.ip()));
        let port = server.map(|addr| addr.port());
        let resends = request
            .extensions()
            .get::<ResendCount>()
            .map(|count| count.0);
        let span = tracing::info_span!(
            target: "rpc",
            "grpc.client",
            otel.name = method,
            otel.kind = "client",
            otel.status_code = Empty,
            rpc.system.name = "grpc",
            rpc.method = method,
            rpc.response.status_code = Empty,
            error.type = Empty,
            server.address = host,
            server.port = port,
            http.request.resend_count = resends.filter(|count| *count > 0),
            trace_id = Empty,
            span_id = Empty,
        );
        start(&span, opentelemetry::Context::new());
        inject(&span, request.headers_mut());
        span
    }
}

#[cfg(test)]
mod tests {
    use std::{
        fmt::Debug,
        sync::{Arc, Mutex},
    };

    use http::HeaderValue;
    use tracing::{
        Subscriber,
        field::{Field, Visit},
        span::{Attributes, Id},
    };
    use tracing_subscriber::{
        Layer,
        layer::{Context, SubscriberExt as _},
    };

    use super::*;

    /// The `otel.name` and `rpc.method` of every span made.
    #[derive(Clone, Default)]
    struct Named(Arc<Mutex<Vec<(String, String)>>>);

    #[derive(Default)]
    struct Fields {
        name: String,
        method: String,
    }

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            match field.name() {
                "otel.name" => self.name = value.to_owned(),
                "rpc.method" => self.method = value.to_owned(),
                _ => {}
            }
        }

        fn record_debug(&mut self, _: &Field, _: &dyn Debug) {}
    }

    impl<S: Subscriber> Layer<S> for Named {
        fn on_new_span(&self, attributes: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            let mut fields = Fields::default();
            attributes.record(&mut fields);
            self.0
                .lock()
                .expect("not poisoned")
                .push((fields.name, fields.method));
        }
    }

    fn traced(path: &str) -> Request<()> {
        let mut request = Request::builder()
            .uri(path)
            .body(())
            .expect("a valid request");
        request.headers_mut().insert(
            TRACEPARENT,
            HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        request
    }

    #[test]
    fn a_server_names_a_method_it_does_not_serve_other() {
        let named = Named::default();
        let _subscriber =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(named.clone()));
        let served = CallSpans::server().only_methods(["pkg.Svc/Do"]);

        for path in ["/pkg.Svc/Do", "/probe.Random/One"] {
            assert!(!served.make(&mut traced(path)).is_none(), "{path}");
        }
        // Without the list, every path is named as it is.
        let _ = CallSpans::server().make(&mut traced("/probe.Random/Two"));

        let pairs = |name: &str| (name.to_owned(), name.to_owned());
        assert_eq!(
            *named.0.lock().expect("not poisoned"),
            [
                pairs("pkg.Svc/Do"),
                pairs(OTHER_METHOD),
                pairs("probe.Random/Two")
            ]
        );
    }
}
