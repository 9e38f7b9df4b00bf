//! Every replica cut off without a word, the way a partition does it: no
//! RST, no FIN, the bytes of open connections held and new ones never
//! answered. Pages in flight wait their deadline; after that, while no
//! replica is in rotation, pages render degraded at once instead of each
//! waiting the deadline; and they are full again within seconds of the
//! partition healing. (`cargo xtask chaos` does the same with the
//! kernel's packet filter, in network namespaces.)

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use service_kit::testing::{HostsFile, Process, free_addr};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::watch,
    time::Instant,
};

use crate::{end_to_end::recommendations_binary, helpers::metric_value};

const UNAVAILABLE: &str = "Recommendations are unavailable right now.";
/// The marketplace's deadline (its default).
const DEADLINE: Duration = Duration::from_secs(1);

/// A TCP proxy to one replica that can be cut: while cut, it moves no
/// byte either way (what was read is held) and connects nothing, and the
/// connections stay open, as through a partition that drops packets.
struct Partition {
    cut: watch::Sender<bool>,
}

impl Partition {
    async fn start(listen: SocketAddr, to: SocketAddr) -> Self {
        let listener = TcpListener::bind(listen).await.expect("a free address");
        let (cut, _) = watch::channel(false);
        let cuts = cut.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let cut = cuts.subscribe();
                tokio::spawn(async move {
                    passed(cut.clone()).await;
                    let Ok(outbound) = TcpStream::connect(to).await else {
                        return;
                    };
                    let (from_client, to_client) = inbound.into_split();
                    let (from_server, to_server) = outbound.into_split();
                    tokio::spawn(pump(from_client, to_server, cut.clone()));
                    pump(from_server, to_client, cut).await;
                });
            }
        });
        Self { cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

/// Waits while the link is cut.
async fn passed(mut cut: watch::Receiver<bool>) {
    // An error only means the proxy is gone with the test.
    let _ = cut.wait_for(|cut| !cut).await;
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: watch::Receiver<bool>,
) {
    let mut buffer = vec![0; 16 << 10];
    loop {
        passed(cut.clone()).await;
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        passed(cut.clone()).await;
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// One page: when it started (since the load began), how long it took,
/// and what came back.
#[derive(Debug)]
struct Page {
    started: Duration,
    took: Duration,
    outcome: Outcome,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Full,
    Degraded,
    Failed(String),
}

/// Pages fetched by 8 loops until `stop`.
fn load(url: String, stop: Arc<AtomicBool>, began: Instant) -> tokio::task::JoinHandle<Vec<Page>> {
    tokio::spawn(async move {
        let loops = (0..8).map(|_| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let client = service_kit::tls::http_client().expect("an HTTP client");
                let mut pages = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let outcome = match client.get(&url).send().await {
                        Ok(response) if response.status() == 200 => {
                            let html = response.text().await.unwrap_or_default();
                            if html.contains(UNAVAILABLE) {
                                Outcome::Degraded
                            } else {
                                Outcome::Full
                            }
                        }
                        Ok(response) => Outcome::Failed(format!("status {}", response.status())),
                        Err(err) => Outcome::Failed(err.to_string()),
                    };
                    pages.push(Page {
                        started: started - began,
                        took: started.elapsed(),
                        outcome,
                    });
                }
                pages
            })
        });
        let mut pages = Vec::new();
        for one in loops.collect::<Vec<_>>() {
            pages.extend(one.await.expect("no panic"));
        }
        pages.sort_by_key(|page| page.started);
        pages
    })
}

fn median(mut took: Vec<Duration>) -> Duration {
    took.sort();
    took.get(took.len() / 2).copied().unwrap_or_default()
}

fn recommendations() -> (Process, SocketAddr) {
    let mut process = Process::start(
        &recommendations_binary(),
        &["--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0"],
    );
    let serving = process.serving();
    let addr = Process::address(&serving, "grpc")
        .parse()
        .expect("an address");
    (process, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_replica_cut_off_pages_render_at_once_and_full_again_when_it_heals() {
    let (replica_a, a) = recommendations();
    let (replica_b, b) = recommendations();
    let port = free_addr([127, 0, 0, 2]).port();
    let fronts = [
        SocketAddr::from(([127, 0, 0, 2], port)),
        SocketAddr::from(([127, 0, 0, 3], port)),
    ];
    let partitions = [
        Partition::start(fronts[0], a).await,
        Partition::start(fronts[1], b).await,
    ];
    let hosts = HostsFile::new("recommendations", fronts);
    let mut marketplace = Process::start(
        &PathBuf::from(env!("CARGO_BIN_EXE_marketplace")),
        &[
            "--listen=127.0.0.1:0",
            "--admin-listen=127.0.0.1:0",
            "--recommendations-host=recommendations",
            &format!("--recommendations-port={port}"),
            &format!("--hosts-file={}", hosts.path().display()),
        ],
    );
    let serving = marketplace.serving();
    let url = format!("http://{}/", Process::address(&serving, "http"));
    let admin = Process::address(&serving, "admin");

    let began = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let pages = load(url, stop.clone(), began);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cut_at = began.elapsed();
    for partition in &partitions {
        partition.set_cut(true);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let healed_at = began.elapsed();
    for partition in &partitions {
        partition.set_cut(false);
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    let pages = pages.await.expect("no panic");
    let metrics = service_kit::testing::http_get(format!("http://{admin}/metrics"))
        .await
        .expect("answers")
        .text()
        .await
        .expect("a body");

    let failed: Vec<&Page> = pages
        .iter()
        .filter(|page| matches!(page.outcome, Outcome::Failed(_)))
        .collect();
    assert!(failed.is_empty(), "pages failed: {failed:?}");
    let before: Vec<&Page> = pages
        .iter()
        .filter(|p| p.started + p.took < cut_at)
        .collect();
    assert!(
        before.len() > 100 && before.iter().all(|p| p.outcome == Outcome::Full),
        "{} pages before the cut, not all full",
        before.len()
    );
    // In flight at the cut, or sent before the replicas were ejected: the
    // deadline bounds them.
    let slowest = pages.iter().map(|p| p.took).max().unwrap_or_default();
    assert!(
        slowest < DEADLINE + Duration::from_millis(300),
        "a page took {slowest:?}"
    );
    // Once every replica is out: degraded, at once.
    let cut: Vec<&Page> = pages
        .iter()
        .filter(|p| p.started >= cut_at + DEADLINE * 2 && p.started + p.took < healed_at)
        .collect();
    let took = median(cut.iter().map(|p| p.took).collect());
    eprintln!(
        "{} pages before the cut, {} in the cut after two deadlines (median {took:?})",
        before.len(),
        cut.len()
    );
    assert!(cut.len() > 100, "only {} pages during the cut", cut.len());
    assert!(cut.iter().all(|p| p.outcome == Outcome::Degraded));
    assert!(took < DEADLINE / 10, "median page {took:?} during the cut");
    // Healed: full pages again within seconds (probes every second).
    let first_full = pages
        .iter()
        .find(|p| p.started >= healed_at && p.outcome == Outcome::Full)
        .map(|p| p.started - healed_at)
        .expect("full pages after the partition heals");
    eprintln!("the first full page started {first_full:?} after the heal");
    assert!(first_full < Duration::from_secs(4), "{first_full:?}");
    let last: Vec<&Page> = pages
        .iter()
        .filter(|p| p.started >= healed_at + Duration::from_secs(5))
        .collect();
    assert!(!last.is_empty() && last.iter().all(|p| p.outcome == Outcome::Full));

    let unsent = metric_value(&metrics, "marketplace_calls_unsent_total").unwrap_or(0.0);
    assert!(unsent as usize >= cut.len(), "{unsent} calls unsent");
    let log = marketplace.log();
    let said = |level: &str, start: &str| {
        log.iter()
            .filter(|event| {
                event["level"] == level
                    && event["message"]
                        .as_str()
                        .is_some_and(|message| message.starts_with(start))
            })
            .count()
    };
    assert_eq!(
        said("WARN", "every recommendations replica is out of rotation"),
        1
    );
    assert_eq!(
        said(
            "INFO",
            "a recommendations replica is back in rotation: calls go out"
        ),
        1
    );
    for process in [marketplace, replica_a, replica_b] {
        tokio::task::spawn_blocking(move || process.terminate())
            .await
            .expect("no panic");
    }
}
