//! The chaos run's steady load, and what it records: pages from the
//! marketplace (full, degraded or failed) and Recommend calls made with the
//! marketplace's own client (over every replica the hosts file lists), by
//! the second, each second with a histogram of latencies. Bounded: one
//! slot per second of the run, whatever the rate.

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Parser as _;
use prometheus_client::registry::Registry;
use protobufs::Category;
use service_kit::{
    metrics::{RpcMetrics, Side},
    tls::{CertificateMetrics, LiveTls},
};

use super::fleet::MARKETPLACE;

/// What a degraded page says in place of recommendations.
const UNAVAILABLE: &str = "Recommendations are unavailable right now.";

/// Latency buckets: below 8 µs one per µs, then 8 per power of two (each
/// within 12.5 %), up to 2^29 µs.
pub const BUCKETS: usize = 224;

/// A latency histogram.
#[derive(Clone, Debug)]
pub struct Histogram(pub Box<[u32; BUCKETS]>);

impl Default for Histogram {
    fn default() -> Self {
        Self(Box::new([0; BUCKETS]))
    }
}

impl Histogram {
    fn bucket(micros: u64) -> usize {
        if micros < 8 {
            return micros as usize;
        }
        let log = 63 - u64::from(micros.leading_zeros());
        let sub = (micros >> (log - 3)) & 7;
        (((log - 2) * 8 + sub) as usize).min(BUCKETS - 1)
    }

    /// The least latency of bucket `bucket`.
    fn floor(bucket: usize) -> Duration {
        if bucket < 8 {
            return Duration::from_micros(bucket as u64);
        }
        let (log, sub) = (bucket as u64 / 8 + 2, bucket as u64 % 8);
        Duration::from_micros((8 + sub) << (log - 3))
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0[Self::bucket(micros)] += 1;
    }

    pub fn add(&mut self, other: &Self) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine += theirs;
        }
    }

    /// The `q` quantile (within a bucket's 12.5 %), zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        let total: u64 = self.0.iter().map(|n| u64::from(*n)).sum();
        let rank = (total as f64 * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.0.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= rank && total > 0 {
                return Self::floor(bucket);
            }
        }
        Duration::ZERO
    }
}

/// The outcomes of one kind of request in a second (or a window).
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Pages with recommendations; calls answered OK.
    pub ok: u64,
    /// Pages without recommendations (HTTP 200).
    pub degraded: u64,
    /// Pages other than 200, or not answered; calls failed.
    pub failed: u64,
    pub latency: Histogram,
    /// The slowest.
    pub max: Duration,
}

impl Tally {
    pub fn total(&self) -> u64 {
        self.ok + self.degraded + self.failed
    }

    pub fn add(&mut self, other: &Self) {
        self.ok += other.ok;
        self.degraded += other.degraded;
        self.failed += other.failed;
        self.latency.add(&other.latency);
        self.max = self.max.max(other.max);
    }
}

/// One second of the run.
#[derive(Clone, Debug, Default)]
pub struct Second {
    pub pages: Tally,
    pub calls: Tally,
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Ok,
    Degraded,
    Failed,
}

/// The seconds of the run, recorded by every load loop.
#[derive(Debug)]
pub struct Recorder {
    started: Instant,
    seconds: Mutex<Vec<Second>>,
    /// Events past the last second, not recorded (a run that outlasted
    /// its room: the report says so).
    dropped: AtomicU64,
}

impl Recorder {
    /// A recorder of `seconds` seconds from now; later events are dropped.
    pub fn new(seconds: usize) -> Self {
        Self {
            started: Instant::now(),
            seconds: Mutex::new(vec![Second::default(); seconds]),
            dropped: AtomicU64::new(0),
        }
    }

    /// Seconds since the start.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn record(&self, page: bool, began: Instant, outcome: Outcome) {
        let latency = began.elapsed();
        let second = began.duration_since(self.started).as_secs() as usize;
        let mut seconds = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        let Some(second) = seconds.get_mut(second) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let tally = if page {
            &mut second.pages
        } else {
            &mut second.calls
        };
        match outcome {
            Outcome::Ok => tally.ok += 1,
            Outcome::Degraded => tally.degraded += 1,
            Outcome::Failed => tally.failed += 1,
        }
        tally.latency.record(latency);
        tally.max = tally.max.max(latency);
    }

    /// The events that came past the last second.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The seconds recorded so far.
    pub fn seconds(&self) -> Vec<Second> {
        self.seconds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Loads pages on `loops` connections until `stop`.
pub fn pages(
    recorder: Arc<Recorder>,
    loops: usize,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let url = format!("http://{MARKETPLACE}/");
    (0..loops)
        .map(|_| {
            let client = service_kit::tls::http_client()?;
            let (url, recorder, stop) = (url.clone(), recorder.clone(), stop.clone());
            Ok(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    let outcome = match client
                        .get(&url)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await
                    {
                        Ok(response) if response.status() == 200 => match response.text().await {
                            Ok(html) if html.contains(UNAVAILABLE) => Outcome::Degraded,
                            Ok(_) => Outcome::Ok,
                            Err(_) => Outcome::Failed,
                        },
                        _ => Outcome::Failed,
                    };
                    recorder.record(true, began, outcome);
                    if matches!(outcome, Outcome::Failed) {
                        // No spin on a refused connection.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }))
        })
        .collect()
}

/// Makes Recommend calls on `loops` tasks until `stop`, with the
/// marketplace's client (its discovery, ejection and retries), over TLS
/// with the run's client certificate. The client's handles are returned
/// with the tasks: they stop with them.
pub async fn calls(
    recorder: Arc<Recorder>,
    loops: usize,
    stop: Arc<AtomicBool>,
    out: &Path,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let file = |name: &str| out.join(name).display().to_string();
    let settings = marketplace::Settings::try_parse_from([
        "marketplace".to_owned(),
        "--recommendations-host=recommendations".to_owned(),
        format!("--recommendations-port={}", super::hosts::REPLICA_PORT),
        format!("--hosts-file={}", file("hosts")),
        "--resolve-interval=1s".to_owned(),
        "--recommendations-tls-domain=recommendations".to_owned(),
        format!("--recommendations-tls-ca={}", file("ca.pem")),
        format!("--recommendations-tls-client-cert={}", file("client.pem")),
        format!("--recommendations-tls-client-key={}", file("client.key")),
    ])
    .context("the call load's client settings")?;
    let mut registry = Registry::default();
    let (files, server_name) = settings
        .recommendations_tls()?
        .context("TLS toward the replicas")?;
    let tls = LiveTls::load(files, CertificateMetrics::register(&mut registry, "chaos"))?;
    let client = marketplace::client::RecommendationsClient::new(
        &settings,
        Some(service_kit::client::ClientTls {
            config: tls.config(),
            server_name,
        }),
        RpcMetrics::register(&mut registry, Side::Client),
        Default::default(),
    );
    let hangups = service_kit::reload::hangups();
    let reloads = service_kit::reload::ReloadMetrics::register(&mut registry, "chaos");
    let watching = Arc::new(tls.watch(Duration::from_secs(1), hangups.clone(), reloads));
    let discovery = Arc::new(client.discover(Duration::from_secs(1), hangups).await);
    Ok((0..loops)
        .map(|_| {
            let (client, recorder, stop) = (client.clone(), recorder.clone(), stop.clone());
            let kept = (watching.clone(), discovery.clone());
            tokio::spawn(async move {
                let _kept = kept;
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    let outcome = match client.recommend(Category::Mystery, 3).await {
                        Ok(_) => Outcome::Ok,
                        Err(_) => Outcome::Failed,
                    };
                    recorder.record(false, began, outcome);
                    if matches!(outcome, Outcome::Failed) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            })
        })
        .collect())
}
