//! The gRPC ceiling: the recommendations handler and catalog served by a bare
//! tonic `Server`, with none of the service's layers, health, reflection,
//! metrics or logging. Comparing the real service with it measures what all
//! of those cost.
#![forbid(unsafe_code)]

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::Parser;
use protobufs::{
    legacy::recommendations_server::RecommendationsServer,
    v1::recommendations_service_server::RecommendationsServiceServer,
};
use recommendations::{Catalog, api::Recommender};
use service_kit::lifecycle as shutdown;
use tonic::transport::{Server, server::TcpIncoming};

#[derive(Parser)]
struct Args {
    /// Runtime worker threads, as the services' --worker-threads.
    #[arg(long)]
    worker_threads: Option<std::num::NonZeroUsize>,
    /// Address to serve gRPC on.
    #[arg(long, default_value = "127.0.0.1:50061")]
    listen: SocketAddr,
    /// The catalog file (the built-in catalog if not given).
    #[arg(long)]
    catalog: Option<PathBuf>,
}

/// The same allocator as the services (see their `main.rs`), so that the
/// ratio to this ceiling measures their layers, not the allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    service_kit::runtime::build(args.worker_threads, None)?.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let catalog = match &args.catalog {
        Some(path) => Catalog::from_path(path, u64::MAX),
        None => Catalog::builtin(),
    }
    .context("cannot load the catalog")?;
    let service = Recommender::new(Arc::new(catalog));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot bind {}", args.listen))?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .add_service(RecommendationsServiceServer::new(service.clone()))
        .add_service(RecommendationsServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown::signal())
        .await
        .context("serving gRPC")
}
