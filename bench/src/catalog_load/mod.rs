//! The 1,000,000-book catalog: how long the real binary takes to load it
//! and serve, and how much memory loading takes at its peak, against the
//! file's size; then a new catalog of as many books reloaded (SIGHUP) under
//! a load of Recommend calls: how long the reload takes, whether any call
//! failed, and the peak memory with both catalogs in memory at once.

use std::{io::Write as _, path::Path, time::Duration};

use anyhow::Context;
use serde::Serialize;

use crate::process::{Server, free_port};

mod reload;

/// Books in the measured catalog, as in the Criterion benchmarks.
pub const BOOKS: u64 = 1_000_000;

/// What loading the catalog cost.
#[derive(Clone, Debug, Serialize)]
pub struct CatalogLoad {
    /// Books in the file.
    pub books: u64,
    /// The file's size, bytes.
    pub file_bytes: u64,
    /// From start to the gRPC port accepting connections, seconds.
    pub ready_s: f64,
    /// The process's peak RSS serving this catalog, less its peak serving
    /// the built-in one: what the catalog took at its peak, bytes.
    pub peak_bytes: u64,
    /// The reload of another catalog as large, under load.
    pub reload: CatalogReload,
}

/// A 1,000,000-book catalog replaced by another under load.
#[derive(Clone, Debug, Serialize)]
pub struct CatalogReload {
    /// From SIGHUP to the first call answered from the new catalog, seconds.
    pub reload_s: f64,
    /// Recommend calls made during the reload, and how many failed.
    pub calls: u64,
    pub failed: u64,
    /// The process's peak RSS over its life (start, load, reload), less the
    /// built-in catalog's peak, bytes.
    pub peak_bytes: u64,
}

impl CatalogLoad {
    /// Peak memory over file size.
    pub fn ratio(&self) -> f64 {
        self.peak_bytes as f64 / self.file_bytes.max(1) as f64
    }

    /// Peak memory with a reload, over the catalog's own peak at start.
    pub fn reload_ratio(&self) -> f64 {
        self.reload.peak_bytes as f64 / self.peak_bytes.max(1) as f64
    }
}

/// Starts `binary` (recommendations) on a generated catalog of [`BOOKS`]
/// books written under `work`, then on the built-in catalog, and compares.
pub async fn measure(binary: &Path, work: &Path, ticks: u64) -> anyhow::Result<CatalogLoad> {
    let path = work.join("catalog-1m.csv");
    write(&path, BOOKS)?;
    let file_bytes = std::fs::metadata(&path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    let (ready, peak) = start(binary, work, Some(&path), ticks).await?;
    let (_, baseline) = start(binary, work, None, ticks).await?;
    let mut reload = reload::under_load(binary, work, &path, ticks).await?;
    reload.peak_bytes = reload.peak_bytes.saturating_sub(baseline);
    Ok(CatalogLoad {
        books: BOOKS,
        file_bytes,
        ready_s: ready.as_secs_f64(),
        peak_bytes: peak.saturating_sub(baseline),
        reload,
    })
}

/// The time until the server listens, and its peak RSS then.
async fn start(
    binary: &Path,
    work: &Path,
    catalog: Option<&Path>,
    ticks: u64,
) -> anyhow::Result<(Duration, u64)> {
    let addr = free_port()?;
    let mut args = vec![
        format!("--listen={addr}"),
        format!("--admin-listen={}", free_port()?),
    ];
    args.extend(catalog.map(|path| format!("--catalog={}", path.display())));
    let started = std::time::Instant::now();
    let name = if catalog.is_some() {
        "recommendations-1m-catalog"
    } else {
        "recommendations-builtin-catalog"
    };
    let mut server = Server::start(name, binary, &args, &[], work, None)?;
    server.wait_for_port(addr, Duration::from_secs(60)).await?;
    let ready = started.elapsed();
    let peak = server.usage(ticks)?.peak_rss;
    server.stop().await?;
    Ok((ready, peak))
}

/// A CSV catalog of `books` books spread over the three categories, as the
/// Criterion benchmarks write it.
fn write(path: &Path, books: u64) -> anyhow::Result<()> {
    write_titled(path, books, "Book number")
}

/// [`write`], each title `{title} {id}`.
fn write_titled(path: &Path, books: u64, title: &str) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let categories = ["mystery", "science_fiction", "self_help"];
    writeln!(out, "id,title,author,category")?;
    for id in 1..=books {
        let category = categories[(id % 3) as usize];
        writeln!(out, "{id},{title} {id},Author {id},{category}")?;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))
}
