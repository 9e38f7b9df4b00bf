//! The client of the recommendations service: one long-lived, lazily
//! connected channel per recommendations replica (see `balance`), created
//! when the replica is found and shared by every request, with the client
//! layers (logging, metrics, deadline) around each.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;

use operations::{
    metrics::{RpcMetrics, code_name},
    rpc::{
        CallDeadline, Deadline, DeadlineLayer, Observe, ObserveLayer, RpcLogger, RpcMeter,
        code_of_error,
    },
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use protobufs::{
    Category,
    v1::{
        Book, ListBooksRequest, RecommendRequest,
        recommendations_service_client::RecommendationsServiceClient,
    },
};
use tokio::time::Instant;
use tonic::{
    Code, Request, Status,
    transport::{Channel, Endpoint},
};
use tower::ServiceBuilder;

use crate::{
    balance::{Ejection, Member, Pool, discovery::Resolver, retry_budget::RetryBudget},
    settings::Settings,
};

/// One replica's channel with its layers, outermost first: logging and
/// metrics (one observer), then the deadline.
pub type RpcChannel = Observe<Deadline<Channel>, (RpcLogger, RpcMeter)>;

/// The generated client over one replica's [`RpcChannel`].
pub type Client = RecommendationsServiceClient<RpcChannel>;

/// How many books the browse page shows at most; the rest of a very large
/// category is not fetched.
pub const BROWSE_LIMIT: usize = 1_000;

/// The discovery task of [`RecommendationsClient::discover`]: it stops when this
/// is dropped (with the service that holds it).
#[derive(Debug)]
pub struct Discovery(tokio::task::JoinHandle<()>);

impl Drop for Discovery {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Labels of the calls made to one replica.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    endpoint: String,
    code: &'static str,
}

/// A cheap-to-clone handle on the recommendations service.
#[derive(Clone, Debug)]
pub struct RecommendationsClient {
    pool: Pool<Client>,
    resolver: Resolver,
    retry_budget: Arc<RetryBudget>,
    timeout: Duration,
    endpoint_calls: Family<EndpointLabels, Counter>,
}

impl RecommendationsClient {
    /// A client with no replica yet: [`RecommendationsClient::discover`] finds
    /// them. Channels connect on first use and reconnect after failures, so
    /// the marketplace starts and serves while recommendations is down.
    pub fn new(
        settings: &Settings,
        metrics: RpcMetrics,
        endpoint_calls: Family<EndpointLabels, Counter>,
    ) -> anyhow::Result<Self> {
        let timeout = settings.rpc_timeout;
        let tls = settings
            .recommendations_tls()
            .context("cannot set up TLS toward recommendations")?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint_for = move |addr: SocketAddr| -> anyhow::Result<Endpoint> {
            let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?;
            Ok(match &tls {
                Some(tls) => endpoint.tls_config(tls.clone())?,
                None => endpoint,
            })
        };
        // Build one endpoint now, so that a TLS setup tonic refuses fails
        // at start; afterwards the same steps cannot fail.
        endpoint_for(SocketAddr::from(([127, 0, 0, 1], 1)))
            .context("cannot set up the channel to recommendations")?;
        let connect = move |addr: SocketAddr| {
            let endpoint = endpoint_for(addr)
                .expect("checked at start: the same configuration with another address")
                .connect_timeout(timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(10));
            let channel = endpoint.connect_lazy();
            let layered = ServiceBuilder::new()
                // One log event per call, with the final status, and its
                // metrics, deadline misses included.
                .layer(ObserveLayer::new((
                    RpcLogger::new(operations::metrics::Side::Client),
                    RpcMeter::new(metrics.clone()),
                )))
                // Innermost: every call gets the deadline, on the wire too.
                .layer(DeadlineLayer::new(timeout))
                .service(channel.clone());
            (channel, RecommendationsServiceClient::new(layered))
        };
        Ok(Self {
            pool: Pool::new(
                Box::new(connect),
                settings.max_replicas,
                Ejection {
                    base: settings.base_ejection_time,
                    max: settings.max_ejection_time,
                },
            ),
            retry_budget: Arc::new(RetryBudget::new(
                settings.retry_budget_ratio,
                settings.retry_budget_min_per_second,
            )),
            resolver: Resolver::new(
                &settings.recommendations_host,
                settings.recommendations_port,
                settings.hosts_file.clone(),
                settings.resolve_timeout,
            ),
            timeout,
            endpoint_calls,
        })
    }

    /// Resolves the replicas now, then keeps resolving every `interval` and
    /// health-checking the replicas out of rotation every second, until the
    /// returned [`Discovery`] is dropped. A failed resolution keeps the last
    /// known replicas, and says so in the log.
    pub async fn discover(&self, interval: Duration) -> Discovery {
        self.resolve().await;
        let this = self.clone();
        Discovery(tokio::spawn(async move {
            let mut resolve = tokio::time::interval(interval);
            let mut probe = tokio::time::interval(interval.min(Duration::from_secs(1)));
            resolve.tick().await;
            loop {
                tokio::select! {
                    _ = resolve.tick() => this.resolve().await,
                    _ = probe.tick() => {
                        let left = this.pool.probe_down(this.timeout).await;
                        this.forget(&left);
                    }
                }
            }
        }))
    }

    async fn resolve(&self) {
        match self.resolver.resolve().await {
            Ok(addresses) => {
                let left = self.pool.update(&addresses);
                self.forget(&left);
            }
            Err(err) => tracing::warn!(
                cause = format!("{err:#}"),
                known = ?self.pool.addresses(),
                "cannot resolve the recommendations replicas; keeping the last known"
            ),
        }
    }

    /// Removes the per-replica series of replicas that left the pool, so
    /// that rollouts and scaling do not grow the scrape without end.
    fn forget(&self, left: &[SocketAddr]) {
        for addr in left {
            let endpoint = addr.to_string();
            for code in ALL_CODES {
                self.endpoint_calls.remove(&EndpointLabels {
                    endpoint: endpoint.clone(),
                    code: code_name(code),
                });
            }
        }
    }

    /// Up to `count` random books of `category`.
    pub async fn recommend(&self, category: Category, count: i32) -> Result<Vec<Book>, Status> {
        let request = RecommendRequest {
            user_id: 1,
            category: category.to_v1() as i32,
            max_results: count,
        };
        let response = self
            .call(Retry::Idempotent, |mut client, deadline| {
                let mut request = Request::new(request);
                request.extensions_mut().insert(CallDeadline(deadline));
                async move { client.recommend(request).await }
            })
            .await?;
        Ok(response.into_inner().books)
    }

    /// Every book of `category` in catalog order, at most [`BROWSE_LIMIT`],
    /// and whether the category holds more.
    pub async fn list_books(&self, category: Category) -> Result<(Vec<Book>, bool), Status> {
        let request = ListBooksRequest {
            category: category.to_v1() as i32,
        };
        self.call(Retry::Idempotent, |mut client, deadline| {
            let mut request = Request::new(request);
            request.extensions_mut().insert(CallDeadline(deadline));
            async move {
                let mut stream = client.list_books(request).await?.into_inner();
                let mut books = Vec::new();
                while let Some(batch) = stream.message().await? {
                    books.extend(batch.books);
                    if books.len() > BROWSE_LIMIT {
                        books.truncate(BROWSE_LIMIT);
                        // Dropping the stream cancels the rest of the call.
                        return Ok((books, true));
                    }
                }
                Ok((books, false))
            }
        })
        .await
    }

    /// Runs a call on the next replica; if it fails with a status that says
    /// "this replica, not this request" (UNAVAILABLE, a broken connection, a
    /// missed deadline), ejects that replica and, if the call is
    /// [`Retry::Idempotent`], the deadline leaves time for it and the retry
    /// budget allows, tries once more on another, within the same deadline.
    async fn call<T, F, Fut>(&self, retry: Retry, attempt: F) -> Result<T, Status>
    where
        F: Fn(Client, Instant) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        self.retry_budget.deposit();
        let attempts = async {
            let first = self
                .pool
                .pick(None)
                .ok_or_else(|| Status::unavailable("no recommendations replica is known yet"))?;
            let status = match self.attempt(&first, &attempt, deadline).await {
                Err(status) if replica_failed(&status) => status,
                other => return other,
            };
            self.pool.eject(&first);
            if retry == Retry::Never {
                return Err(status);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left < self.timeout.mul_f64(MIN_RETRY_SHARE) {
                tracing::debug!(from = %first.addr, ?left, "not retried: too little of the deadline is left");
                return Err(status);
            }
            let Some(second) = self.pool.pick(Some(first.addr)) else {
                return Err(status);
            };
            if !self.retry_budget.try_withdraw() {
                tracing::debug!(from = %first.addr, "not retried: the retry budget is spent");
                return Err(status);
            }
            tracing::info!(from = %first.addr, to = %second.addr, "retrying on another replica");
            let result = self.attempt(&second, &attempt, deadline).await;
            if matches!(&result, Err(status) if replica_failed(status)) {
                self.pool.eject(&second);
            }
            result
        };
        // Each attempt ends itself at this same instant (CallDeadline), and is
        // polled first, so it is observed as DEADLINE_EXCEEDED; this timer
        // bounds what follows the response headers (a ListBooks stream).
        tokio::time::timeout_at(deadline, attempts)
            .await
            .unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(format!(
                    "no answer within the {:?} deadline",
                    self.timeout
                )))
            })
    }

    /// tonic's channel ends a call at its `grpc-timeout` with its own timer,
    /// which the generated client reports as CANCELLED ("Timeout
    /// expired"); it is this call's deadline, and says so.
    fn deadline_as_such(&self, status: Status) -> Status {
        let timed_out = status.code() == Code::Cancelled
            && std::error::Error::source(&status)
                .is_some_and(|source| code_of_error(source) == Code::DeadlineExceeded);
        if timed_out {
            Status::deadline_exceeded(format!("no answer within the {:?} deadline", self.timeout))
        } else {
            status
        }
    }

    async fn attempt<T, F, Fut>(
        &self,
        member: &Member<Client>,
        attempt: &F,
        deadline: Instant,
    ) -> Result<T, Status>
    where
        F: Fn(Client, Instant) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let result = attempt(member.client.clone(), deadline)
            .await
            .map_err(|status| self.deadline_as_such(status));
        let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
        if code == Code::Ok {
            self.pool.answered(member);
        }
        self.endpoint_calls
            .get_or_create(&EndpointLabels {
                endpoint: member.endpoint.clone(),
                code: code_name(code),
            })
            .inc();
        result
    }
}

/// Whether a call may run again on another replica after a failure: the
/// first attempt may have reached its replica and done its work before the
/// connection broke or the deadline passed. Every RPC says which it is;
/// there is no default, so that a new one is a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// A read, or any call that does the same whether it runs once or
    /// twice: Recommend and ListBooks.
    Idempotent,
    /// Anything else (a write): at most one attempt.
    Never,
}

/// The least share of the deadline worth a retry: with less left, another
/// replica could not answer in time anyway, and the page is better served
/// at once without recommendations.
const MIN_RETRY_SHARE: f64 = 0.1;

/// Every gRPC status code, for removing a replica's series.
const ALL_CODES: [Code; 17] = [
    Code::Ok,
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];

/// Whether a failure is the replica's rather than the request's, so that
/// the replica is ejected and another may well succeed: UNAVAILABLE (it is
/// gone, refusing, or draining), DEADLINE_EXCEEDED (it is too slow: the
/// others answer in time), or any status made on this side from a broken
/// connection rather than sent by the replica. tonic keeps the transport
/// error as the status's source, and maps some of them to codes that look
/// final: a call refused by a replica's GOAWAY as it shuts down arrives as
/// INTERNAL ("h2 protocol error"), a reset connection as UNKNOWN. Our calls
/// are idempotent reads, so one more try elsewhere is always safe.
fn replica_failed(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
        || std::error::Error::source(status).is_some()
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeSet,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use operations::metrics::Side;
    use prometheus_client::registry::Registry;

    use super::*;

    /// A client over two replicas where nothing listens: every call is
    /// refused at once (UNAVAILABLE), which is a replica's failure.
    fn refused_twice() -> RecommendationsClient {
        let addrs: BTreeSet<SocketAddr> = (2..=3)
            .map(|host| {
                let probe =
                    std::net::TcpListener::bind((std::net::Ipv4Addr::new(127, 0, 0, host), 0))
                        .expect("a free port");
                probe.local_addr().expect("bound")
            })
            .collect();
        let settings = Settings::for_tests(SocketAddr::from(([127, 0, 0, 1], 1)));
        let metrics = RpcMetrics::register(&mut Registry::default(), Side::Client);
        let client =
            RecommendationsClient::new(&settings, metrics, Family::default()).expect("a client");
        client.pool.update(&addrs);
        client
    }

    /// Runs a call on `client` that fails like a refused connection;
    /// returns how many attempts were made.
    async fn attempts(client: &RecommendationsClient, retry: Retry) -> usize {
        let count = AtomicUsize::new(0);
        let result: Result<(), Status> = client
            .call(retry, |_, _| {
                count.fetch_add(1, Ordering::Relaxed);
                async { Err(Status::unavailable("refused")) }
            })
            .await;
        assert_eq!(result.map_err(|s| s.code()), Err(Code::Unavailable));
        count.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn discovery_runs_until_its_handle_is_dropped() {
        let client = refused_twice();
        let discovery = client.discover(Duration::from_millis(10)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!discovery.0.is_finished(), "it keeps running");
        let task = discovery.0.abort_handle();

        drop(discovery);
        tokio::time::sleep(Duration::from_millis(50)).await;

        assert!(task.is_finished(), "it stopped with its handle");
    }

    #[tokio::test]
    async fn only_an_idempotent_call_is_tried_on_another_replica() {
        assert_eq!(attempts(&refused_twice(), Retry::Idempotent).await, 2);
        assert_eq!(attempts(&refused_twice(), Retry::Never).await, 1);
    }

    #[tokio::test]
    async fn a_deadline_miss_is_not_retried_for_want_of_time() {
        let client = refused_twice();
        let count = AtomicUsize::new(0);

        let result: Result<(), Status> = client
            .call(Retry::Idempotent, |_, deadline| {
                count.fetch_add(1, Ordering::Relaxed);
                async move {
                    tokio::time::sleep_until(deadline).await;
                    Err(Status::deadline_exceeded("too slow"))
                }
            })
            .await;

        assert_eq!(result.map_err(|s| s.code()), Err(Code::DeadlineExceeded));
        assert_eq!(count.load(Ordering::Relaxed), 1);
    }
}
