//! Integration tests: the real server on port 0, called over the network.

mod attacks;
mod call_limits;
mod connection_attacks;
mod contracts;
mod dummy;
mod health_and_reflection;
mod helpers;
mod layers;
mod reload;
mod shutdown;
mod startup_input;
mod tls;
mod tls_reload;
mod wire;
