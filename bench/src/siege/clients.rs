//! The clients of the scenarios: well-behaved callers measured while an
//! attack runs, and one call of each kind, as a boxed future.

use super::*;

/// One call of a probe: whether it succeeded.
pub(super) type Call = std::pin::Pin<Box<dyn Future<Output = bool> + Send>>;

pub(super) const RECOMMEND: &str = "/bookstore.recommendations.v1.RecommendationsService/Recommend";

pub(super) const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// `RecommendRequest{user_id: 1, category: MYSTERY, max_results: 3}`.
pub(super) const MESSAGE: [u8; 6] = [0x08, 0x01, 0x10, 0x01, 0x18, 0x03];

pub(super) const HOMEPAGE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: siege\r\n\r\n";

/// Runs `load` while `probe` calls back to back and the `readiness` and
/// `liveness` probes ask every 10 ms, as the kubelet would; returns what the
/// load gave, the three tallies, and how many seconds it all took.
pub(super) async fn during<T>(
    load: impl Future<Output = T>,
    probe: impl FnMut() -> Call,
    readiness: impl FnMut() -> Call,
    liveness: impl FnMut() -> Call,
) -> (T, [Tally; 3], f64) {
    let stop = Stop::default();
    let started = Instant::now();
    let every = Duration::from_millis(10);
    let (outcome, probe, readiness, liveness) = tokio::join!(
        async {
            let outcome = load.await;
            stop.now();
            outcome
        },
        probe::repeat(probe, Duration::ZERO, usize::MAX, stop.clone()),
        probe::repeat(readiness, every, usize::MAX, stop.clone()),
        probe::repeat(liveness, every, usize::MAX, stop.clone()),
    );
    (
        outcome,
        [probe, readiness, liveness],
        started.elapsed().as_secs_f64(),
    )
}

/// 200 Recommend calls and 20 health checks, each on a connection of its
/// own, while an attack goes on.
pub(super) async fn well_behaved_grpc(addr: SocketAddr) -> (Tally, Tally) {
    let stop = Stop::default();
    tokio::join!(
        probe::repeat(recommend_call(addr), Duration::ZERO, 200, stop.clone()),
        probe::repeat(health_call(addr), Duration::from_millis(10), 20, stop),
    )
}

/// `calls` homepages, back to back.
pub(super) async fn well_behaved_pages(addr: SocketAddr, calls: usize) -> Tally {
    let Ok(http) = service_kit::tls::http_client() else {
        // No client: every call failed.
        return Tally {
            ok: Vec::new(),
            failed: calls as u64,
        };
    };
    probe::repeat(
        page_call(&http, format!("http://{addr}/"), Duration::from_secs(10)),
        Duration::from_millis(10),
        calls,
        Stop::default(),
    )
    .await
}

/// A connection of its own to `addr`, each call waiting up to `timeout`.
pub(super) fn channel(addr: SocketAddr, timeout: Duration) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a socket address makes a valid URI")
        .timeout(timeout)
        .connect_lazy()
}

pub(super) fn recommend_call(addr: SocketAddr) -> impl FnMut() -> Call {
    let client = RecommendationsServiceClient::new(channel(addr, Duration::from_secs(10)));
    move || {
        let mut client = client.clone();
        Box::pin(async move {
            let request = v1::RecommendRequest {
                user_id: 1,
                category: v1::Category::Mystery as i32,
                max_results: 3,
            };
            client.recommend(request).await.is_ok()
        })
    }
}

pub(super) fn health_call(addr: SocketAddr) -> impl FnMut() -> Call {
    let client = HealthClient::new(channel(addr, PROBE_TIMEOUT));
    move || {
        let mut client = client.clone();
        Box::pin(async move {
            client
                .check(HealthCheckRequest::default())
                .await
                .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
        })
    }
}

pub(super) fn page_call(
    http: &reqwest::Client,
    url: String,
    timeout: Duration,
) -> impl FnMut() -> Call {
    let http = http.clone();
    move || {
        let request = http.get(&url).timeout(timeout);
        Box::pin(async move {
            request
                .send()
                .await
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
        })
    }
}

pub(super) async fn scrape(admin: SocketAddr) -> anyhow::Result<String> {
    let text = service_kit::tls::http_client()?
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("scraping http://{admin}/metrics"))?
        .text()
        .await?;
    Ok(text)
}

pub(super) fn p99(tally: &Tally) -> String {
    tally
        .latency()
        .map_or_else(|| "n/a".to_owned(), |l| micros(l.p99_us))
}
