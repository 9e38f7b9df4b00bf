//! The targets a full run must meet, judged from its figures.

use crate::{
    catalog_load::CatalogLoad,
    criterion,
    report::{self, Comparison, Memory, Target},
};

use super::HOMEPAGE;

/// The service's targets (docs/benchmarks/README.md).
const MIN_RATE_RATIO: f64 = 0.90;
const MAX_CPU_RATIO: f64 = 1.15;
const MAX_CPU_PER_PAGE_US: f64 = 40.0;
const MAX_PEAK_RSS: u64 = 20_000_000;
const MIN_SCALE_RATIO: f64 = 0.90;
/// The catalog's peak memory while loading, over its file's size (issue 14).
const MAX_CATALOG_RATIO: f64 = 2.5;

pub fn targets(
    comparisons: &[Comparison],
    memory: &[Memory],
    criterion: Option<&criterion::Figures>,
    catalog: Option<&CatalogLoad>,
) -> Vec<Target> {
    let mut targets = Vec::new();
    for c in comparisons
        .iter()
        .filter(|c| c.scenario.starts_with("Recommend"))
    {
        targets.push(Target {
            promise: format!("{}: ≥ {MIN_RATE_RATIO:.2}× bare tonic's req/s", c.scenario),
            measured: format!("{:.2}×", c.rate_ratio()),
            met: c.rate_ratio() >= MIN_RATE_RATIO,
        });
        targets.push(Target {
            promise: format!(
                "{}: ≤ {MAX_CPU_RATIO:.2}× bare tonic's CPU per call",
                c.scenario
            ),
            measured: format!("{:.2}×", c.cpu_ratio()),
            met: c.cpu_ratio() <= MAX_CPU_RATIO,
        });
    }
    for c in comparisons.iter().filter(|c| c.scenario == HOMEPAGE) {
        targets.push(Target {
            promise: format!(
                "Homepage: CPU per page, both services, ≤ {MAX_CPU_PER_PAGE_US:.0} µs"
            ),
            measured: format!("{:.1} µs", c.service_figures.cpu_us),
            met: c.service_figures.cpu_us <= MAX_CPU_PER_PAGE_US,
        });
    }
    let services: u64 = memory
        .iter()
        .filter(|m| m.phase == HOMEPAGE && !m.process.starts_with("bare"))
        .map(|m| m.peak_rss)
        .sum();
    targets.push(Target {
        promise: format!(
            "Peak RSS under load, both services, ≤ {}",
            report::megabytes(MAX_PEAK_RSS)
        ),
        measured: report::megabytes(services),
        met: services <= MAX_PEAK_RSS,
    });
    if let Some(criterion) = criterion {
        let call = |books: u64| {
            criterion
                .scale
                .iter()
                .find(|s| s.books == books)
                .map_or(f64::NAN, |s| s.call_ns)
        };
        let ratio = call(10) / call(1_000_000);
        targets.push(Target {
            promise: format!(
                "Recommend at 1,000,000 books: ≥ {MIN_SCALE_RATIO:.2}× its speed at 10 books (whole call)"
            ),
            measured: format!("{ratio:.2}×"),
            met: ratio >= MIN_SCALE_RATIO,
        });
    }
    if let Some(catalog) = catalog {
        targets.push(Target {
            promise: format!(
                "Loading a {}-book catalog: peak memory ≤ {MAX_CATALOG_RATIO:.1}× the file",
                report::rate(catalog.books as f64)
            ),
            measured: format!("{:.2}×", catalog.ratio()),
            met: catalog.ratio() <= MAX_CATALOG_RATIO,
        });
    }
    targets
}
