//! The results: their JSON form, the README section (tables) and the chart.

use std::fmt::Write as _;

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
    /// Criterion, unless skipped.
    pub criterion: Option<criterion::Figures>,
    /// The large catalog at start-up (with Criterion).
    pub catalog: Option<crate::catalog_load::CatalogLoad>,
    /// The targets.
    pub targets: Vec<Target>,
}

/// A request rate, e.g. `95,405`.
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

/// The README section, between its markers (`chart` is the chart's path
/// relative to the README).
pub fn markdown(results: &Results, chart: &str) -> String {
    let mut md = String::new();
    let machine = &results.machine;
    let _ = writeln!(
        md,
        "Measured on {} ({} cores), {}, on {}; {}.\n",
        machine.cpu, machine.cores, machine.kernel, machine.date, machine.tools
    );
    let _ = writeln!(
        md,
        "![Throughput and CPU per request, service and ceiling]({chart})\n"
    );

    md.push_str(
        "| Scenario | Server | req/s | p50 | p99 | CPU / request | vs ceiling: req/s, CPU |\n",
    );
    md.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
    for c in &results.comparisons {
        let row = |server: &str, f: &Figures| {
            format!(
                "| {} | {server} | {} | {} | {} | {:.1} µs |",
                c.scenario,
                rate(f.rate),
                micros(f.p50_us),
                micros(f.p99_us),
                f.cpu_us
            )
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

/// Replaces the text between `<!-- benchmarks:start -->` and
/// `<!-- benchmarks:end -->` in `readme`.
pub fn splice(readme: &str, section: &str) -> Option<String> {
    const START: &str = "<!-- benchmarks:start -->";
    const END: &str = "<!-- benchmarks:end -->";
    let (before, rest) = readme.split_once(START)?;
    let (_, after) = rest.split_once(END)?;
    Some(format!("{before}{START}\n{section}{END}{after}"))
}

/// A chart panel: its title, the figure it shows and how to label a bar.
type Panel = (&'static str, fn(&Figures) -> f64, fn(f64) -> String);

const SERVICE_COLOUR: &str = "#1f5fa8";
const CEILING_COLOUR: &str = "#9aa5b1";

/// The chart: for each scenario, throughput and CPU per request of the
/// service beside its ceiling, as horizontal bars.
pub fn chart(results: &Results) -> String {
    const WIDTH: f64 = 760.0;
    const LABEL: f64 = 150.0;
    const PANEL: f64 = (WIDTH - LABEL - 40.0) / 2.0;
    const BAR: f64 = 16.0;
    const ROW: f64 = 2.0 * BAR + 18.0;
    const TOP: f64 = 64.0;
    let rows = &results.comparisons;
    let height = TOP + ROW * rows.len() as f64 + 16.0;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="system-ui, sans-serif" font-size="12" role="img" aria-labelledby="title">
<title id="title">Throughput and CPU per request of each service beside its ceiling</title>
<rect width="100%" height="100%" fill="#ffffff"/>
<rect x="{LABEL}" y="10" width="12" height="12" fill="{SERVICE_COLOUR}"/><text x="{}" y="20">service, every layer</text>
<rect x="{}" y="10" width="12" height="12" fill="{CEILING_COLOUR}"/><text x="{}" y="20">ceiling: bare tonic / bare axum</text>"##,
        LABEL + 18.0,
        LABEL + 190.0,
        LABEL + 208.0
    );
    let panels: [Panel; 2] = [
        ("Requests per second (more is better)", |f| f.rate, rate),
        (
            "CPU µs per request (less is better)",
            |f| f.cpu_us,
            |v| format!("{v:.1}"),
        ),
    ];
    for (index, (title, value, label)) in panels.into_iter().enumerate() {
        let x0 = LABEL + index as f64 * (PANEL + 40.0);
        let max = rows
            .iter()
            .flat_map(|c| [value(&c.service_figures), value(&c.ceiling_figures)])
            .fold(f64::MIN_POSITIVE, f64::max);
        let _ = writeln!(
            svg,
            r#"<text x="{x0}" y="48" font-weight="bold">{title}</text>"#
        );
        for (i, c) in rows.iter().enumerate() {
            let y = TOP + ROW * i as f64;
            if index == 0 {
                let _ = writeln!(
                    svg,
                    r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                    LABEL - 10.0,
                    y + BAR + 4.0,
                    escape(&c.scenario)
                );
            }
            for (j, (figures, colour)) in [
                (&c.service_figures, SERVICE_COLOUR),
                (&c.ceiling_figures, CEILING_COLOUR),
            ]
            .into_iter()
            .enumerate()
            {
                let v = value(figures);
                let w = (v / max * (PANEL - 60.0)).max(1.0);
                let by = y + j as f64 * BAR;
                let _ = writeln!(
                    svg,
                    r#"<rect x="{x0}" y="{by}" width="{w:.1}" height="{}" fill="{colour}"/><text x="{:.1}" y="{}">{}</text>"#,
                    BAR - 2.0,
                    x0 + w + 4.0,
                    by + BAR - 5.0,
                    label(v)
                );
            }
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(rate: f64, cpu_us: f64) -> Figures {
        Figures {
            rate,
            p50_us: 500.0,
            p99_us: 1500.0,
            cpu_us,
        }
    }

    fn results() -> Results {
        Results {
            quick: false,
            machine: Machine {
                cpu: "Test CPU".into(),
                cores: 2,
                kernel: "Linux 6.1".into(),
                tools: "h2load 1.52.0, wrk 4.1.0".into(),
                date: "2026-11-21".into(),
            },
            comparisons: vec![Comparison {
                scenario: "Recommend (v1)".into(),
                load: "h2load, 8 connections × 16 streams".into(),
                service: "recommendations".into(),
                ceiling: "bare tonic".into(),
                service_figures: figures(90_000.0, 11.0),
                ceiling_figures: figures(100_000.0, 10.0),
                rounds: vec![(figures(90_000.0, 11.0), figures(100_000.0, 10.0))],
                checked: "300,000 calls, all OK".into(),
            }],
            memory: vec![Memory {
                process: "recommendations".into(),
                phase: "gRPC".into(),
                peak_rss: 9_196_000,
            }],
            criterion: None,
            catalog: None,
            targets: vec![Target {
                promise: "Recommend ≥ 0.90× bare tonic req/s".into(),
                measured: "0.90×".into(),
                met: true,
            }],
        }
    }

    #[test]
    fn medians_are_taken_field_by_field() {
        let median = Figures::median(&[figures(3.0, 9.0), figures(1.0, 7.0), figures(2.0, 8.0)]);

        assert_eq!((median.rate, median.cpu_us), (2.0, 8.0));
    }

    #[test]
    fn ratios_are_the_median_of_each_rounds_ratio() {
        let mut comparison = results().comparisons.remove(0);
        // A machine that slows down by half over the run: the ratio of the
        // medians (0.6) would say otherwise; each round says 0.9 and 1.1.
        comparison.rounds = vec![
            (figures(90.0, 11.0), figures(100.0, 10.0)),
            (figures(72.0, 22.0), figures(80.0, 20.0)),
            (figures(45.0, 44.0), figures(50.0, 40.0)),
        ];
        comparison.service_figures = figures(72.0, 22.0);
        comparison.ceiling_figures = figures(80.0, 20.0);

        assert!((comparison.rate_ratio() - 0.9).abs() < 1e-9);
        assert!((comparison.cpu_ratio() - 1.1).abs() < 1e-9);
    }

    #[test]
    fn the_section_has_ratios_memory_and_targets() {
        let md = markdown(&results(), "docs/benchmarks/chart.svg");

        assert!(
            md.contains("| Recommend (v1) | recommendations | 90,000 | 500 µs | 1.50 ms | 11.0 µs | 0.90×, 1.10× |"),
            "{md}"
        );
        assert!(md.contains("| recommendations | gRPC | 9.2 MB |"), "{md}");
        assert!(
            md.contains("| Recommend ≥ 0.90× bare tonic req/s | 0.90× | yes |"),
            "{md}"
        );
        assert!(md.contains(
            "![Throughput and CPU per request, service and ceiling](docs/benchmarks/chart.svg)"
        ));
    }

    #[test]
    fn splicing_replaces_only_the_marked_section() {
        let readme = "# Title\n<!-- benchmarks:start -->\nold\n<!-- benchmarks:end -->\ntail\n";

        let spliced = splice(readme, "new\n").expect("markers present");

        assert_eq!(
            spliced,
            "# Title\n<!-- benchmarks:start -->\nnew\n<!-- benchmarks:end -->\ntail\n"
        );
        assert_eq!(splice("# no markers\n", "new\n"), None);
    }

    #[test]
    fn the_chart_is_svg_with_a_bar_per_server_and_panel() {
        let svg = chart(&results());

        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        // Legend (2) + 2 panels × 2 servers.
        assert_eq!(svg.matches("<rect x=").count(), 2 + 4);
        assert!(svg.contains(">90,000<") && svg.contains(">11.0<"), "{svg}");
    }
}
