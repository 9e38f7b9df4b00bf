//! The facade's discovery task, per-replica counters and deadline report.

use std::collections::BTreeSet;

use prometheus_client::registry::Registry;

use super::*;
use crate::client::ReplicaLabels;

/// A handle on two replicas where nothing listens: every call is refused at
/// once (UNAVAILABLE), which is a replica's failure.
fn refused_twice() -> Upstream<()> {
    // Port 1 of loopback addresses: nothing listens there.
    let addrs: BTreeSet<SocketAddr> = (2..=3)
        .map(|host| SocketAddr::from(([127, 0, 0, host], 1)))
        .collect();
    let settings = UpstreamSettings {
        service: "test",
        host: "127.0.0.1".to_owned(),
        port: 1,
        hosts_file: None,
        resolve_timeout: Duration::from_secs(2),
        channel: ChannelSettings::new(
            Duration::from_secs(1),
            http::HeaderValue::from_static("test"),
        ),
        timeout: Duration::from_secs(1),
        max_replicas: NonZeroUsize::new(64).expect("not zero"),
        ejection: Ejection {
            base: Duration::from_secs(2),
            max: Duration::from_secs(300),
        },
        retry_budget_ratio: 0.2,
        retry_budget_min_per_second: 10,
    };
    let metrics = RpcMetrics::register(&mut Registry::default(), Side::Client);
    let upstream = Upstream::new(settings, metrics, ReplicaCallsFamily::default(), |_| ());
    upstream.pool.update(&addrs);
    upstream
}

#[tokio::test]
async fn discovery_runs_until_its_handle_is_dropped() {
    let upstream = refused_twice();
    let (_no_hangups, hangups) = tokio::sync::watch::channel(0);
    let discovery = upstream.discover(Duration::from_millis(10), hangups).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!discovery.0.is_finished(), "it keeps running");
    let task = discovery.0.abort_handle();

    drop(discovery);
    tokio::time::sleep(Duration::from_millis(50)).await;

    assert!(task.is_finished(), "it stopped with its handle");
}

#[tokio::test]
async fn each_attempt_counts_in_its_replicas_series() {
    let upstream = refused_twice();

    let result: Result<(), Status> = upstream
        .call(Retry::Idempotent, |_, _| async {
            Err(Status::unavailable("refused"))
        })
        .await;

    assert_eq!(result.map_err(|s| s.code()), Err(Code::Unavailable));
    for addr in upstream.pool.addresses() {
        let refused = upstream
            .replica_calls
            .get_or_create(&ReplicaLabels::new(addr, Code::Unavailable));
        assert_eq!(refused.get(), 1, "{addr}: one attempt, counted once");
    }
}

#[tokio::test(start_paused = true)]
async fn tonics_own_timeout_is_reported_as_the_deadline() {
    let upstream = refused_twice();
    let expired = Status::from_error(Box::new(tonic::TimeoutExpired(())));
    assert_eq!(expired.code(), Code::Cancelled, "as tonic reports it");

    let status = upstream.deadline_as_such(expired);

    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(status.message().contains("1s deadline"), "{status:?}");
}
