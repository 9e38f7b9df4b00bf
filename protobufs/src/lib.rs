//! The bookstore's gRPC contracts, generated at build time from the .proto
//! files beside this crate.
//!
//! - [`legacy`]: the tutorial's original, package-less `Recommendations`
//!   service (`/Recommendations/Recommend`), kept unchanged on the wire.
//! - [`v1`]: the versioned `bookstore.recommendations.v1` API.
//! - [`Category`]: the categories, with their names in files, URLs, pages
//!   and both contracts.
#![forbid(unsafe_code)]

mod category;
pub mod codec;

pub use category::Category;

/// The tutorial's original contract (`recommendations.proto`, no package).
pub mod legacy {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("_");
}

/// The versioned API, package `bookstore.recommendations.v1`.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("bookstore.recommendations.v1");
}

/// A dummy echo service for layer tests (feature `testing`).
#[cfg(feature = "testing")]
pub mod dummy {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("testing.dummy.v1");
}

/// The encoded `FileDescriptorSet` of both served contracts, for gRPC
/// reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
