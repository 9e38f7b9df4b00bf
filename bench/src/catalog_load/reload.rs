//! The 1,000,000-book catalog replaced by another as large while Recommend
//! calls keep coming: the new file is written beside the old one and
//! renamed over it (as docs/catalog.md says to), then SIGHUP.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use protobufs::v1::{self, recommendations_service_client::RecommendationsServiceClient};
use tonic::transport::Channel;

use super::{BOOKS, CatalogReload, write_titled};
use crate::process::{Server, free_port};

/// Callers making Recommend calls all along.
const CALLERS: usize = 4;
/// The new catalog's titles start with this.
const NEW_TITLE: &str = "Reloaded book";

/// Starts `binary` on the catalog at `path`, loads it with calls, reloads
/// a new catalog there, and measures.
pub async fn under_load(
    binary: &Path,
    work: &Path,
    path: &Path,
    ticks: u64,
) -> anyhow::Result<CatalogReload> {
    let addr = free_port()?;
    let args = [
        format!("--listen={addr}"),
        format!("--admin-listen={}", free_port()?),
        format!("--catalog={}", path.display()),
        // Only the SIGHUP below reloads.
        "--reload-interval=1h".to_owned(),
    ];
    let mut server = Server::start(
        "recommendations-1m-catalog-reload",
        binary,
        &args,
        &[],
        work,
        None,
    )?;
    server.wait_for_port(addr, Duration::from_secs(60)).await?;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .context("a valid URI")?
        .connect()
        .await
        .context("cannot connect to the server")?;
    let client = RecommendationsServiceClient::new(channel);

    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (mut client, stop) = (client.clone(), stop.clone());
            let (calls, failed) = (calls.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if first_title(&mut client).await.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let next = path.with_extension("next");
    write_titled(&next, BOOKS, NEW_TITLE)?;
    std::fs::rename(&next, path)
        .with_context(|| format!("cannot rename over {}", path.display()))?;
    let sighup = Instant::now();
    let status = tokio::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .await
        .context("cannot run kill")?;
    ensure!(status.success(), "kill -HUP failed");
    let mut probe = client.clone();
    loop {
        if first_title(&mut probe)
            .await
            .is_ok_and(|title| title.starts_with(NEW_TITLE))
        {
            break;
        }
        ensure!(
            sighup.elapsed() < Duration::from_secs(60),
            "the new catalog was never served"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reload = sighup.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.context("a caller panicked")?;
    }
    let peak = server.usage(ticks)?.peak_rss;
    server.stop().await?;
    let (calls, failed) = (
        calls.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    // A correctness check, in quick runs too: no call may fail.
    ensure!(
        failed == 0 && calls > 0,
        "reloading the catalog under load: {failed} of {calls} calls failed"
    );
    Ok(CatalogReload {
        reload_s: reload.as_secs_f64(),
        calls,
        failed,
        peak_bytes: peak,
    })
}

/// The title of the first mystery book recommended now.
async fn first_title(
    client: &mut RecommendationsServiceClient<Channel>,
) -> Result<String, tonic::Status> {
    let request = v1::RecommendRequest {
        user_id: 1,
        category: v1::Category::Mystery as i32,
        max_results: 3,
    };
    let books = client.recommend(request).await?.into_inner().books;
    Ok(books
        .first()
        .map(|book| book.title.clone())
        .unwrap_or_default())
}
