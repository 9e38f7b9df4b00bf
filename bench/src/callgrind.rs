//! Reading callgrind's dumps (callgrind-format(5)): the instructions counted,
//! and where they went, by component.
//!
//! A component is found from the source file of each instruction, so code
//! inlined into a caller still counts for the crate it came from: tokio's
//! waker code inlined into hyper's dispatcher is tokio's. That needs line
//! tables in the binary (`cargo xtask bench` builds with them); without,
//! instructions count for the component of their object file ("no line
//! tables"). The standard library's generic code is the exception: inlined,
//! it counts for the function it was inlined into (`Vec::push` in h2 is
//! h2's work).

use std::collections::HashMap;

/// The instructions a dump counted: its `totals:` line.
pub fn totals(dump: &str) -> Option<u64> {
    dump.lines()
        .find_map(|line| line.strip_prefix("totals:"))
        .and_then(|total| total.split_whitespace().next())
        .and_then(|total| total.parse().ok())
}

/// The instructions of a dump by component, the largest first. Each counts
/// where it ran (exclusive cost): a function's calls count for the callees.
pub fn by_component(dump: &str) -> Vec<(&'static str, u64)> {
    let mut files: HashMap<&str, &str> = HashMap::new();
    let mut objects: HashMap<&str, &str> = HashMap::new();
    let (mut file, mut object) = ("???", "???");
    let mut function_file = "???";
    let mut after_calls = false;
    let mut counts: HashMap<&'static str, u64> = HashMap::new();
    for line in dump.lines() {
        if let Some((key, value)) = line.split_once('=') {
            match key {
                "fl" => {
                    function_file = name(&mut files, value);
                    file = function_file;
                }
                "fi" | "fe" => file = name(&mut files, value),
                "fn" => file = function_file,
                "ob" => object = name(&mut objects, value),
                // Callees' names are read here only to keep the tables of
                // compressed names whole.
                "cfi" | "cfl" => {
                    name(&mut files, value);
                }
                "cob" => {
                    name(&mut objects, value);
                }
                "calls" => after_calls = true,
                _ => {}
            }
            continue;
        }
        if !line.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '*')) {
            continue;
        }
        // The line after `calls=` is the call's inclusive cost: the
        // callee's own lines count it.
        if std::mem::take(&mut after_calls) {
            continue;
        }
        let cost: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|cost| cost.parse().ok())
            .unwrap_or(0);
        // The standard library's generic code, inlined, counts for the
        // function it was inlined into.
        let file = if is_std(file) { function_file } else { file };
        *counts.entry(component(file, object)).or_default() += cost;
    }
    let mut counts: Vec<_> = counts.into_iter().filter(|&(_, n)| n > 0).collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    counts
}

/// The name behind a compressed `(id) name` or `(id)`, remembered by id.
fn name<'a>(names: &mut HashMap<&'a str, &'a str>, value: &'a str) -> &'a str {
    let value = value.trim();
    let Some(rest) = value.strip_prefix('(') else {
        return value;
    };
    let Some((id, name)) = rest.split_once(')') else {
        return value;
    };
    let name = name.trim();
    if name.is_empty() {
        names.get(id).copied().unwrap_or("???")
    } else {
        names.insert(id, name);
        name
    }
}

/// The component an instruction of `file` (in `object`) belongs to.
pub fn component(file: &str, object: &str) -> &'static str {
    if let Some(krate) = registry_crate(file) {
        return crate_component(krate);
    }
    if is_std(file) {
        return "Rust core, alloc, std";
    }
    for (ours, component) in [
        (
            "service-kit/",
            "service-kit: our layers, server and client (logs, metrics, limits, balancing, trace context)",
        ),
        ("marketplace/", "marketplace: handler, template"),
        ("recommendations/", "recommendations: handler, catalog"),
        ("protobufs/", "tonic, prost: gRPC and protobuf"),
        ("/target/", "tonic, prost: gRPC and protobuf"),
    ] {
        if file.contains(ours) && !file.contains("/.cargo/") {
            return component;
        }
    }
    if object.contains("libc.so") {
        return if file.contains("/string/") || file.contains("memmove") || file.contains("memcpy") {
            "libc: memcpy, memset, memcmp"
        } else {
            "libc: system call wrappers, other"
        };
    }
    if object.contains("ld-linux") || object.contains("vdso") {
        return "libc: system call wrappers, other";
    }
    if file == "???" {
        "no line tables"
    } else {
        "other"
    }
}

/// Rust's standard library, from rustup's source paths.
fn is_std(file: &str) -> bool {
    file.starts_with("/rustc/") || file.starts_with("/rust/deps/")
}

/// `h2` from `…/.cargo/registry/src/<index>/h2-0.4.12/src/…`.
fn registry_crate(file: &str) -> Option<&str> {
    let (_, rest) = file.split_once("/registry/src/")?;
    let mut parts = rest.split('/');
    let dir = parts.nth(1)?;
    // The version starts at the last '-' followed by a digit.
    let split = dir
        .match_indices('-')
        .filter(|(i, _)| dir[i + 1..].starts_with(|c: char| c.is_ascii_digit()))
        .map(|(i, _)| i)
        .next_back()?;
    Some(&dir[..split])
}

fn crate_component(krate: &str) -> &'static str {
    match krate {
        "h2" => "h2: HTTP/2 frames, HPACK, flow control",
        "hyper" | "hyper-util" | "httparse" | "httpdate" | "want" => {
            "hyper: HTTP/1 and HTTP/2 connections"
        }
        "tonic" | "tonic-prost" | "prost" => "tonic, prost: gRPC and protobuf",
        "axum" | "axum-core" | "matchit" | "tower" | "tower-http" | "tower-layer"
        | "tower-service" => "axum, tower, tower-http",
        "tokio" | "tokio-util" | "tokio-stream" | "mio" | "futures-util" | "futures-core"
        | "futures-channel" | "futures-task" | "atomic-waker" | "slab" | "parking_lot"
        | "parking_lot_core" | "lock_api" | "pin-project-lite" | "pin-project" => {
            "tokio, futures: tasks, wakers, I/O, timers"
        }
        "http" | "http-body" | "http-body-util" | "bytes" | "fnv" | "indexmap" | "hashbrown"
        | "smallvec" | "itoa" | "percent-encoding" | "form_urlencoded" => {
            "http, bytes: headers, buffers"
        }
        "askama" | "askama_escape" => "askama: rendering",
        "mimalloc" | "libmimalloc-sys" => "mimalloc: allocation",
        "tracing"
        | "tracing-core"
        | "tracing-subscriber"
        | "prometheus-client"
        | "opentelemetry"
        | "opentelemetry_sdk"
        | "tracing-opentelemetry" => "tracing, prometheus-client, opentelemetry",
        "rand" | "rand_core" | "rand_chacha" | "chacha20" | "getrandom" => "rand: sampling",
        _ => "other crates",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_the_dumps_totals_line() {
        let dump = "version: 1\ncmd:  marketplace\nevents: Ir\nsummary: 0\n\
                    fn=(1) main\n16 3\ntotals: 1678517065\n";

        assert_eq!(totals(dump), Some(1_678_517_065));
        assert_eq!(totals("events: Ir\nsummary: 0\n"), None);
    }

    const REGISTRY: &str = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";

    #[test]
    fn the_crate_is_read_from_the_registry_path() {
        let file = |dir: &str| format!("{REGISTRY}/{dir}/src/lib.rs");

        assert_eq!(registry_crate(&file("h2-0.4.12")), Some("h2"));
        assert_eq!(
            registry_crate(&file("hyper-util-0.1.17")),
            Some("hyper-util")
        );
        assert_eq!(
            registry_crate(&file("tonic-prost-0.14.2")),
            Some("tonic-prost")
        );
        assert_eq!(
            registry_crate(&file("rand_core-0.9.3-rc.1")),
            Some("rand_core")
        );
        assert_eq!(registry_crate("/work/main/marketplace/src/lib.rs"), None);
    }

    #[test]
    fn instructions_count_for_the_file_they_came_from_and_std_for_its_caller_not_for_calls() {
        let dump = format!(
            "events: Ir\n\
             ob=(1) /work/main/target/production/marketplace\n\
             fl=(1) {REGISTRY}/hyper-1.8.1/src/proto/h1/dispatch.rs\n\
             fn=(1) hyper::proto::h1::dispatch::Dispatcher::poll_write\n\
             10 100\n\
             fi=(2) {REGISTRY}/tokio-1.48.0/src/runtime/task/waker.rs\n\
             +2 30\n\
             fi=(6) /rustc/ded5c06cf21d2b93bffd5d884aa6e96934ee4234/library/alloc/src/vec/mod.rs\n\
             +1 7\n\
             fe=(1)\n\
             +1 5\n\
             cob=(2) /usr/lib/x86_64-linux-gnu/libc.so.6\n\
             cfi=(3) ./string/../sysdeps/x86_64/multiarch/memmove-vec-unaligned-erms.S\n\
             cfn=(2) __memcpy_avx_unaligned_erms\n\
             calls=4 0\n\
             * 1000\n\
             ob=(2)\n\
             fl=(3)\n\
             fn=(2)\n\
             0 40\n\
             ob=(1)\n\
             fl=(4) /work/main/service-kit/src/rpc/metrics.rs\n\
             fn=(3) service_kit::rpc::metrics::record\n\
             7 12\n\
             ob=(3) /usr/lib/x86_64-linux-gnu/libc.so.6\n\
             fl=(5) ???\n\
             fn=(4) epoll_wait\n\
             0 8\n\
             totals: 202\n"
        );

        let components = by_component(&dump);

        assert_eq!(
            components,
            vec![
                ("hyper: HTTP/1 and HTTP/2 connections", 112),
                ("libc: memcpy, memset, memcmp", 40),
                ("tokio, futures: tasks, wakers, I/O, timers", 30),
                (
                    "service-kit: our layers, server and client (logs, metrics, limits, balancing, trace context)",
                    12
                ),
                ("libc: system call wrappers, other", 8),
            ]
        );
        let counted: u64 = components.iter().map(|(_, n)| n).sum();
        assert_eq!(Some(counted), totals(&dump));
    }
}
