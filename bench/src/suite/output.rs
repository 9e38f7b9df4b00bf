//! Where a run's results go: `target/bench/`, and `docs/benchmarks/` for a
//! full run; and the machine they were measured on.

use std::path::Path;

use anyhow::Context;

use crate::report::{self, Machine, Results};

pub fn write_results(results: &Results, dir: &Path, chart: &str) -> anyhow::Result<()> {
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write(
        "results.json",
        serde_json::to_string_pretty(results)? + "\n",
    )?;
    write("results.md", report::markdown(results, chart))?;
    write(chart, report::chart(results))
}

/// Rewrites docs/benchmarks/ (results.json, results.md, chart.svg).
pub fn update_docs(results: &Results, workspace: &Path) -> anyhow::Result<()> {
    let docs = workspace.join("docs/benchmarks");
    std::fs::create_dir_all(&docs).with_context(|| format!("cannot create {}", docs.display()))?;
    write_results(results, &docs, "chart.svg")?;
    eprintln!("bench: updated {}", docs.display());
    Ok(())
}

/// What the figures were measured on.
pub async fn machine() -> anyhow::Result<Machine> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or_else(
            || "unknown CPU".to_owned(),
            |(_, model)| model.trim().to_owned(),
        );
    let first_line = |program: &str, args: &[&str]| {
        let program = program.to_owned();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        async move {
            let output = tokio::process::Command::new(&program)
                .args(&args)
                .output()
                .await
                .with_context(|| format!("cannot run {program}"))?;
            let text = String::from_utf8_lossy(&output.stdout).to_string()
                + &String::from_utf8_lossy(&output.stderr);
            anyhow::Ok(text.lines().next().unwrap_or_default().trim().to_owned())
        }
    };
    let h2load = first_line("h2load", &["--version"])
        .await
        .context("h2load is needed: `apt-get install nghttp2-client`")?;
    let wrk = first_line("wrk", &["-v"])
        .await
        .context("wrk is needed: `apt-get install wrk`")?;
    let wrk = wrk.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    Ok(Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: first_line("uname", &["-sr"]).await?,
        tools: format!("{h2load}, {wrk}"),
        date: first_line("date", &["-u", "+%Y-%m-%d"]).await?,
    })
}
