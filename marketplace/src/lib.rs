//! The bookstore's web app: an axum + askama site whose pages come from the
//! recommendations service, called over long-lived gRPC channels (one per
//! replica) created once and shared by every request.
#![forbid(unsafe_code)]

pub mod client;
pub mod error;
pub mod panic_page;
pub mod routes;
pub mod settings;
pub mod startup;

pub use service_kit::cli::Command;
pub use settings::{Cli, Settings};
pub use startup::Application;
