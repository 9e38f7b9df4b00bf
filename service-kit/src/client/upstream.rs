//! A service called through its replicas: the facade a service's typed
//! client is built on. It finds the replicas ([`Resolver`]), keeps one
//! long-lived channel to each with the client layers around it
//! ([`RpcChannel`]), spreads the calls over them ([`ReplicaPool`]), retries
//! within a budget ([`RetryPolicy`]) and counts each attempt in its
//! replica's series ([`ReplicaLabels`]).

use std::{
    future::Future, net::SocketAddr, num::NonZeroUsize, path::PathBuf, sync::Arc, time::Duration,
};

use tonic::{Code, Status};
use tower::ServiceBuilder;

use super::{
    Attempt, ChannelSettings, Deadline, DeadlineLayer, Ejection, H2Channel, ReplicaPool,
    ReplicaStates, Resolver, Retry, RetryBudget, RetryPolicy, deadline_exceeded,
    replica_metrics::{ReplicaCalls, ReplicaCallsFamily, forget},
};
use crate::{
    grpc_wire::code_of_error,
    metrics::{RpcMetrics, Side},
    observe::{Observe, ObserveLayer, RpcLogger, RpcMeter},
    reload::Hangups,
    trace::CallSpans,
};

#[cfg(test)]
mod tests;

/// One replica's channel with its layers, outermost first: the span, logging
/// and metrics (one observer), then the deadline.
pub type RpcChannel = Observe<Deadline<H2Channel>, (RpcLogger, RpcMeter)>;

/// How a service's replicas are found, reached and called.
#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    /// The service's name, as the logs say it.
    pub service: &'static str,
    /// The name its replicas' addresses are looked up by, and their port.
    pub host: String,
    /// The port every replica listens on.
    pub port: u16,
    /// A hosts file read before DNS, if any.
    pub hosts_file: Option<PathBuf>,
    /// The longest a lookup may take.
    pub resolve_timeout: Duration,
    /// How each replica's channel connects (TLS included).
    pub channel: ChannelSettings,
    /// Every call's deadline, its retry included.
    pub timeout: Duration,
    /// The most replicas given a channel; the rest wait as spares.
    pub max_replicas: NonZeroUsize,
    /// How long a replica that fails calls is out of rotation.
    pub ejection: Ejection,
    /// The retry budget: retries per call...
    pub retry_budget_ratio: f64,
    /// ...and at least this many a second.
    pub retry_budget_min_per_second: u32,
}

/// What the pool keeps for each replica: its client, and its call counters.
#[derive(Debug)]
struct Replica<C> {
    client: C,
    calls: Arc<ReplicaCalls>,
}

impl<C: Clone> Clone for Replica<C> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            calls: self.calls.clone(),
        }
    }
}

/// A cheap-to-clone handle on a service's replicas.
pub struct Upstream<C> {
    pool: ReplicaPool<Replica<C>>,
    resolver: Resolver,
    retries: Arc<RetryPolicy>,
    replica_calls: ReplicaCallsFamily,
}

impl<C> Clone for Upstream<C> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            resolver: self.resolver.clone(),
            retries: self.retries.clone(),
            replica_calls: self.replica_calls.clone(),
        }
    }
}

impl<C> std::fmt::Debug for Upstream<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// The discovery task of [`Upstream::discover`]: it stops when this is
/// dropped (with the service that holds it).
#[derive(Debug)]
pub struct Discovery(tokio::task::JoinHandle<()>);

impl Drop for Discovery {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<C: Clone + Send + Sync + 'static> Upstream<C> {
    /// A handle with no replica yet: [`Upstream::discover`] finds them.
    /// Channels connect on first use and reconnect after failures, so the
    /// caller starts and serves while the service is down. `client` makes
    /// the typed client of each replica over its layered channel; calls
    /// count in `metrics` and, by replica, in `replica_calls`.
    pub fn new(
        settings: UpstreamSettings,
        metrics: RpcMetrics,
        replica_calls: ReplicaCallsFamily,
        client: impl Fn(RpcChannel) -> C + Send + Sync + 'static,
    ) -> Self {
        let timeout = settings.timeout;
        // One logger for every replica's calls: one budget of lines.
        let logger = RpcLogger::new(Side::Client);
        let family = replica_calls.clone();
        let channel_settings = settings.channel;
        let connect = move |addr: SocketAddr| {
            let channel = H2Channel::lazy(addr, channel_settings.clone());
            let layered = ServiceBuilder::new()
                // One log event per call, with the final status, and its
                // metrics, deadline misses included; and each attempt's span,
                // a child of the caller's, whose context and request id go on
                // in the call's metadata.
                .layer(
                    ObserveLayer::new((logger.clone(), RpcMeter::new(metrics.clone())))
                        .with_spans(CallSpans::client(addr)),
                )
                // Every call gets the deadline, on the wire too.
                .layer(DeadlineLayer::new(timeout))
                .service(channel.clone());
            let replica = Replica {
                client: client(layered),
                calls: Arc::new(ReplicaCalls::new(family.clone(), addr)),
            };
            (channel, replica)
        };
        Self {
            pool: ReplicaPool::new(
                settings.service,
                Box::new(connect),
                settings.max_replicas,
                settings.ejection,
            ),
            retries: Arc::new(RetryPolicy {
                timeout,
                budget: RetryBudget::new(
                    settings.retry_budget_ratio,
                    settings.retry_budget_min_per_second,
                ),
            }),
            resolver: Resolver::new(
                &settings.host,
                settings.port,
                settings.hosts_file,
                settings.resolve_timeout,
            ),
            replica_calls,
        }
    }

    /// A gauge `name` of this handle's replicas by state, to register with
    /// the metrics.
    pub fn replica_states(
        &self,
        name: &'static str,
        help: &'static str,
    ) -> impl prometheus_client::collector::Collector {
        ReplicaStates {
            pool: self.pool.clone(),
            name,
            help,
        }
    }

    /// The count of calls failed at once, sent to no replica (see
    /// [`ReplicaPool::unsent_calls`]), to register with the metrics.
    pub fn unsent_calls(&self) -> prometheus_client::metrics::counter::Counter {
        self.pool.unsent_calls()
    }

    /// Resolves the replicas now, then keeps resolving every `interval` and
    /// on each SIGHUP of `hangups` (a hosts file just changed), and
    /// health-checking the replicas out of rotation every second, until the
    /// returned [`Discovery`] is dropped. A failed resolution keeps the last
    /// known replicas, and says so in the log.
    pub async fn discover(&self, interval: Duration, mut hangups: Hangups) -> Discovery {
        self.resolve().await;
        let this = self.clone();
        Discovery(tokio::spawn(async move {
            let mut resolve = tokio::time::interval(interval);
            let mut probe = tokio::time::interval(interval.min(Duration::from_secs(1)));
            resolve.tick().await;
            let mut hangups_open = true;
            loop {
                tokio::select! {
                    _ = resolve.tick() => this.resolve().await,
                    changed = hangups.changed(), if hangups_open => match changed {
                        Ok(()) => this.resolve().await,
                        // No more reload requests can come.
                        Err(_) => hangups_open = false,
                    },
                    _ = probe.tick() => {
                        let left = this.pool.probe_down(this.retries.timeout).await;
                        forget(&this.replica_calls, &left);
                    }
                }
            }
        }))
    }

    async fn resolve(&self) {
        match self.resolver.resolve().await {
            Ok(addresses) => {
                let left = self.pool.update(&addresses);
                forget(&self.replica_calls, &left);
            }
            Err(err) => tracing::warn!(
                cause = format!("{err:#}"),
                known = ?self.pool.addresses(),
                "cannot resolve the {} replicas; keeping the last known",
                self.pool.service(),
            ),
        }
    }

    /// Runs a call on the pool (see [`ReplicaPool::call`]): `attempt` is
    /// given a replica's client and the [`Attempt`]; each attempt counts in
    /// its replica's series.
    pub async fn call<T, F, Fut>(&self, retry: Retry, attempt: F) -> Result<T, Status>
    where
        F: Fn(C, Attempt) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.pool
            .call(&self.retries, retry, |member, this| {
                // Boxed: a tonic call future is kilobytes, and unboxed it
                // would be copied with every future that wraps it up to the
                // caller's (docs/benchmarks/history.md, "Where a page goes").
                let call = Box::pin(attempt(member.client.client.clone(), this));
                let calls = member.client.calls.clone();
                async move {
                    let result = call.await.map_err(|status| self.deadline_as_such(status));
                    calls.count(result.as_ref().map_or_else(Status::code, |_| Code::Ok));
                    result
                }
            })
            .await
    }

    /// A transport's own timer ending a call at its `grpc-timeout` shows as
    /// CANCELLED (tonic's "Timeout expired"); it is this call's deadline,
    /// and says so.
    fn deadline_as_such(&self, status: Status) -> Status {
        let timed_out = status.code() == Code::Cancelled
            && std::error::Error::source(&status)
                .is_some_and(|source| code_of_error(source) == Code::DeadlineExceeded);
        if timed_out {
            deadline_exceeded(self.retries.timeout)
        } else {
            status
        }
    }
}
