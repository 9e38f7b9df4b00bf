//! Recommend's cost does not grow with the catalog: the same call on
//! catalogs of 9, 10,000 and 1,000,000 books, plus the load time of the
//! largest. Run: `cargo bench -p recommendations --bench recommend`.

use std::{hint::black_box, io::Write as _, sync::Arc, time::Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use protobufs::v1::{self, recommendations_service_server::RecommendationsService as _};
use recommendations::{Catalog, Category, api::Recommendations};

/// A CSV catalog of `size` books spread over the three categories.
fn catalog_file(size: usize) -> tempfile::TempPath {
    let mut file = tempfile::Builder::new()
        .suffix(".csv")
        .tempfile()
        .expect("a temp file");
    let mut out = std::io::BufWriter::new(file.as_file_mut());
    writeln!(out, "id,title,author,category").expect("write");
    for id in 1..=size {
        let category = Category::ALL[id % 3];
        writeln!(out, "{id},Book number {id},Author {id},{category}").expect("write");
    }
    drop(out);
    file.into_temp_path()
}

fn recommend(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("recommend_3_mystery");
    for size in [9, 10_000, 1_000_000] {
        let path = catalog_file(size);
        let started = Instant::now();
        let catalog = Catalog::from_path(&path).expect("a valid catalog");
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

        let service = Recommendations::new(catalog);
        group.bench_with_input(
            BenchmarkId::new("v1_handler", size),
            &service,
            |b, service| {
                b.iter(|| {
                    let request = tonic::Request::new(v1::RecommendRequest {
                        user_id: 1,
                        category: v1::Category::Mystery as i32,
                        max_results: 3,
                    });
                    runtime
                        .block_on(service.recommend(request))
                        .map(|r| black_box(r.into_inner().books.len()))
                })
            },
        );
    }
    group.finish();
}

fn load(c: &mut Criterion) {
    let path = catalog_file(1_000_000);
    let mut group = c.benchmark_group("load_catalog");
    group.sample_size(10);
    group.bench_function("1000000_books_csv", |b| {
        b.iter(|| black_box(Catalog::from_path(&path).expect("a valid catalog").len()))
    });
    group.finish();
}

criterion_group!(benches, recommend, load);
criterion_main!(benches);
