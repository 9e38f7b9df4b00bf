//! The results page: the tables and figures of results.md, in Markdown.

use std::fmt::Write as _;

use super::{Figures, Instructions, Results, RuntimeChoice, best_rate, per_page};

/// A request rate, e.g. `95,405`.
/// The homepage under each runtime choice, the default in bold.
fn runtime_table(md: &mut String, choices: &[RuntimeChoice]) {
    md.push_str(
        "| Services on | Connections | Runtime, each service | Pages/s | vs the best | CPU / page | of it, kernel |\n\
         | --- | ---: | --- | ---: | ---: | ---: | ---: |\n",
    );
    for c in choices {
        let best = best_rate(choices, c.cpus, c.connections);
        let scheduler = if c.default {
            format!("**{} (default)**", c.scheduler())
        } else {
            c.scheduler()
        };
        let f = &c.figures;
        let _ = writeln!(
            md,
            "| {} CPU{} | {} | {scheduler} | {} | {:.2}× | {:.1} µs | {:.0} % |",
            c.cpus,
            if c.cpus == 1 { "" } else { "s" },
            c.connections,
            rate(f.rate),
            f.rate / best.max(f64::MIN_POSITIVE),
            f.cpu_us,
            100.0 * f.kernel_us / f.cpu_us.max(f64::MIN_POSITIVE)
        );
    }
    md.push('\n');
}

/// Where the instructions of a page went, by component, in each process
/// and in both (user space only: callgrind does not see the kernel).
fn components_table(md: &mut String, instructions: &[Instructions]) {
    let mut rows: Vec<(&str, Vec<f64>)> = Vec::new();
    for (column, process) in instructions.iter().enumerate() {
        for (component, count) in &process.components {
            let row = match rows.iter().position(|(name, _)| name == component) {
                Some(row) => row,
                None => {
                    rows.push((component, vec![0.0; instructions.len()]));
                    rows.len() - 1
                }
            };
            rows[row].1[column] += count;
        }
    }
    let both = |counts: &[f64]| counts.iter().sum::<f64>();
    rows.sort_by(|a, b| both(&b.1).total_cmp(&both(&a.1)));
    let total: f64 = rows.iter().map(|(_, counts)| both(counts)).sum();
    // A component of less than one instruction per page is noise.
    rows.retain(|(_, counts)| both(counts) >= 0.5);

    let processes: Vec<&str> = instructions.iter().map(|i| i.process.as_str()).collect();
    let _ = writeln!(
        md,
        "| Component (instructions per page) | {} | both | share |\n| --- |{} ---: | ---: |",
        processes.join(" | "),
        " ---: |".repeat(processes.len())
    );
    for (component, counts) in &rows {
        let cells: Vec<String> = counts.iter().map(|&n| rate(n)).collect();
        let _ = writeln!(
            md,
            "| {component} | {} | {} | {:.1} % |",
            cells.join(" | "),
            rate(both(counts)),
            100.0 * both(counts) / total.max(1.0)
        );
    }
    md.push('\n');
}

/// A row's req/s, p50, p99 and CPU cells.
fn figure_cells(f: &Figures) -> String {
    format!(
        "{} | {} | {} | {:.1} µs | {:.0} %",
        rate(f.rate),
        micros(f.p50_us),
        micros(f.p99_us),
        f.cpu_us,
        100.0 * f.kernel_us / f.cpu_us.max(f64::MIN_POSITIVE)
    )
}

pub fn rate(value: f64) -> String {
    let whole = value.round() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A duration given in µs, in the unit that suits it.
pub fn micros(value: f64) -> String {
    if value >= 1000.0 {
        format!("{:.2} ms", value / 1000.0)
    } else {
        format!("{value:.0} µs")
    }
}

/// A duration given in ns, in the unit that suits it.
fn nanos(value: f64) -> String {
    if value >= 1000.0 {
        format!("{:.2} µs", value / 1000.0)
    } else {
        format!("{value:.0} ns")
    }
}

/// Bytes as binary megabytes (the unit of container limits).
pub fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Bytes as decimal megabytes.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The results page, `docs/benchmarks/results.md` (`chart` is the chart's
/// path relative to it).
pub fn markdown(results: &Results, chart: &str) -> String {
    let mut md = String::from(
        "# Benchmark results\n\n\
         Written by `cargo xtask bench`; the method and the targets are in [README.md](README.md), \
         what the measurements changed in [history.md](history.md).\n\n",
    );
    let machine = &results.machine;
    let _ = writeln!(
        md,
        "Measured on {} ({} cores), {}, on {}; {}.\n",
        machine.cpu, machine.cores, machine.kernel, machine.date, machine.tools
    );
    // A run of one part (--only) shows only that part's tables.
    if !results.comparisons.is_empty() {
        let _ = writeln!(
            md,
            "![Throughput and CPU per request, service and ceiling]({chart})\n"
        );

        md.push_str(
            "| Scenario | Server | req/s | p50 | p99 | CPU / request | of it, kernel | vs ceiling: req/s, CPU |\n",
        );
        md.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for c in &results.comparisons {
            let row = |server: &str, f: &Figures| {
                format!("| {} | {server} | {} |", c.scenario, figure_cells(f))
            };
            let _ = writeln!(
                md,
                "{} {:.2}×, {:.2}× |",
                row(&c.service, &c.service_figures),
                c.rate_ratio(),
                c.cpu_ratio()
            );
            let _ = writeln!(md, "{} 1 (ceiling) |", row(&c.ceiling, &c.ceiling_figures));
        }
        md.push('\n');
        for c in &results.comparisons {
            let _ = writeln!(md, "- {}: {}; {}.", c.scenario, c.load, c.checked);
        }
        md.push('\n');
    }

    if !results.memory.is_empty() {
        md.push_str("| Process | Under load of | Peak RSS |\n| --- | --- | ---: |\n");
        for m in &results.memory {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                m.process,
                m.phase,
                megabytes(m.peak_rss)
            );
        }
        md.push('\n');
    }

    if let Some(python) = &results.python {
        let _ = writeln!(
            md,
            "| {} | req/s | p50 | p99 | CPU / page | of it, kernel |\n| --- | ---: | ---: | ---: | ---: | ---: |",
            python.scenario
        );
        for (server, f) in [
            (&python.service, &python.service_figures),
            (&python.ceiling, &python.ceiling_figures),
        ] {
            let _ = writeln!(md, "| {server} | {} |", figure_cells(f));
        }
        let _ = writeln!(
            md,
            "\nOurs serve {:.1}× the pages per second, at {:.1}× less CPU per page (medians of each round's ratio). {}; {}.\n",
            python.rate_ratio(),
            1.0 / python.cpu_ratio(),
            python.load,
            python.checked
        );
    }

    if !results.instructions.is_empty() {
        md.push_str(
            "| Instructions (callgrind) | Per | Requests counted | Instructions |\n\
             | --- | --- | ---: | ---: |\n",
        );
        for i in &results.instructions {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                i.process,
                i.per,
                rate(i.requests as f64),
                rate(i.per_request)
            );
        }
        let _ = writeln!(
            md,
            "| both services | page | | {} |\n",
            rate(per_page(&results.instructions))
        );
    }

    if results
        .instructions
        .iter()
        .any(|i| !i.components.is_empty())
    {
        components_table(&mut md, &results.instructions);
    }

    if !results.call_instructions.is_empty() {
        md.push_str(
            "| Instructions per call (callgrind, h2load) | Calls counted | recommendations | bare tonic | ratio |\n\
             | --- | ---: | ---: | ---: | ---: |\n",
        );
        for c in &results.call_instructions {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.3}× |",
                c.scenario,
                rate(c.calls as f64),
                rate(c.service),
                rate(c.ceiling),
                c.service / c.ceiling.max(f64::MIN_POSITIVE)
            );
        }
        md.push('\n');
    }

    if !results.runtime.is_empty() {
        runtime_table(&mut md, &results.runtime);
    }

    if let Some(criterion) = &results.criterion {
        md.push_str(
            "| Books | Choose 3 | v1 handler | Whole call (loopback, every layer) |\n\
             | ---: | ---: | ---: | ---: |\n",
        );
        for s in &criterion.scale {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                rate(s.books as f64),
                nanos(s.sample_ns),
                nanos(s.handler_ns),
                nanos(s.call_ns)
            );
        }
        let _ = writeln!(
            md,
            "\nLoading a 1,000,000-book CSV catalog takes {:.2} s.\n",
            criterion.load_1m_s
        );
    }
    if let Some(catalog) = &results.catalog {
        let _ = writeln!(
            md,
            "Started on a {}-book CSV catalog of {}, the service listens after {:.2} s; \
             loading took {} at its peak, {:.2}× the file (VmHWM, less the same \
             binary's on its built-in catalog).\n",
            rate(catalog.books as f64),
            megabytes(catalog.file_bytes),
            catalog.ready_s,
            megabytes(catalog.peak_bytes),
            catalog.ratio()
        );
        let reload = &catalog.reload;
        let _ = writeln!(
            md,
            "Another catalog as large, renamed over it and reloaded on SIGHUP while {} \
             Recommend calls were made ({} failed), was served {:.2} s after the signal; \
             the process's peak over its life, both catalogs in memory during the reload, \
             was {} above the built-in catalog's, {:.2}× the catalog's own at start.\n",
            reload.calls,
            reload.failed,
            reload.reload_s,
            megabytes(reload.peak_bytes),
            catalog.reload_ratio()
        );
    }

    md.push_str("| Target | Measured | Met |\n| --- | --- | --- |\n");
    for t in &results.targets {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            t.promise,
            t.measured,
            if t.met { "yes" } else { "**no**" }
        );
    }
    md
}
