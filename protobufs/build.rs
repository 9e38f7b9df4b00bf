//! Compiles the .proto files with protox (pure Rust, so no system `protoc` is
//! needed) and generates the prost messages and tonic stubs into OUT_DIR.

use std::{env, error::Error, fs, path::PathBuf};

use prost::Message;

/// The served contracts: their code and their descriptor set (for reflection).
const SERVED: &[&str] = &[
    "recommendations.proto",
    "bookstore/recommendations/v1/recommendations.proto",
];

/// The dummy service of the layer tests, generated only with `testing`.
const TESTING: &[&str] = &["testing/dummy/v1/dummy.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    for file in SERVED.iter().chain(TESTING) {
        println!("cargo:rerun-if-changed={file}");
    }

    let served = protox::compile(SERVED, ["."])?;
    fs::write(out_dir.join("descriptor.bin"), served.encode_to_vec())?;
    // Every stub uses this crate's codec (src/codec.rs), with buffers sized
    // for these messages.
    let configure = || tonic_prost_build::configure().codec_path("crate::codec::CompactCodec");
    configure().compile_fds(served)?;

    if env::var_os("CARGO_FEATURE_TESTING").is_some() {
        configure().compile_fds(protox::compile(TESTING, ["."])?)?;
    }
    Ok(())
}
