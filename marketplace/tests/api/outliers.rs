//! Replicas that fail where it matters: one that answers health at once but
//! Recommend only after the deadline (outlier ejection with back-off, no
//! retry without time left), one slow but in time (passed over while its
//! calls pile up), and all of them sick (the retry budget).

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::Router;
use marketplace::Settings;
use protobufs::v1::{
    Book, Category, ListBooksRequest, ListBooksResponse, RecommendRequest, RecommendResponse,
    recommendations_service_server::{RecommendationsService, RecommendationsServiceServer},
};
use service_kit::testing::{HostsFile, free_addr};
use tokio::time::Instant;
use tonic::{Request, Response, Status, codegen::tokio_stream::Stream};

use crate::helpers::{Upstream, admin_get, book_titles, get, marketplace_with};

/// The name the replicas stand behind.
const NAME: &str = "recommendations";

/// What a fake replica does with Recommend (health always says SERVING).
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers after this long.
    Slow(Duration),
    /// Fails with UNAVAILABLE at once.
    Sick,
}

#[derive(Clone)]
struct Fake {
    behaviour: Behaviour,
    calls: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl RecommendationsService for Fake {
    async fn recommend(
        &self,
        _: Request<RecommendRequest>,
    ) -> Result<Response<RecommendResponse>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match self.behaviour {
            Behaviour::Slow(delay) => {
                tokio::time::sleep(delay).await;
                let book = |id| Book {
                    id,
                    title: format!("Slow book {id}"),
                    author: "A. Author".to_owned(),
                    category: Category::Mystery as i32,
                };
                Ok(Response::new(RecommendResponse {
                    books: (1..=3).map(book).collect(),
                }))
            }
            Behaviour::Sick => Err(Status::unavailable("sick")),
        }
    }

    type ListBooksStream =
        Pin<Box<dyn Stream<Item = Result<ListBooksResponse, Status>> + Send + 'static>>;

    async fn list_books(
        &self,
        _: Request<ListBooksRequest>,
    ) -> Result<Response<Self::ListBooksStream>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
}

/// A fake replica on `addr`; its count of Recommend calls.
async fn fake(addr: SocketAddr, behaviour: Behaviour) -> Arc<AtomicU64> {
    let calls = Arc::new(AtomicU64::new(0));
    let service = Fake {
        behaviour,
        calls: calls.clone(),
    };
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("a free address");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(RecommendationsServiceServer::new(service))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    calls
}

/// A marketplace over the replicas in `hosts` on `port`, with the test's
/// short deadline and ejections: the production defaults divided by ten.
async fn marketplace(hosts: &HostsFile, port: u16) -> (Router, SocketAddr) {
    marketplace_with(Settings {
        recommendations_host: NAME.to_owned(),
        recommendations_port: port,
        hosts_file: Some(hosts.path()),
        resolve_interval: Duration::from_millis(100),
        rpc_timeout: Duration::from_millis(100),
        base_ejection_time: Duration::from_millis(200),
        ..Settings::for_tests(SocketAddr::from(([127, 0, 0, 1], port)))
    })
    .await
}

/// Loads pages on `workers` concurrent tasks for `run`; the time (since
/// the start) and outcome of each.
async fn load(router: &Router, workers: usize, run: Duration) -> Vec<(Duration, bool)> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move {
                let mut pages = Vec::new();
                // Bounded: at most 100,000 pages per worker.
                for _ in 0..100_000 {
                    if started.elapsed() >= run {
                        break;
                    }
                    let (response, html) = get(&router, "/").await;
                    let ok = response.status() == 200 && book_titles(&html).len() == 3;
                    pages.push((started.elapsed(), ok));
                }
                pages
            })
        })
        .collect();
    let mut pages = Vec::new();
    for task in tasks {
        pages.extend(task.await.expect("no panic"));
    }
    pages
}

/// A real replica on 127.0.0.2 and a fake one on 127.0.0.3 (same port)
/// answering Recommend after `delay`, behind one name; the fake's count of
/// calls, the hosts file, and a marketplace over both.
async fn healthy_and_slow(
    delay: Duration,
) -> (Upstream, Arc<AtomicU64>, HostsFile, (Router, SocketAddr)) {
    let healthy = Upstream::start_on(SocketAddr::from(([127, 0, 0, 2], 0)), None).await;
    let port = healthy.addr.port();
    let slow_addr = SocketAddr::from(([127, 0, 0, 3], port));
    let slow_calls = fake(slow_addr, Behaviour::Slow(delay)).await;
    let hosts = HostsFile::new(NAME, [healthy.addr, slow_addr]);
    let marketplace = marketplace(&hosts, port).await;
    (healthy, slow_calls, hosts, marketplace)
}

/// Asserts enough pages to judge (1,000), and at most 0.1 % of them
/// degraded (`false`).
fn assert_at_most_one_in_a_thousand_degraded(pages: &[bool]) {
    assert!(
        pages.len() >= 1_000,
        "too few pages to judge: {}",
        pages.len()
    );
    let degraded = pages.iter().filter(|ok| !**ok).count();
    assert!(
        degraded * 1000 <= pages.len(),
        "{degraded} of {} pages degraded (over 0.1 %)",
        pages.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_slow_only_on_recommend_is_ejected_for_longer_and_longer() {
    let (_healthy, slow_calls, _hosts, (router, admin)) =
        healthy_and_slow(Duration::from_secs(5)).await;

    let pages = load(&router, 4, Duration::from_secs(8)).await;

    // From ten deadlines on, as the issue asks from 10 s on with the
    // production deadline of 1 s.
    let settled: Vec<bool> = pages
        .iter()
        .filter(|(at, _)| *at >= Duration::from_secs(1))
        .map(|(_, ok)| *ok)
        .collect();
    eprintln!(
        "{} pages, {} of the {} after 1 s degraded; the slow replica got {} calls",
        pages.len(),
        settled.iter().filter(|ok| !**ok).count(),
        settled.len(),
        slow_calls.load(Ordering::Relaxed)
    );
    assert_at_most_one_in_a_thousand_degraded(&settled);
    // A deadline miss leaves no time for a retry: none was attempted (it
    // would have been cancelled at once).
    let metrics = admin_get(admin, "/metrics").await;
    assert!(!metrics.contains(r#"code="CANCELLED""#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_slow_but_in_time_gets_few_calls_while_they_pile_up_on_it() {
    // Half the test's deadline: never ejected, only slow.
    let (_healthy, slow_calls, _hosts, (router, _)) =
        healthy_and_slow(Duration::from_millis(50)).await;

    let pages = load(&router, 8, Duration::from_secs(2)).await;

    let slow_calls = slow_calls.load(Ordering::Relaxed) as usize;
    let pages: Vec<bool> = pages.into_iter().map(|(_, ok)| ok).collect();
    eprintln!(
        "{} pages, {} degraded; the slow replica got {slow_calls} calls",
        pages.len(),
        pages.iter().filter(|ok| !**ok).count()
    );
    // Round-robin would give it every other call, and every other page its
    // pace. Here it gets what keeps its calls in flight no more than the
    // other's: about 5 % on an idle machine.
    assert!(
        slow_calls * 5 <= pages.len(),
        "the slow replica got {slow_calls} calls of {} pages (over 20 %)",
        pages.len()
    );
    assert_at_most_one_in_a_thousand_degraded(&pages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_replica_is_sick_retries_stay_within_the_budget() {
    let port = free_addr([127, 0, 0, 2]).port();
    let addrs = [
        SocketAddr::from(([127, 0, 0, 2], port)),
        SocketAddr::from(([127, 0, 0, 3], port)),
    ];
    let calls = [
        fake(addrs[0], Behaviour::Sick).await,
        fake(addrs[1], Behaviour::Sick).await,
    ];
    let hosts = HostsFile::new(NAME, addrs);
    let (router, _) = marketplace(&hosts, port).await;

    let started = Instant::now();
    let pages = load(&router, 2, Duration::from_secs(2)).await;
    let seconds = started.elapsed().as_secs() + 1;

    let calls: u64 = calls.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let pages = pages.len() as u64;
    eprintln!("{pages} pages made {calls} calls in {seconds} s");
    assert!(pages >= 200, "too few pages to judge: {pages}");
    assert!(
        calls <= pages + pages / 5 + 10 * seconds,
        "{calls} calls for {pages} pages: over the retry budget (20 % + 10/s)"
    );
}
