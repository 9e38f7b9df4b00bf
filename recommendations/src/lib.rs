//! The bookstore's recommendations service: a tonic gRPC server that
//! recommends books by category, on two contracts (v1 and the tutorial's
//! original) sharing one implementation.
#![forbid(unsafe_code)]

pub mod api;
pub mod catalog;
pub mod error;
pub mod healthcheck;
pub mod services;
pub mod settings;
pub mod startup;

pub use catalog::{Book, Catalog, Category};
pub use service_kit::cli::Command;
pub use settings::{Cli, Settings};
pub use startup::Application;
