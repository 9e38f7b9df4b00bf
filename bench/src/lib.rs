//! The benchmark suite behind `cargo xtask bench`: load generators (h2load,
//! wrk) against the real services and against ceiling servers built here,
//! the cost of each request read from `/proc`, Criterion's figures, and the
//! report (README table and SVG chart). See README.md, "Benchmarks".
#![forbid(unsafe_code)]

pub mod checks;
pub mod criterion;
pub mod load;
pub mod process;
pub mod prometheus;
pub mod report;
