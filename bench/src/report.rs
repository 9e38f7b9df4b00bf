//! The results: their JSON form, the results page (tables) and the chart.

use std::fmt::Write as _;

mod chart;

pub use chart::chart;

use serde::Serialize;

use crate::criterion;

/// One server's figures under load (medians over the rounds).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Figures {
    /// Requests per second.
    pub rate: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// CPU time per request of every process serving it, µs.
    pub cpu_us: f64,
    /// The part of `cpu_us` spent in the kernel, µs.
    pub kernel_us: f64,
}

impl Figures {
    /// The median of each figure over `rounds` (at least one).
    pub fn median(rounds: &[Figures]) -> Figures {
        let median = |field: fn(&Figures) -> f64| {
            let mut values: Vec<f64> = rounds.iter().map(field).collect();
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
        };
        Figures {
            rate: median(|f| f.rate),
            p50_us: median(|f| f.p50_us),
            p99_us: median(|f| f.p99_us),
            cpu_us: median(|f| f.cpu_us),
            kernel_us: median(|f| f.kernel_us),
        }
    }
}

/// The real service against its ceiling in one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// What was asked, e.g. "Recommend (v1)".
    pub scenario: String,
    /// The load: tool and shape.
    pub load: String,
    /// What the real side is.
    pub service: String,
    /// What the ceiling is.
    pub ceiling: String,
    /// The real side's medians.
    pub service_figures: Figures,
    /// The ceiling's medians.
    pub ceiling_figures: Figures,
    /// Every round, service and ceiling.
    pub rounds: Vec<(Figures, Figures)>,
    /// Requests per round, and how they were checked.
    pub checked: String,
}

impl Comparison {
    /// Throughput as a share of the ceiling's. See [`Comparison::paired`].
    pub fn rate_ratio(&self) -> f64 {
        self.paired(|f| f.rate)
    }

    /// CPU per request relative to the ceiling's. See [`Comparison::paired`].
    pub fn cpu_ratio(&self) -> f64 {
        self.paired(|f| f.cpu_us)
    }

    /// The median over rounds of each round's ratio of service to ceiling.
    /// A round runs the two back to back, so each ratio compares them on
    /// the machine as it was then: a VM that gets faster or slower between
    /// rounds (this one drifts by 20 %) moves both sides of a ratio alike.
    fn paired(&self, field: fn(&Figures) -> f64) -> f64 {
        if self.rounds.is_empty() {
            return field(&self.service_figures) / field(&self.ceiling_figures);
        }
        let mut ratios: Vec<f64> = self
            .rounds
            .iter()
            .map(|(service, ceiling)| field(service) / field(ceiling))
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    }
}

/// Peak memory of one process over a phase.
#[derive(Clone, Debug, Serialize)]
pub struct Memory {
    /// The process.
    pub process: String,
    /// The phase it was measured over.
    pub phase: String,
    /// VmHWM, bytes.
    pub peak_rss: u64,
}

/// Instructions one process executed per request, counted by callgrind.
#[derive(Clone, Debug, Serialize)]
pub struct Instructions {
    /// The process.
    pub process: String,
    /// What a request is to it ("page", "call of a page").
    pub per: String,
    /// Requests counted.
    pub requests: u64,
    /// Instructions per request.
    pub per_request: f64,
    /// Instructions per request by component (see [`crate::callgrind`]),
    /// the largest first.
    pub components: Vec<(String, f64)>,
}

/// Instructions per Recommend call, the service against bare tonic,
/// counted by callgrind under h2load.
#[derive(Clone, Debug, Serialize)]
pub struct CallInstructions {
    /// e.g. "Recommend (v1)".
    pub scenario: String,
    /// Calls counted on each side.
    pub calls: u64,
    /// recommendations' instructions per call.
    pub service: f64,
    /// bare tonic's.
    pub ceiling: f64,
}

/// The homepage under one runtime choice (the runtime phase).
#[derive(Clone, Debug, Serialize)]
pub struct RuntimeChoice {
    /// CPUs both services were confined to.
    pub cpus: usize,
    /// Runtime workers of each (1: the current-thread scheduler).
    pub workers: usize,
    /// wrk's connections.
    pub connections: u32,
    /// Whether this is what the services choose on `cpus` CPUs by default.
    pub default: bool,
    /// Medians over the rounds (CPU of both services).
    pub figures: Figures,
}

impl RuntimeChoice {
    /// How it is named in tables.
    pub fn scheduler(&self) -> String {
        match self.workers {
            1 => "current-thread".to_owned(),
            n => format!("multi-thread, {n} workers"),
        }
    }
}

/// The best pages per second among the runtime choices measured on `cpus`
/// CPUs and `connections`.
pub fn best_rate(choices: &[RuntimeChoice], cpus: usize, connections: u32) -> f64 {
    choices
        .iter()
        .filter(|c| c.cpus == cpus && c.connections == connections)
        .map(|c| c.figures.rate)
        .fold(0.0, f64::max)
}

/// A performance target and whether this run met it.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// What is promised.
    pub promise: String,
    /// What was measured.
    pub measured: String,
    /// Whether the promise held.
    pub met: bool,
}

/// Where the figures were taken.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Cores online.
    pub cores: usize,
    /// `uname -sr`.
    pub kernel: String,
    /// Tool versions.
    pub tools: String,
    /// UTC date of the run.
    pub date: String,
}

/// Everything one run of the suite produced.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// A short run that checks the suite, not the figures.
    pub quick: bool,
    /// Where it ran.
    pub machine: Machine,
    /// Load runs.
    pub comparisons: Vec<Comparison>,
    /// Peak memory.
    pub memory: Vec<Memory>,
    /// Instructions per page, unless skipped.
    pub instructions: Vec<Instructions>,
    /// Instructions per Recommend call, unless skipped.
    pub call_instructions: Vec<CallInstructions>,
    /// The homepage under each runtime choice, unless skipped.
    pub runtime: Vec<RuntimeChoice>,
    /// The homepage beside the tutorial's Python services (ours are the
    /// `service` side, Python the `ceiling` side), unless skipped.
    pub python: Option<Comparison>,
    /// Criterion, unless skipped.
    pub criterion: Option<criterion::Figures>,
    /// The large catalog at start-up (with Criterion).
    pub catalog: Option<crate::catalog_load::CatalogLoad>,
    /// The targets.
    pub targets: Vec<Target>,
}

/// Instructions per page, every process counted.
pub fn per_page(instructions: &[Instructions]) -> f64 {
    instructions.iter().map(|i| i.per_request).sum()
}

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

#[cfg(test)]
mod tests;
