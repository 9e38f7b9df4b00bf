//! The chart of docs/benchmarks/: for each scenario, throughput and CPU per
//! request of the service beside its ceiling, as an SVG of horizontal bars.

use std::fmt::Write as _;

use super::{Figures, Results, rate};

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
