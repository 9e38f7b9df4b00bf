//! The balancing end to end with real processes: three recommendations
//! replicas on 127.0.0.2, .3 and .4 (one port) behind one name in a hosts
//! file, a marketplace process, and page loads over TCP while replicas are
//! killed, restarted and added. Every step must lose no page.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use service_kit::testing::{HostsFile, Process, free_addr};

use crate::end_to_end::{marketplace_behind, recommendations_binary};

const NAME: &str = "recommendations";

struct Replica {
    process: Process,
    addr: SocketAddr,
    admin: String,
}

fn start_replica(binary: &Path, addr: SocketAddr) -> Replica {
    let mut process = Process::start(
        binary,
        &[
            &format!("--listen={addr}"),
            "--admin-listen=127.0.0.1:0",
            "--drain-timeout=5s",
        ],
    );
    let admin = process.serving()["admin"]
        .as_str()
        .expect("an address")
        .to_owned();
    Replica {
        process,
        addr,
        admin,
    }
}

/// Recommend calls a replica answered OK, from its own metrics.
async fn served(replica: &Replica) -> u64 {
    crate::helpers::recommend_calls_at(&replica.admin).await
}

/// The marketplace's `marketplace_replicas` gauge: (in rotation, out of
/// rotation, spare).
async fn replica_states(admin: &str) -> (u64, u64, u64) {
    let metrics = crate::helpers::admin_get(&admin, "/metrics").await;
    let state = |name: &str| {
        let series = format!("marketplace_replicas{{state=\"{name}\"}}");
        crate::helpers::metric_value(&metrics, &series)
            .map(|value| value as u64)
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    (
        state("in_rotation"),
        state("out_of_rotation"),
        state("spare"),
    )
}

/// The gauge once it reads `expected`, or after 10 s whatever it reads:
/// ejections and health checks take their time.
async fn settled_states(admin: &str, expected: (u64, u64, u64)) -> (u64, u64, u64) {
    let mut states = replica_states(admin).await;
    for _ in 0..100 {
        if states == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        states = replica_states(admin).await;
    }
    states
}

/// Page loads on a few concurrent connections until stopped; counts the
/// pages that failed (an HTTP error, or the "unavailable" notice).
struct Load {
    stop: Arc<AtomicBool>,
    pages: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let pages: Arc<AtomicUsize> = Arc::default();
        let failed: Arc<AtomicUsize> = Arc::default();
        let workers = (0..4)
            .map(|_| {
                let (url, stop, pages, failed) = (
                    url.clone(),
                    stop.clone(),
                    Arc::clone(&pages),
                    Arc::clone(&failed),
                );
                tokio::spawn(async move {
                    let client = service_kit::tls::http_client().expect("an HTTP client");
                    // Bounded: a run never loads more than 20,000 pages per worker.
                    for _ in 0..20_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let ok = match client.get(&url).send().await {
                            Ok(response) if response.status() == 200 => response
                                .text()
                                .await
                                .is_ok_and(|html| html.matches("<li>").count() == 3),
                            _ => false,
                        };
                        pages.fetch_add(1, Ordering::Relaxed);
                        if !ok {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            pages,
            failed,
            workers,
        }
    }

    fn pages(&self) -> usize {
        self.pages.load(Ordering::Relaxed)
    }

    /// Waits until `more` pages have loaded since now.
    async fn wait_for(&self, more: usize) {
        let target = self.pages() + more;
        while self.pages() < target {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops and returns (pages loaded, pages failed).
    async fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in std::mem::take(&mut self.workers) {
            worker.await.expect("no panic");
        }
        (self.pages(), self.failed.load(Ordering::Relaxed))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_replicas_that_die_restart_and_join_without_a_lost_page() {
    let recommendations = recommendations_binary();
    let port = free_addr([127, 0, 0, 2]).port();
    let addrs: Vec<SocketAddr> = (2..=5)
        .map(|host| SocketAddr::from(([127, 0, 0, host], port)))
        .collect();
    let mut replicas: Vec<Replica> = addrs[..3]
        .iter()
        .map(|addr| start_replica(&recommendations, *addr))
        .collect();
    let hosts = HostsFile::new(NAME, addrs[..3].iter().copied());
    let (marketplace, url, admin) = marketplace_behind(
        &hosts.path(),
        &[
            &format!("--recommendations-port={port}"),
            "--resolve-interval=200ms",
            "--rpc-timeout=2s",
        ],
    );

    // 1. Spread: each of three healthy replicas gets 25 % to 42 % of 3,000 pages.
    let load = Load::start(url.clone());
    load.wait_for(3_000).await;
    let (pages, failed) = load.finish().await;
    let mut counts = Vec::new();
    for replica in &replicas {
        counts.push(served(replica).await);
    }
    let total: u64 = counts.iter().sum();
    eprintln!("spread: {pages} pages, {failed} failed, calls per replica {counts:?}");
    assert_eq!(
        failed, 0,
        "{failed} of {pages} pages failed while all replicas were up"
    );
    for count in &counts {
        let share = *count as f64 / total as f64;
        assert!(
            (0.25..=0.42).contains(&share),
            "uneven spread over {pages} pages: {counts:?}"
        );
    }

    // 2. SIGKILL one replica under load.
    let load = Load::start(url.clone());
    load.wait_for(200).await;
    replicas[2].process.kill();
    load.wait_for(500).await;
    let (pages, failed) = load.finish().await;
    eprintln!("SIGKILL: {pages} pages, {failed} failed");
    assert_eq!(
        failed, 0,
        "{failed} of {pages} pages failed around a SIGKILL"
    );
    // The killed replica failed a call and is out of rotation, as the
    // gauge says.
    assert_eq!(
        settled_states(&admin, (2, 1, 0)).await,
        (2, 1, 0),
        "after a SIGKILL: (in, out, spare)"
    );

    // 3. SIGTERM one replica under load (it drains), then restart it.
    let load = Load::start(url.clone());
    load.wait_for(200).await;
    let stopped = replicas.remove(1);
    assert_eq!(stopped.process.terminate(), Some(0));
    load.wait_for(300).await;
    replicas.insert(1, start_replica(&recommendations, stopped.addr));
    load.wait_for(500).await;
    let (pages, failed) = load.finish().await;
    eprintln!("SIGTERM and restart: {pages} pages, {failed} failed");
    assert_eq!(
        failed, 0,
        "{failed} of {pages} pages failed around a rolling restart"
    );

    // 4. A fourth replica joins: it gets calls after the next resolution.
    let newcomer = start_replica(&recommendations, addrs[3]);
    hosts.write(NAME, [addrs[0], addrs[1], addrs[3]]);
    let load = Load::start(url);
    for _ in 0..200 {
        if served(&newcomer).await > 0 {
            break;
        }
        load.wait_for(20).await;
    }
    let joined = served(&newcomer).await;
    let (pages, failed) = load.finish().await;
    eprintln!("new replica: {joined} calls within {pages} pages, {failed} failed");
    assert!(joined > 0, "the new replica got no call in {pages} pages");
    assert_eq!(
        failed, 0,
        "{failed} of {pages} pages failed while a replica joined"
    );

    // 5. The series of the replica that left (the one killed in 2) are
    //    gone from the marketplace's metrics; those of the others remain.
    let series = |metrics: &str, addr: SocketAddr| {
        metrics
            .lines()
            .filter(|line| line.contains(&format!("server_address=\"{}\"", addr.ip())))
            .count()
    };
    let metrics = crate::helpers::admin_get(&admin, "/metrics").await;
    assert_eq!(series(&metrics, addrs[2]), 0, "{metrics}");
    assert!(series(&metrics, addrs[3]) > 0, "{metrics}");
    // The restarted replica is back once its ejection is over.
    assert_eq!(
        settled_states(&admin, (3, 0, 0)).await,
        (3, 0, 0),
        "three replicas in rotation: (in, out, spare)"
    );

    assert_eq!(marketplace.terminate(), Some(0));
}
