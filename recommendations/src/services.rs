//! The server's gRPC services, and the call router that picks one by the
//! service name in each call's path (`/package.Service/Method`).
//!
//! tonic's `Routes` does the same with an axum router, which on every call
//! parses the path into URL parameters, stores them and the matched path in
//! the request's extensions, clones a boxed service and boxes the request
//! and response bodies once more each way, a measurable share of a
//! Recommend call (docs/benchmarks/history.md, "Our own router"). Here
//! it is one string match on five names; each generated server then matches
//! the method itself, as it always did.
//!
//! Owned, in place of tonic's `Routes` (tonic 0.14.9 checked), for that cost
//! alone; what a client sees is the same (tests/api/wire.rs: unknown services
//! and methods are UNIMPLEMENTED, as the conformance tests of the kit's server
//! show tonic's `Routes` answers too).

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use protobufs::{legacy::recommendations_server, v1::recommendations_service_server};
use service_kit::grpc_wire::BoxError;
use tonic::{Status, body::Body, codegen::BoxFuture};
use tonic_health::pb::health_server::{self, Health, HealthServer};
use tonic_reflection::{
    pb::{v1, v1alpha},
    server::{
        v1::{ServerReflection, ServerReflectionServer},
        v1alpha::{
            ServerReflection as ServerReflectionV1Alpha,
            ServerReflectionServer as ServerReflectionServerV1Alpha,
        },
    },
};
use tower::Service;

use crate::api::Recommender;

/// Every service of the server: both bookstore contracts over one shared
/// implementation, gRPC health, and reflection (v1 and v1alpha). Generic
/// only over the implementations that tonic-health and tonic-reflection do
/// not name.
pub struct Servers<H, R, A> {
    /// `bookstore.recommendations.v1.RecommendationsService`.
    pub v1: recommendations_service_server::RecommendationsServiceServer<Recommender>,
    /// The tutorial's `Recommendations`.
    pub legacy: recommendations_server::RecommendationsServer<Recommender>,
    /// `grpc.health.v1.Health`.
    pub health: HealthServer<H>,
    /// `grpc.reflection.v1.ServerReflection`.
    pub reflection_v1: ServerReflectionServer<R>,
    /// `grpc.reflection.v1alpha.ServerReflection`.
    pub reflection_v1alpha: ServerReflectionServerV1Alpha<A>,
}

/// The [`Servers`] as one tower service, routing each call by its service
/// name. Shared: the stack is cloned for every call, and this clone is one
/// reference count, not five.
pub struct Services<H, R, A>(Arc<Servers<H, R, A>>);

impl<H, R, A> Services<H, R, A> {
    /// Routes calls to `servers`.
    pub fn new(servers: Servers<H, R, A>) -> Self {
        Self(Arc::new(servers))
    }
}

/// By hand: derive would demand that the implementations be `Clone`.
impl<H, R, A> Clone for Services<H, R, A> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<H, R, A, B> Service<Request<B>> for Services<H, R, A>
where
    H: Health,
    R: ServerReflection,
    A: ServerReflectionV1Alpha,
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError> + Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Response<Body>, Infallible>;

    /// Always ready, as every generated server is: they do all their work
    /// in the call.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // A generated server's `call` needs `&mut self` but only clones
        // its implementation's `Arc`: a clone of the server is as good.
        let servers = &*self.0;
        match service_name(request.uri().path()) {
            recommendations_service_server::SERVICE_NAME => servers.v1.clone().call(request),
            recommendations_server::SERVICE_NAME => servers.legacy.clone().call(request),
            health_server::SERVICE_NAME => servers.health.clone().call(request),
            v1::server_reflection_server::SERVICE_NAME => {
                servers.reflection_v1.clone().call(request)
            }
            v1alpha::server_reflection_server::SERVICE_NAME => {
                servers.reflection_v1alpha.clone().call(request)
            }
            unknown => Box::pin(std::future::ready(Ok(unknown_service(unknown)))),
        }
    }
}

/// The service part of a gRPC path, `package.Service` of
/// `/package.Service/Method`; empty when the path has no such part.
fn service_name(path: &str) -> &str {
    path.strip_prefix('/')
        .and_then(|rest| rest.split_once('/'))
        .map_or("", |(service, _method)| service)
}

/// UNIMPLEMENTED, trailers-only, as gRPC servers answer a service they do
/// not serve. The name is bounded by the HTTP/2 header list limit, and tonic
/// percent-encodes it into `grpc-message`.
fn unknown_service(name: &str) -> Response<Body> {
    Status::unimplemented(format!("unknown service {name:?}")).into_http()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_the_first_segment_of_a_grpc_path() {
        assert_eq!(
            service_name("/bookstore.recommendations.v1.RecommendationsService/Recommend"),
            "bookstore.recommendations.v1.RecommendationsService"
        );
        assert_eq!(
            service_name("/grpc.health.v1.Health/"),
            "grpc.health.v1.Health"
        );
    }

    #[test]
    fn a_path_without_a_method_names_no_service() {
        for path in [
            "",
            "/",
            "/grpc.health.v1.Health",
            "grpc.health.v1.Health/Check",
        ] {
            assert_eq!(service_name(path), "", "{path:?}");
        }
    }

    #[test]
    fn an_unknown_service_is_unimplemented_and_named() {
        let response = unknown_service("shop.Cart");

        let status = Status::from_header_map(response.headers()).expect("a trailers-only status");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert_eq!(status.message(), "unknown service \"shop.Cart\"");
    }
}
