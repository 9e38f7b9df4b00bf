//! Discovery that cannot be poisoned or blocked, with the real binaries: a
//! name that stands for thousands of addresses, nearly all dead, and a
//! hosts file that is a FIFO.

use std::{net::SocketAddr, time::Duration};

use service_kit::testing::{HostsFile, Process, free_addr};

use crate::end_to_end::{marketplace_behind, recommendations_binary};

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
    let live = free_addr([127, 0, 0, 1]);
    let port = live.port();
    let _replica = Process::start(
        &recommendations_binary(),
        &[&format!("--listen={live}"), "--admin-listen=127.0.0.1:0"],
    );
    // 2,000 loopback addresses where nothing listens (refused at once),
    // and the live one among them.
    let dead = (0..2_000u32).map(|i| SocketAddr::from(((0x7f01_0000 + i).to_be_bytes(), port)));
    let hosts = HostsFile::new(NAME, dead.chain([live]));
    let (marketplace, url, admin) = marketplace_behind(
        &hosts.path(),
        &[
            &format!("--recommendations-port={port}"),
            "--resolve-interval=100ms",
            "--max-replicas=64",
        ],
    );
    let client = service_kit::tls::http_client().expect("an HTTP client");

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
    let metrics = crate::helpers::admin_get(&admin, "/metrics").await;
    let mut endpoints: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("marketplace_replica_calls_total"))
        .filter_map(|line| line.split("server_address=\"").nth(1)?.split('"').next())
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
    service_kit::testing::make_fifo(&fifo);
    let (marketplace, url, _) = marketplace_behind(&fifo, &["--resolve-interval=100ms"]);

    // No replica is known: the page renders without recommendations.
    let response = service_kit::testing::http_get(&url)
        .await
        .expect("the homepage answers");
    assert_eq!(response.status(), 200);
    let html = response.text().await.expect("HTML");
    assert!(!html.contains("<li>"), "{html}");
    // And SIGTERM stops it, with nothing waiting on the FIFO.
    assert_eq!(marketplace.terminate(), Some(0));
}

/// SIGHUP re-reads the hosts file at once (with resolution otherwise an
/// hour away), and never stops the marketplace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reads_the_hosts_file_again_and_never_stops_the_marketplace() {
    let live = free_addr([127, 0, 0, 1]);
    let _replica = Process::start(
        &recommendations_binary(),
        &[&format!("--listen={live}"), "--admin-listen=127.0.0.1:0"],
    );
    // At first the name stands for an address where nothing listens.
    let hosts = HostsFile::new(NAME, [SocketAddr::from(([127, 0, 0, 9], live.port()))]);
    let (mut marketplace, url, _) = marketplace_behind(
        &hosts.path(),
        &[
            &format!("--recommendations-port={}", live.port()),
            "--resolve-interval=1h",
        ],
    );
    let client = service_kit::tls::http_client().expect("an HTTP client");
    assert!(!page_ok(&client, &url).await, "no live replica yet");

    hosts.write(NAME, [live]);
    marketplace.hangup();

    let mut found = false;
    for _ in 0..500 {
        if page_ok(&client, &url).await {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        found,
        "the replica the hosts file now names serves the page"
    );
    assert!(
        marketplace.is_running(),
        "SIGHUP does not stop the marketplace"
    );
    drop(client);
    let exit = tokio::task::spawn_blocking(move || marketplace.terminate());
    assert_eq!(
        exit.await.expect("no panic"),
        Some(0),
        "SIGTERM still drains"
    );
}
