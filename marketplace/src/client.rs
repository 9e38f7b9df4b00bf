//! The client of the recommendations service: ONE long-lived channel,
//! created at start, cloned into every request, with the client-side layers
//! (logging, metrics, deadline) around it.

use std::time::Duration;

use anyhow::Context;
use operations::{
    metrics::{RpcMetrics, Side},
    rpc::{Deadline, DeadlineLayer, LogRpc, MeterRpc, Observe, ObserveLayer},
};
use protobufs::v1::{
    Book, ListBooksRequest, RecommendRequest,
    recommendations_service_client::RecommendationsServiceClient,
};
use tonic::{
    Status,
    transport::{Channel, Endpoint},
};
use tower::ServiceBuilder;

use crate::{category::Category, settings::Settings};

/// The channel with its layers, outermost first: logging, metrics, deadline.
pub type RpcChannel = Observe<Observe<Deadline<Channel>, MeterRpc>, LogRpc>;

/// How many books the browse page shows at most; the rest of a very large
/// category is not fetched.
pub const BROWSE_LIMIT: usize = 1_000;

/// A cheap-to-clone handle on the recommendations service.
#[derive(Clone, Debug)]
pub struct Recommendations {
    client: RecommendationsServiceClient<RpcChannel>,
}

impl Recommendations {
    /// Creates the channel without connecting: the marketplace starts and
    /// serves while recommendations is down, connects on first use, and
    /// reconnects by itself after a failure.
    pub fn connect_lazy(settings: &Settings, metrics: RpcMetrics) -> anyhow::Result<Self> {
        let uri = settings.recommendations_uri();
        let endpoint = Endpoint::from_shared(uri.clone())
            .with_context(|| format!("invalid recommendations address {uri}"))?
            .connect_timeout(settings.rpc_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        let channel = ServiceBuilder::new()
            // One log event per call, with the final status.
            .layer(ObserveLayer::new(LogRpc::new(Side::Client)))
            // Counts and times every call, deadline misses included.
            .layer(ObserveLayer::new(MeterRpc::new(metrics)))
            // Innermost: every call gets the deadline, on the wire too.
            .layer(DeadlineLayer::new(settings.rpc_timeout))
            .service(endpoint.connect_lazy());
        Ok(Self {
            client: RecommendationsServiceClient::new(channel),
        })
    }

    /// Up to `count` random books of `category`.
    pub async fn recommend(&self, category: Category, count: i32) -> Result<Vec<Book>, Status> {
        let request = RecommendRequest {
            user_id: 1,
            category: category.to_v1() as i32,
            max_results: count,
        };
        let response = self.client.clone().recommend(request).await?;
        Ok(response.into_inner().books)
    }

    /// Every book of `category` in catalog order, at most [`BROWSE_LIMIT`],
    /// and whether the category holds more.
    pub async fn list_books(&self, category: Category) -> Result<(Vec<Book>, bool), Status> {
        let request = ListBooksRequest {
            category: category.to_v1() as i32,
        };
        let mut stream = self.client.clone().list_books(request).await?.into_inner();
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
}
