//! Everything about serving a listener, web, admin and gRPC alike:
//!
//! - [`listener`]: accepting TCP connections under a cap, backing off on
//!   errors;
//! - [`connections`]: the one connection loop every listener runs, and its
//!   drain;
//! - [`graceful`]: closing a served connection at shutdown or its maximum
//!   age, cheaply checked on every poll;
//! - [`in_flight`]: the bound on requests in flight, refused beyond it;
//! - [`guarded_body`]: a response body holding its request's place until
//!   sent;
//! - [`http`]: serving an axum router (HTTP/1 and HTTP/2) within
//!   [`crate::limits::HttpLimits`];
//! - [`grpc`]: serving gRPC within [`crate::limits::GrpcLimits`]: the
//!   handshake, connection age, and the call layers.

pub mod connections;
pub mod graceful;
pub mod grpc;
pub mod guarded_body;
pub mod http;
pub mod in_flight;
pub mod listener;

pub use connections::{Incoming, run_connections};
pub use grpc::{ServerTls, serve_grpc};
pub use http::serve_http;
pub use listener::{Accepted, Listener};
