//! Conformance tests: the components we own in place of upstream ones run
//! the same cases as the upstream component, over real sockets, so that an
//! upgrade of tonic or hyper shows any difference:
//!
//! - [`server`]: our gRPC server (`server::serve_grpc`, our connection loop
//!   and layers) beside tonic's `Server`, called by tonic's channel;
//! - [`channel`]: our client channel (`client::H2Channel`) beside tonic's
//!   `Channel`, calling tonic's `Server`.
//!
//! Each case names what it checks: statuses, trailers, deadlines, GOAWAY and
//! reconnect, flow control, cancellation.

mod channel;
mod server;
mod support;
