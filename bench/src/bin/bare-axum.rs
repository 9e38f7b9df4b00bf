//! The HTTP ceiling: one static HTML page served by a bare axum router, with
//! TCP_NODELAY as the marketplace sets it and nothing else. Comparing the
//! homepage with it measures rendering, the Recommend call and every layer.
#![forbid(unsafe_code)]

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use axum::{Router, response::Html, routing::get, serve::ListenerExt as _};
use clap::Parser;
use service_kit::lifecycle as shutdown;

#[derive(Parser)]
struct Args {
    /// Runtime worker threads, as the services' --worker-threads.
    #[arg(long)]
    worker_threads: Option<std::num::NonZeroUsize>,
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:5010")]
    listen: SocketAddr,
    /// The HTML file served at `/`.
    #[arg(long)]
    page: PathBuf,
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
    let page = std::fs::read_to_string(&args.page)
        .with_context(|| format!("cannot read the page {}", args.page.display()))?;
    let page: &'static str = page.leak();
    let router = Router::new().route("/", get(move || async move { Html(page) }));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot bind {}", args.listen))?
        .tap_io(|tcp| {
            // Best effort, as in the marketplace.
            let _ = tcp.set_nodelay(true);
        });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown::signal())
        .await
        .context("serving HTTP")
}
