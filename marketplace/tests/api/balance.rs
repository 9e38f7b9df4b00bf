//! Spreading calls over every replica, and riding through losing one:
//! replicas on 127.0.0.2, .3 and .4 (same port) behind one name, listed in a
//! hosts file the test controls.

use std::{net::SocketAddr, time::Duration};

use axum::Router;
use marketplace::Settings;
use service_kit::testing::HostsFile;

use crate::helpers::{Upstream, book_titles, get, marketplace_with};

/// The name the replicas stand behind.
const NAME: &str = "recommendations";

/// Replicas on 127.0.0.{hosts} sharing one port.
async fn replicas(hosts: &[u8]) -> Vec<Upstream> {
    let first = Upstream::start_on(SocketAddr::from(([127, 0, 0, hosts[0]], 0)), None).await;
    let port = first.addr.port();
    let mut all = vec![first];
    for host in &hosts[1..] {
        all.push(Upstream::start_on(SocketAddr::from(([127, 0, 0, *host], port)), None).await);
    }
    all
}

async fn marketplace_for(hosts: &HostsFile, port: u16) -> Router {
    let settings = Settings {
        recommendations_host: NAME.to_owned(),
        recommendations_port: port,
        hosts_file: Some(hosts.path()),
        resolve_interval: Duration::from_millis(100),
        rpc_timeout: Duration::from_secs(2),
        ..Settings::for_tests(SocketAddr::from(([127, 0, 0, 1], port)))
    };
    marketplace_with(settings).await.0
}

/// Loads the homepage `count` times; panics on any page without 3 books.
async fn load_pages(router: &Router, count: usize) {
    for i in 0..count {
        let (response, html) = get(router, "/").await;
        assert_eq!(response.status(), 200, "page {i}");
        assert_eq!(
            book_titles(&html).len(),
            3,
            "page {i} lost its books: {html}"
        );
    }
}

#[tokio::test]
async fn calls_spread_evenly_over_three_replicas() {
    let replicas = replicas(&[2, 3, 4]).await;
    let hosts = HostsFile::new(NAME, replicas.iter().map(|r| r.addr));
    let router = marketplace_for(&hosts, replicas[0].addr.port()).await;

    load_pages(&router, 300).await;

    let mut counts = Vec::new();
    for replica in &replicas {
        counts.push(replica.recommend_calls().await);
    }
    let total: u64 = counts.iter().sum();
    assert_eq!(total, 300, "{counts:?}");
    for count in &counts {
        let share = *count as f64 / total as f64;
        assert!((0.25..=0.42).contains(&share), "uneven spread {counts:?}");
    }
}

#[tokio::test]
async fn a_replica_shutting_down_costs_no_page() {
    let mut replicas = replicas(&[2, 3, 4]).await;
    let hosts = HostsFile::new(NAME, replicas.iter().map(|r| r.addr));
    let router = marketplace_for(&hosts, replicas[0].addr.port()).await;
    load_pages(&router, 30).await;

    replicas.remove(1).stop().await;

    load_pages(&router, 100).await;
}

#[tokio::test]
async fn a_new_replica_gets_calls_after_the_next_resolution() {
    let mut replicas = replicas(&[2, 3]).await;
    let port = replicas[0].addr.port();
    let hosts = HostsFile::new(NAME, replicas.iter().map(|r| r.addr));
    let router = marketplace_for(&hosts, port).await;
    load_pages(&router, 10).await;

    replicas.push(Upstream::start_on(SocketAddr::from(([127, 0, 0, 4], port)), None).await);
    hosts.write(NAME, replicas.iter().map(|r| r.addr));

    let newcomer = &replicas[2];
    for _ in 0..100 {
        if newcomer.recommend_calls().await > 0 {
            break;
        }
        load_pages(&router, 5).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        newcomer.recommend_calls().await > 0,
        "the new replica never got a call"
    );
}

#[tokio::test]
async fn with_every_replica_down_the_page_still_renders_with_a_notice() {
    let mut replicas = replicas(&[2, 3]).await;
    let hosts = HostsFile::new(NAME, replicas.iter().map(|r| r.addr));
    let router = marketplace_for(&hosts, replicas[0].addr.port()).await;
    load_pages(&router, 4).await;

    while let Some(replica) = replicas.pop() {
        replica.stop().await;
    }
    let (response, html) = get(&router, "/").await;

    assert_eq!(response.status(), 200);
    assert!(
        html.contains("Recommendations are unavailable right now."),
        "{html}"
    );
}

/// A replica going away: it speaks HTTP/2 but answers the first request of
/// every connection with GOAWAY (NO_ERROR, last stream 0), refusing it, as
/// a server does to a call that raced its shutdown. The channel reports
/// such a call as UNAVAILABLE (the connection went away).
async fn refusing_replica(addr: SocketAddr) -> SocketAddr {
    use tokio::io::AsyncWriteExt as _;

    use crate::helpers::h2_frames::{self, GOAWAY, HEADERS, frame};

    async fn refuse(mut socket: tokio::net::TcpStream) -> std::io::Result<()> {
        h2_frames::accept(&mut socket).await?;
        while h2_frames::next(&mut socket).await?.kind != HEADERS {}
        // Last stream 0 and NO_ERROR: "nothing you sent was seen".
        socket.write_all(&frame(GOAWAY, 0, &[0; 8])).await?;
        socket.shutdown().await
    }

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("a free address");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(refuse(socket));
        }
    });
    addr
}

#[tokio::test]
async fn a_call_refused_by_a_replica_going_away_is_retried_on_another() {
    let refusing = refusing_replica(SocketAddr::from(([127, 0, 0, 2], 0))).await;
    let healthy =
        Upstream::start_on(SocketAddr::from(([127, 0, 0, 3], refusing.port())), None).await;
    let hosts = HostsFile::new(NAME, [refusing, healthy.addr]);
    let router = marketplace_for(&hosts, refusing.port()).await;

    load_pages(&router, 20).await;

    assert_eq!(healthy.recommend_calls().await, 20);
}
