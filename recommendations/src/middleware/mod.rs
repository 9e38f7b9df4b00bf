//! The server's tower layers that are specific to it. Logging and metrics
//! come from `service_kit::rpc`, shared with the marketplace's client side;
//! the stack itself is assembled, in order, in `startup::serve_services`.

pub mod admission;
pub mod call_timeout;
pub mod errors;
