//! The client of the recommendations service: the v1 calls the pages make,
//! on the kit's [`Upstream`] (one long-lived, lazily connected channel per
//! replica, created when the replica is found and shared by every request,
//! with the client layers around each; the pool, retries and their budget).

use std::{sync::LazyLock, time::Duration};

use http::uri::PathAndQuery;
use prometheus_client::collector::Collector;
use protobufs::{
    Category,
    codec::CompactCodec,
    v1::{Book, ListBooksRequest, ListBooksResponse, RecommendRequest, RecommendResponse},
};
use service_kit::{
    client::{
        ChannelSettings, ClientTls, Discovery, Ejection, ReplicaCallsFamily, Retry, RpcChannel,
        Upstream, UpstreamSettings,
    },
    metrics::RpcMetrics,
    reload::Hangups,
};
use tonic::{Request, Response, Status, Streaming, client::Grpc};

use crate::settings::Settings;

/// The path of the v1 contract's Recommend method.
static RECOMMEND: LazyLock<PathAndQuery> = LazyLock::new(|| {
    PathAndQuery::from_static("/bookstore.recommendations.v1.RecommendationsService/Recommend")
});

/// The path of the v1 contract's ListBooks method.
static LIST_BOOKS: LazyLock<PathAndQuery> = LazyLock::new(|| {
    PathAndQuery::from_static("/bookstore.recommendations.v1.RecommendationsService/ListBooks")
});

/// How many books the browse page shows at most; the rest of a very large
/// category is not fetched.
pub const BROWSE_LIMIT: usize = 1_000;

/// The client of one replica: tonic's gRPC client over its [`RpcChannel`],
/// making the v1 calls the pages need as the generated client makes them,
/// less two costs of every call: the generated client parses its method's
/// path from a string each time, and boxes a `GrpcMethod` extension that
/// nothing here reads (docs/benchmarks/history.md, "The method's path
/// parsed once").
#[derive(Clone, Debug)]
pub struct ReplicaClient {
    grpc: Grpc<RpcChannel>,
}

impl ReplicaClient {
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

/// A cheap-to-clone handle on the recommendations service.
#[derive(Clone, Debug)]
pub struct RecommendationsClient {
    upstream: Upstream<ReplicaClient>,
}

impl RecommendationsClient {
    /// A client with no replica yet: [`RecommendationsClient::discover`]
    /// finds them. Channels connect on first use and reconnect after
    /// failures, so the marketplace starts and serves while recommendations
    /// is down. Calls count in `metrics`, and by replica in `replica_calls`.
    pub fn new(
        settings: &Settings,
        tls: Option<ClientTls>,
        metrics: RpcMetrics,
        replica_calls: ReplicaCallsFamily,
    ) -> Self {
        let mut channel = ChannelSettings::new(
            settings.rpc_timeout,
            http::HeaderValue::from_static(concat!("marketplace/", env!("CARGO_PKG_VERSION"))),
        );
        channel.tls = tls;
        let upstream = UpstreamSettings {
            service: "recommendations",
            host: settings.recommendations_host.clone(),
            port: settings.recommendations_port,
            hosts_file: settings.hosts_file.clone(),
            resolve_timeout: settings.resolve_timeout,
            channel,
            timeout: settings.rpc_timeout,
            max_replicas: settings.max_replicas,
            ejection: Ejection {
                base: settings.base_ejection_time,
                max: settings.max_ejection_time,
            },
            retry_budget_ratio: settings.retry_budget_ratio,
            retry_budget_min_per_second: settings.retry_budget_min_per_second,
        };
        Self {
            upstream: Upstream::new(upstream, metrics, replica_calls, ReplicaClient::new),
        }
    }

    /// The `marketplace_replicas` gauge over this client's replicas, to
    /// register with the metrics.
    pub fn replica_states(&self) -> impl Collector {
        self.upstream.replica_states(
            "marketplace_replicas",
            "Recommendations replicas by state: in_rotation (taking calls), out_of_rotation \
             (ejected, or failing health checks), spare (listed beyond --max-replicas)",
        )
    }

    /// The count of calls failed at once with no replica to take them
    /// (none known, or every one out of rotation), to register as
    /// `marketplace_calls_unsent`.
    pub fn unsent_calls(&self) -> prometheus_client::metrics::counter::Counter {
        self.upstream.unsent_calls()
    }

    /// Finds the replicas now, and again every `interval` and on each
    /// SIGHUP of `hangups`, until the returned [`Discovery`] is dropped (see
    /// [`Upstream::discover`]).
    pub async fn discover(&self, interval: Duration, hangups: Hangups) -> Discovery {
        self.upstream.discover(interval, hangups).await
    }

    /// Up to `count` random books of `category`.
    pub async fn recommend(&self, category: Category, count: i32) -> Result<Vec<Book>, Status> {
        let request = RecommendRequest {
            user_id: 1,
            category: category.to_v1() as i32,
            max_results: count,
        };
        let response = self
            .upstream
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
        self.upstream
            .call(Retry::Idempotent, |mut client, attempt| {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_paths_are_the_v1_contracts() {
        use protobufs::v1::recommendations_service_server::SERVICE_NAME;

        assert_eq!(RECOMMEND.as_str(), format!("/{SERVICE_NAME}/Recommend"));
        assert_eq!(LIST_BOOKS.as_str(), format!("/{SERVICE_NAME}/ListBooks"));
    }
}
