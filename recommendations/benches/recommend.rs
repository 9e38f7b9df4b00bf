//! Recommend's cost does not grow with the catalog: the same request on
//! catalogs of 10, 10,000 and 1,000,000 books, measured three ways, plus the
//! load time of the largest catalog. `cargo xtask bench` runs this with the
//! rest of the suite; alone: `cargo bench -p recommendations --bench recommend`.
//!
//! - `catalog`: choosing three books (`Catalog::recommend`);
//! - `handler`: the v1 handler called in process (choose, copy, respond);
//! - `call`: a whole call, a tonic client over loopback TCP to the real
//!   server with every layer, and back: what a client sees, less the
//!   thread wake-ups (client and server share one thread).

use std::{hint::black_box, path::Path, sync::Arc, time::Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use protobufs::v1::{
    self, recommendations_service_client::RecommendationsServiceClient,
    recommendations_service_server::RecommendationsService as _,
};
use recommendations::{Application, Catalog, Category, Settings, api::Recommender};
use tokio::runtime::Runtime;
use tonic::transport::{Channel, Endpoint};

/// A CSV catalog of `size` books spread over the three categories.
fn catalog_file(size: usize) -> tempfile::TempPath {
    service_kit::testing::csv_catalog((1..=size).map(|id| {
        let category = Category::ALL[id % 3];
        format!("{id},Book number {id},Author {id},{category}")
    }))
}

/// The real server, with every layer, serving `catalog` on a loopback port
/// of `runtime`, and a client connected to it.
fn serve(runtime: &Runtime, catalog: &Path) -> RecommendationsServiceClient<Channel> {
    runtime.block_on(async {
        let mut settings = Settings::for_tests();
        settings.catalog = Some(catalog.to_path_buf());
        let app = Application::build(settings)
            .await
            .expect("the server starts");
        let addr = app.local_addr();
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("a valid URI")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("the server accepts a connection");
        RecommendationsServiceClient::new(channel)
    })
}

/// One thread for client and server alike: the figures are CPU work, not
/// thread wake-ups.
fn single_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn request() -> v1::RecommendRequest {
    v1::RecommendRequest {
        user_id: 1,
        category: v1::Category::Mystery as i32,
        max_results: 3,
    }
}

fn recommend(c: &mut Criterion) {
    let runtime = single_thread();
    let mut group = c.benchmark_group("recommend_3_mystery");
    for size in [10, 10_000, 1_000_000] {
        let path = catalog_file(size);

        // First, while this process holds no other catalog: a fresh runtime
        // with only this server, dropped (and the server with it) before
        // anything else, so that no size measures another's idle server or
        // the heap left by the in-process benches below.
        let call_runtime = single_thread();
        let client = serve(&call_runtime, &path);
        group.bench_with_input(BenchmarkId::new("call", size), &client, |b, client| {
            b.iter(|| {
                let mut client = client.clone();
                call_runtime
                    .block_on(client.recommend(request()))
                    .map(|r| black_box(r.into_inner().books.len()))
            })
        });
        drop(call_runtime);

        let started = Instant::now();
        // Loaded on a thread of its own, as the server does (on tokio's
        // blocking pool): a catalog's many small allocations must not sit in
        // the heap arena the benches below allocate from.
        let catalog = std::thread::scope(|scope| {
            scope
                .spawn(|| Catalog::from_path(&path, u64::MAX).expect("a valid catalog"))
                .join()
                .expect("the loader finished")
        });
        eprintln!("loaded {size} books in {:?}", started.elapsed());
        let catalog = Arc::new(catalog);

        group.bench_with_input(BenchmarkId::new("catalog", size), &catalog, |b, catalog| {
            b.iter(|| {
                black_box(
                    catalog
                        .recommend(Category::Mystery, 3, &mut rand::rng())
                        .count(),
                )
            })
        });

        let service = Recommender::new(catalog);
        group.bench_with_input(BenchmarkId::new("handler", size), &service, |b, service| {
            b.iter(|| {
                runtime
                    .block_on(service.recommend(tonic::Request::new(request())))
                    .map(|r| black_box(r.into_inner().books.len()))
            })
        });
        drop(service);
    }
    group.finish();
}

fn load(c: &mut Criterion) {
    let path = catalog_file(1_000_000);
    let mut group = c.benchmark_group("load_catalog");
    group.sample_size(10);
    group.bench_function("1000000_books_csv", |b| {
        b.iter(|| {
            black_box(
                Catalog::from_path(&path, u64::MAX)
                    .expect("a valid catalog")
                    .len(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, recommend, load);
criterion_main!(benches);
