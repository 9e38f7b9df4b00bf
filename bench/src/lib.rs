//! The benchmark suite behind `cargo xtask bench`: load generators (h2load,
//! wrk) against the real services and against ceiling servers built here,
//! the cost of each request read from `/proc`, Criterion's figures, and the
//! report (docs/benchmarks/results.md and its SVG chart). See
//! docs/benchmarks/README.md. And
//! the siege (`src/bin/siege.rs`): hostile and overloaded clients against
//! the release binaries, with the bounds each must hold (docs/limits.md).
#![forbid(unsafe_code)]

pub mod attack;
pub mod callgrind;
pub mod catalog_load;
pub mod chaos;
pub mod checks;
pub mod collector;
pub mod criterion;
pub mod load;
pub mod probe;
pub mod process;
pub mod prometheus;
pub mod report;
pub mod siege;
pub mod suite;
