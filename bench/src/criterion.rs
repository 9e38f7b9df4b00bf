//! Criterion's figures for the Recommend path at three catalog sizes and the
//! load time of the largest, read from `target/criterion` after a run of
//! `cargo bench -p recommendations --bench recommend`.

use std::{path::Path, time::SystemTime};

use anyhow::{Context, bail};

/// The catalog sizes of the bench, smallest first.
pub const SIZES: [u64; 3] = [10, 10_000, 1_000_000];

/// The median time of one Recommend at one catalog size, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Scale {
    /// Books in the catalog.
    pub books: u64,
    /// Choosing three books (`Catalog::recommend`).
    pub sample_ns: f64,
    /// The v1 handler called in process: choose, copy, build the response.
    pub handler_ns: f64,
    /// A whole call: a tonic client over loopback TCP to the real server and
    /// every layer, and back.
    pub call_ns: f64,
}

/// Everything the Recommend bench measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Figures {
    /// One row per size of [`SIZES`].
    pub scale: Vec<Scale>,
    /// Loading a 1,000,000-book CSV catalog, in seconds.
    pub load_1m_s: f64,
}

/// Runs the bench; `quick` shortens every measurement to check the bench
/// works, not to measure.
pub async fn run(cargo: &str, workspace: &Path, quick: bool) -> anyhow::Result<()> {
    let mut command = tokio::process::Command::new(cargo);
    command
        .current_dir(workspace)
        .args([
            "bench",
            "--locked",
            "-p",
            "recommendations",
            "--bench",
            "recommend",
            "--",
        ])
        .arg("--noplot");
    if quick {
        command.args([
            "--warm-up-time",
            "0.1",
            "--measurement-time",
            "0.3",
            "--sample-size",
            "10",
        ]);
    }
    let status = command.status().await.context("cannot run cargo bench")?;
    if !status.success() {
        bail!("cargo bench failed ({status})");
    }
    Ok(())
}

/// Reads the figures of a run that finished after `since`.
pub fn read(criterion_dir: &Path, since: SystemTime) -> anyhow::Result<Figures> {
    let group = criterion_dir.join("recommend_3_mystery");
    let median = |path: &Path| median_ns(&path.join("new/estimates.json"), since);
    let scale = SIZES
        .iter()
        .map(|books| {
            let size = books.to_string();
            Ok(Scale {
                books: *books,
                sample_ns: median(&group.join("catalog").join(&size))?,
                handler_ns: median(&group.join("handler").join(&size))?,
                call_ns: median(&group.join("call").join(&size))?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let load = median(&criterion_dir.join("load_catalog/1000000_books_csv"))?;
    Ok(Figures {
        scale,
        load_1m_s: load / 1e9,
    })
}

/// The median point estimate of one `estimates.json`, refusing a file older
/// than `since` (a stale result of an earlier run).
fn median_ns(path: &Path, since: SystemTime) -> anyhow::Result<f64> {
    let modified = std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .with_context(|| format!("no Criterion estimate at {}", path.display()))?;
    if modified < since {
        bail!("{} is left over from an earlier run", path.display());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    median_of(&text).with_context(|| format!("no median in {}", path.display()))
}

/// `median.point_estimate` of Criterion's `estimates.json`.
pub fn median_of(estimates: &str) -> Option<f64> {
    let value: serde_json::Value = serde_json::from_str(estimates).ok()?;
    value.get("median")?.get("point_estimate")?.as_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_read_from_estimates() {
        let estimates = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":470.1,"upper_bound":480.9},"point_estimate":475.2,"standard_error":2.7},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":468.0,"upper_bound":472.0},"point_estimate":470.5,"standard_error":1.1}}"#;

        assert_eq!(median_of(estimates), Some(470.5));
        assert_eq!(median_of(r#"{"mean":{"point_estimate":1.0}}"#), None);
    }
}
