//! Both real binaries as processes: the homepage over TCP (the tutorial's
//! integration test), then SIGTERM, and both exit 0.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use service_kit::testing::Process;

/// The marketplace binary on free loopback ports, resolving
/// `recommendations` from the hosts file `hosts`, with `args` besides,
/// started and serving: (the process, the homepage's URL, the admin
/// listener's address).
pub fn marketplace_behind(hosts: &Path, args: &[&str]) -> (Process, String, String) {
    let hosts_file = format!("--hosts-file={}", hosts.display());
    let mut all = vec![
        "--listen=127.0.0.1:0",
        "--admin-listen=127.0.0.1:0",
        "--recommendations-host=recommendations",
        &hosts_file,
    ];
    all.extend_from_slice(args);
    let mut process = Process::start(&PathBuf::from(env!("CARGO_BIN_EXE_marketplace")), &all);
    let serving = process.serving();
    let url = format!("http://{}/", Process::address(&serving, "http"));
    let admin = Process::address(&serving, "admin");
    (process, url, admin)
}

/// The recommendations binary of this workspace, built if needed.
pub fn recommendations_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "recommendations",
            "--bin",
            "recommendations",
        ])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cannot build recommendations");
    let marketplace = PathBuf::from(env!("CARGO_BIN_EXE_marketplace"));
    marketplace.with_file_name("recommendations")
}

/// Runs `binary healthcheck` with `flag` and returns whether it passed.
fn healthcheck(binary: &PathBuf, flag: &str) -> bool {
    Command::new(binary)
        .args([flag, "healthcheck"])
        .stderr(Stdio::null())
        .status()
        .expect("the binary runs")
        .success()
}

#[tokio::test]
async fn both_binaries_serve_the_homepage_and_exit_cleanly_on_sigterm() {
    let recommendations_bin = recommendations_binary();
    let marketplace_bin = PathBuf::from(env!("CARGO_BIN_EXE_marketplace"));
    let mut recommendations = Process::start(
        &recommendations_bin,
        &["--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0"],
    );
    let grpc = recommendations.serving()["grpc"]
        .as_str()
        .expect("an address")
        .to_owned();
    let (host, port) = grpc.rsplit_once(':').expect("host:port");
    let mut marketplace = Process::start(
        &marketplace_bin,
        &[
            "--listen=127.0.0.1:0",
            "--admin-listen=127.0.0.1:0",
            &format!("--recommendations-host={host}"),
            &format!("--recommendations-port={port}"),
        ],
    );
    let serving = marketplace.serving();
    let http = serving["http"].as_str().expect("an address").to_owned();
    let admin = serving["admin"].as_str().expect("an address").to_owned();

    let homepage = service_kit::testing::http_get(format!("http://{http}/"))
        .await
        .expect("the homepage answers")
        .text()
        .await
        .expect("HTML");

    assert!(
        homepage.contains("<title>Online Books For You</title>"),
        "{homepage}"
    );
    // The tutorial's own assertion, word for word: `count("<li>") == 3`.
    assert_eq!(homepage.matches("<li>").count(), 3, "{homepage}");
    // The containers' health checks: the binaries' own subcommands.
    assert!(healthcheck(
        &recommendations_bin,
        &format!("--listen={grpc}")
    ));
    assert!(healthcheck(
        &marketplace_bin,
        &format!("--admin-listen={admin}")
    ));
    assert_eq!(marketplace.terminate(), Some(0));
    assert_eq!(recommendations.terminate(), Some(0));
    assert!(!healthcheck(
        &recommendations_bin,
        &format!("--listen={grpc}")
    ));
    assert!(!healthcheck(
        &marketplace_bin,
        &format!("--admin-listen={admin}")
    ));
}
