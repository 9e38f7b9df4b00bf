//! Placeholder until the marketplace issue lands.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("marketplace is not built yet");
    std::process::exit(1);
}
