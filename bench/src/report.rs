//! The results: their JSON form, the results page (tables) and the chart.

mod chart;
mod markdown;

pub use chart::chart;
pub use markdown::{markdown, mebibytes, megabytes, micros, rate};

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

#[cfg(test)]
mod tests;
