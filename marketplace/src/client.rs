//! The client of the recommendations service: one long-lived, lazily
//! connected channel per recommendations replica (see `balance`), created
//! when the replica is found and shared by every request, with the client
//! layers (logging, metrics, deadline) around each.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, LazyLock},
    time::Duration,
};

use anyhow::Context as _;

use http::uri::PathAndQuery;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _},
    metrics::{counter::Counter, family::Family, gauge::ConstGauge},
};
use protobufs::{
    Category,
    codec::CompactCodec,
    v1::{Book, ListBooksRequest, ListBooksResponse, RecommendRequest, RecommendResponse},
};
use service_kit::{
    metrics::{ByCode, RpcMetrics, code_name},
    rpc::{
        CallDeadline, ChannelSettings, Deadline, DeadlineLayer, H2Channel, Observe, ObserveLayer,
        RpcLogger, RpcMeter, code_of_error,
    },
    trace::{CallSpans, ResendCount},
};
use tonic::{Code, Request, Response, Status, Streaming, client::Grpc};
use tower::ServiceBuilder;

use crate::{
    balance::{
        Ejection, Pool,
        discovery::Resolver,
        retry::{Attempt, Retry, RetryPolicy, deadline_exceeded},
        retry_budget::RetryBudget,
    },
    settings::Settings,
};

/// One replica's channel with its layers, outermost first: the span, logging
/// and metrics (one observer), then the deadline.
pub type RpcChannel = Observe<Deadline<H2Channel>, (RpcLogger, RpcMeter)>;

/// The path of the v1 contract's Recommend method.
static RECOMMEND: LazyLock<PathAndQuery> = LazyLock::new(|| {
    PathAndQuery::from_static("/bookstore.recommendations.v1.RecommendationsService/Recommend")
});

/// The path of the v1 contract's ListBooks method.
static LIST_BOOKS: LazyLock<PathAndQuery> = LazyLock::new(|| {
    PathAndQuery::from_static("/bookstore.recommendations.v1.RecommendationsService/ListBooks")
});

/// The client of one replica: tonic's gRPC client over its [`RpcChannel`],
/// making the v1 calls the pages need as the generated client makes them,
/// less two costs of every call: the generated client parses its method's
/// path from a string each time, and boxes a `GrpcMethod` extension that
/// nothing here reads (callgrind: docs/benchmarks/history.md, "The
/// method's path parsed once").
#[derive(Clone, Debug)]
pub struct Client {
    grpc: Grpc<RpcChannel>,
}

impl Client {
    fn new(channel: RpcChannel) -> Self {
        Self {
            grpc: Grpc::new(channel),
        }
    }

    /// `RecommendationsService/Recommend`.
    async fn recommend(
        &mut self,
        request: Request<RecommendRequest>,
    ) -> Result<Response<RecommendResponse>, Status> {
        self.ready().await?;
        let path = RECOMMEND.clone();
        self.grpc
            .unary(request, path, CompactCodec::default())
            .await
    }

    /// `RecommendationsService/ListBooks`.
    async fn list_books(
        &mut self,
        request: Request<ListBooksRequest>,
    ) -> Result<Response<Streaming<ListBooksResponse>>, Status> {
        self.ready().await?;
        let path = LIST_BOOKS.clone();
        self.grpc
            .server_streaming(request, path, CompactCodec::default())
            .await
    }

    /// Waits for the channel to take a call, as the generated client does.
    async fn ready(&mut self) -> Result<(), Status> {
        self.grpc
            .ready()
            .await
            .map_err(|err| Status::unknown(format!("Service was not ready: {err}")))
    }
}

/// What the pool keeps for each replica: its client, and its series of
/// `marketplace_replica_calls_total`.
#[derive(Clone, Debug)]
pub struct Replica {
    client: Client,
    calls: Arc<ReplicaCalls>,
}

/// One replica's call counters, one per status code, each looked up in the
/// family on its first call and kept: a page then counts its call with one
/// atomic add, not a label set built (its address a new `String`), hashed
/// and looked up under the family's lock.
///
/// They go with the replica when it leaves the pool, when
/// [`RecommendationsClient::forget`] removes its series from the family;
/// a call still in flight on it then counts nowhere rather than bringing a
/// departed replica's series back.
#[derive(Debug)]
struct ReplicaCalls {
    family: Family<ReplicaLabels, Counter>,
    addr: SocketAddr,
    by_code: ByCode<Counter>,
}

impl ReplicaCalls {
    fn new(family: Family<ReplicaLabels, Counter>, addr: SocketAddr) -> Self {
        Self {
            family,
            addr,
            by_code: Default::default(),
        }
    }

    /// Counts a call that ended with `code`.
    fn count(&self, code: Code) {
        self.by_code
            .get_or_init(code, || {
                self.family
                    .get_or_create(&ReplicaLabels {
                        server_address: self.addr.ip().to_string(),
                        server_port: self.addr.port(),
                        rpc_response_status_code: code_name(code),
                    })
                    .clone()
            })
            .inc();
    }
}

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

/// Labels of the calls made to one replica (`server_address` and
/// `server_port` as the OpenTelemetry conventions name them, and never
/// `endpoint`, which the Prometheus Operator adds to every target).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    server_address: String,
    server_port: u16,
    rpc_response_status_code: &'static str,
}

/// The `marketplace_replicas` gauge, counted from the pool at each scrape:
/// replicas in rotation, out of it, and spare. Three series whatever the
/// number of replicas.
#[derive(Debug)]
pub struct ReplicaStates(Pool<Replica>);

impl Collector for ReplicaStates {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let census = self.0.census();
        let mut family = encoder.encode_descriptor(
            "marketplace_replicas",
            "Recommendations replicas by state: in_rotation (taking calls), out_of_rotation \
             (ejected, or failing health checks), spare (listed beyond --max-replicas)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (state, count) in [
            ("in_rotation", census.in_rotation),
            ("out_of_rotation", census.out_of_rotation),
            ("spare", census.spare),
        ] {
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            ConstGauge::new(count).encode(family.encode_family(&[("state", state)])?)?;
        }
        Ok(())
    }
}

/// A cheap-to-clone handle on the recommendations service.
#[derive(Clone, Debug)]
pub struct RecommendationsClient {
    pool: Pool<Replica>,
    resolver: Resolver,
    retries: Arc<RetryPolicy>,
    replica_calls: Family<ReplicaLabels, Counter>,
}

impl Attempt {
    /// `message` as the request of this attempt: its deadline, and, for
    /// the span, how many attempts came before it if any (a first attempt
    /// carries none: an extension is an allocation).
    fn request<M>(self, message: M) -> Request<M> {
        let mut request = Request::new(message);
        request.extensions_mut().insert(CallDeadline(self.deadline));
        if self.resends > 0 {
            request.extensions_mut().insert(ResendCount(self.resends));
        }
        request
    }
}

impl RecommendationsClient {
    /// A client with no replica yet: [`RecommendationsClient::discover`] finds
    /// them. Channels connect on first use and reconnect after failures, so
    /// the marketplace starts and serves while recommendations is down.
    pub fn new(
        settings: &Settings,
        metrics: RpcMetrics,
        replica_calls: Family<ReplicaLabels, Counter>,
    ) -> anyhow::Result<Self> {
        let timeout = settings.rpc_timeout;
        let tls = settings
            .recommendations_tls()
            .context("cannot set up TLS toward recommendations")?;
        let mut channel_settings = ChannelSettings::new(
            timeout,
            http::HeaderValue::from_static(concat!("marketplace/", env!("CARGO_PKG_VERSION"))),
        );
        channel_settings.tls = tls;
        // One logger for every replica's calls: one budget of lines.
        let logger = RpcLogger::new(service_kit::metrics::Side::Client);
        let family = replica_calls.clone();
        let connect = move |addr: SocketAddr| {
            let channel = H2Channel::lazy(addr, channel_settings.clone());
            let layered = ServiceBuilder::new()
                // One log event per call, with the final status, and its
                // metrics, deadline misses included; and each attempt's span,
                // a child of the page's, whose context and request id go on
                // in the call's metadata.
                .layer(
                    ObserveLayer::new((logger.clone(), RpcMeter::new(metrics.clone())))
                        .with_spans(CallSpans::client(addr)),
                )
                // Every call gets the deadline, on the wire too.
                .layer(DeadlineLayer::new(timeout))
                .service(channel.clone());
            let replica = Replica {
                client: Client::new(layered),
                calls: Arc::new(ReplicaCalls::new(family.clone(), addr)),
            };
            (channel, replica)
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
            retries: Arc::new(RetryPolicy {
                timeout,
                budget: RetryBudget::new(
                    settings.retry_budget_ratio,
                    settings.retry_budget_min_per_second,
                ),
            }),
            resolver: Resolver::new(
                &settings.recommendations_host,
                settings.recommendations_port,
                settings.hosts_file.clone(),
                settings.resolve_timeout,
            ),
            replica_calls,
        })
    }

    /// The `marketplace_replicas` gauge over this client's replicas, to
    /// register with the metrics.
    pub fn replica_states(&self) -> ReplicaStates {
        ReplicaStates(self.pool.clone())
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
                        let left = this.pool.probe_down(this.retries.timeout).await;
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
            let address = addr.ip().to_string();
            for code in ALL_CODES {
                self.replica_calls.remove(&ReplicaLabels {
                    server_address: address.clone(),
                    server_port: addr.port(),
                    rpc_response_status_code: code_name(code),
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
            .call(Retry::Idempotent, |mut client, attempt| {
                let request = attempt.request(request);
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
        self.call(Retry::Idempotent, |mut client, attempt| {
            let request = attempt.request(request);
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

    /// Runs a call on the pool (see [`Pool::call`]), counting each attempt
    /// in its replica's series.
    async fn call<T, F, Fut>(&self, retry: Retry, attempt: F) -> Result<T, Status>
    where
        F: Fn(Client, Attempt) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.pool
            .call(&self.retries, retry, |member, this| {
                // Boxed: tonic's call future is kilobytes, and unboxed it
                // would be copied with every future that wraps it up to
                // the page's (callgrind: 633 instructions a page saved).
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

    /// tonic's channel ends a call at its `grpc-timeout` with its own timer,
    /// which the generated client reports as CANCELLED ("Timeout
    /// expired"); it is this call's deadline, and says so.
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prometheus_client::registry::Registry;
    use service_kit::metrics::Side;

    use super::*;

    /// A client over two replicas where nothing listens: every call is
    /// refused at once (UNAVAILABLE), which is a replica's failure.
    fn refused_twice() -> RecommendationsClient {
        let addrs: BTreeSet<SocketAddr> = (2..=3)
            .map(|host| service_kit::testing::free_addr([127, 0, 0, host]))
            .collect();
        let settings = Settings::for_tests(SocketAddr::from(([127, 0, 0, 1], 1)));
        let metrics = RpcMetrics::register(&mut Registry::default(), Side::Client);
        let client =
            RecommendationsClient::new(&settings, metrics, Family::default()).expect("a client");
        client.pool.update(&addrs);
        client
    }

    #[test]
    fn the_method_paths_are_the_v1_contracts() {
        use protobufs::v1::recommendations_service_server::SERVICE_NAME;

        assert_eq!(RECOMMEND.as_str(), format!("/{SERVICE_NAME}/Recommend"));
        assert_eq!(LIST_BOOKS.as_str(), format!("/{SERVICE_NAME}/ListBooks"));
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
    async fn each_attempt_counts_in_its_replicas_series() {
        let client = refused_twice();

        let result: Result<(), Status> = client
            .call(Retry::Idempotent, |_, _| async {
                Err(Status::unavailable("refused"))
            })
            .await;

        assert_eq!(result.map_err(|s| s.code()), Err(Code::Unavailable));
        for addr in client.pool.addresses() {
            let refused = client.replica_calls.get_or_create(&ReplicaLabels {
                server_address: addr.ip().to_string(),
                server_port: addr.port(),
                rpc_response_status_code: "UNAVAILABLE",
            });
            assert_eq!(refused.get(), 1, "{addr}: one attempt, counted once");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tonics_own_timeout_is_reported_as_the_deadline() {
        let client = refused_twice();
        let expired = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(expired.code(), Code::Cancelled, "as tonic reports it");

        let status = client.deadline_as_such(expired);

        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(status.message().contains("1s deadline"), "{status:?}");
    }
}
