//! An OTLP/HTTP trace receiver for the tests (opentelemetry-proto's
//! messages over hyper): it keeps each export request's path, headers and
//! spans, gunzips a gzip body, and serves plain HTTP or TLS (with a client
//! certificate required, for mutual TLS).

use std::{
    convert::Infallible,
    io::Read as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;

use crate::otlp::received;

/// One export request as it arrived.
#[derive(Clone, Debug)]
pub(crate) struct Export {
    pub(crate) path: String,
    pub(crate) headers: http::HeaderMap,
    /// The `service.name` of each span.
    pub(crate) services: Vec<String>,
}

/// The receiver: what it was sent.
#[derive(Clone, Default)]
pub(crate) struct HttpReceiver {
    pub(crate) exports: Arc<Mutex<Vec<Export>>>,
}

impl HttpReceiver {
    /// Serves on a free loopback port, over TLS with `tls`; its address.
    pub(crate) async fn start(&self, tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let receiver = self.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (receiver, tls) = (receiver.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let receiver = receiver.clone();
                        async move { Ok::<_, Infallible>(receiver.take(request).await) }
                    });
                    let http1 = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http1.serve_connection(TokioIo::new(tcp), service).await;
                        }
                        Some(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(config);
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = http1.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn take(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let Ok(body) = body.collect().await.map(|body| body.to_bytes()) else {
            return status(400);
        };
        let gzip = parts
            .headers
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|encoding| encoding == "gzip");
        let body = if gzip {
            let mut plain = Vec::new();
            if flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut plain)
                .is_err()
            {
                return status(400);
            }
            Bytes::from(plain)
        } else {
            body
        };
        let Ok(message) = ExportTraceServiceRequest::decode(body) else {
            return status(400);
        };
        let services = received(message).into_iter().map(|r| r.service).collect();
        self.exports.lock().expect("not poisoned").push(Export {
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            services,
        });
        let mut response = Response::new(Full::new(Bytes::from(
            ExportTraceServiceResponse::default().encode_to_vec(),
        )));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-protobuf"),
        );
        response
    }

    /// The exports received so far.
    pub(crate) fn exports(&self) -> Vec<Export> {
        self.exports.lock().expect("not poisoned").clone()
    }
}

fn status(code: u16) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() =
        http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_REQUEST);
    response
}
