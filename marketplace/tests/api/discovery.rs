//! Discovery that cannot be poisoned or blocked, with the real binaries: a
//! name that stands for thousands of addresses, nearly all dead, and a
//! hosts file that is a FIFO.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::end_to_end::{Process, recommendations_binary};

const NAME: &str = "recommendations";

/// Loads the homepage once: whether it showed three books.
async fn page_ok(client: &reqwest::Client, url: &str) -> bool {
    match client.get(url).send().await {
        Ok(response) if response.status() == 200 => response
            .text()
            .await
            .is_ok_and(|html| html.matches("<li>").count() == 3),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_thousands_of_dead_addresses_still_serves_from_the_live_one() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("bound")
        .port();
    let live = SocketAddr::from(([127, 0, 0, 1], port));
    let _replica = Process::start(
        &recommendations_binary(),
        &[&format!("--listen={live}"), "--admin-listen=127.0.0.1:0"],
    );
    // 2,000 loopback addresses where nothing listens (refused at once),
    // and the live one among them.
    let mut hosts = String::new();
    for i in 0..2_000u32 {
        let [_, _, b, c] = (0x7f01_0000 + i).to_be_bytes();
        hosts.push_str(&format!("127.1.{b}.{c} {NAME}\n"));
    }
    hosts.push_str(&format!("127.0.0.1 {NAME}\n"));
    let dir = tempfile::tempdir().expect("a temp dir");
    let hosts_file = dir.path().join("hosts");
    std::fs::write(&hosts_file, hosts).expect("written");
    let mut marketplace = Process::start(
        &PathBuf::from(env!("CARGO_BIN_EXE_marketplace")),
        &[
            "--listen=127.0.0.1:0",
            "--admin-listen=127.0.0.1:0",
            &format!("--recommendations-host={NAME}"),
            &format!("--recommendations-port={port}"),
            &format!("--hosts-file={}", hosts_file.display()),
            "--resolve-interval=100ms",
            "--max-replicas=64",
        ],
    );
    let serving = marketplace.serving();
    let url = format!("http://{}/", serving["http"].as_str().expect("an address"));
    let admin = serving["admin"].as_str().expect("an address").to_owned();
    let client = reqwest::Client::new();

    // The pool swaps its dead members for spares until it holds the live
    // one (a bounded number of rounds: 2,000 addresses, 63 tried a round).
    let mut found = false;
    for _ in 0..2_000 {
        if page_ok(&client, &url).await {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(found, "no page was served from the live replica");
    // From then on every page is served: the live replica is the one in
    // rotation, and the spares being tried are not given pages.
    let mut failed = 0;
    for _ in 0..200 {
        if !page_ok(&client, &url).await {
            failed += 1;
        }
    }
    assert_eq!(
        failed, 0,
        "{failed} of 200 pages failed after the live replica was found"
    );
    // Never more than the cap of replicas at once: the per-replica series
    // of those swapped out are removed.
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("text");
    let mut endpoints: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("grpc_client_endpoint_requests_total"))
        .filter_map(|line| line.split("endpoint=\"").nth(1)?.split('"').next())
        .collect();
    endpoints.sort_unstable();
    endpoints.dedup();
    assert!(
        endpoints.len() <= 64,
        "{} replicas in the metrics",
        endpoints.len()
    );

    assert_eq!(marketplace.terminate(), Some(0));
}

#[tokio::test]
async fn a_hosts_file_that_is_a_fifo_neither_blocks_pages_nor_shutdown() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let fifo = dir.path().join("hosts");
    operations::testing::make_fifo(&fifo);
    let mut marketplace = Process::start(
        &PathBuf::from(env!("CARGO_BIN_EXE_marketplace")),
        &[
            "--listen=127.0.0.1:0",
            "--admin-listen=127.0.0.1:0",
            &format!("--recommendations-host={NAME}"),
            &format!("--hosts-file={}", fifo.display()),
            "--resolve-interval=100ms",
        ],
    );
    let url = format!(
        "http://{}/",
        marketplace.serving()["http"].as_str().expect("an address")
    );

    // No replica is known: the page renders without recommendations.
    let response = reqwest::get(&url).await.expect("the homepage answers");
    assert_eq!(response.status(), 200);
    let html = response.text().await.expect("HTML");
    assert!(!html.contains("<li>"), "{html}");
    // And SIGTERM stops it, with nothing waiting on the FIFO.
    assert_eq!(marketplace.terminate(), Some(0));
}
