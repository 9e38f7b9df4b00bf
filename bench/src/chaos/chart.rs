//! The chaos run's timeline chart (SVG): pages per second, full, degraded
//! and failed, with the fault windows shaded and numbered as in the
//! report's table.

use std::fmt::Write as _;

use super::{load::Second, report::Window};

/// The timeline: pages per second (full, and degraded stacked above), and
/// the fault windows shaded and numbered.
pub fn chart(seconds: &[Second], windows: &[Window], length: f64) -> String {
    const WIDTH: f64 = 960.0;
    const HEIGHT: f64 = 280.0;
    const LEFT: f64 = 56.0;
    const TOP: f64 = 30.0;
    const PLOT_H: f64 = HEIGHT - TOP - 40.0;
    let plot_w = WIDTH - LEFT - 16.0;
    let used = (length.ceil() as usize).min(seconds.len()).max(1);
    let peak = seconds[..used]
        .iter()
        .map(|s| s.pages.total())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |t: f64| LEFT + plot_w * t / used as f64;
    let y = |rate: f64| TOP + PLOT_H * (1.0 - rate / peak);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="system-ui, sans-serif" font-size="11" role="img" aria-labelledby="title">
<title id="title">Pages per second through the chaos run, fault windows shaded</title>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{LEFT}" y="16">Pages per second: <tspan fill="#1f5fa8">full</tspan>, <tspan fill="#e08a00">degraded</tspan>, <tspan fill="#c62828">failed</tspan>; shaded: fault windows (numbers as in the table)</text>"##
    );
    for (index, window) in windows.iter().enumerate() {
        let (x0, x1) = (x(window.start), x(window.end.max(window.start + 0.5)));
        let _ = writeln!(
            svg,
            r##"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{PLOT_H}" fill="#d9dee4"/><text x="{x0:.1}" y="{:.1}" fill="#555">{}</text>"##,
            x1 - x0,
            TOP + PLOT_H + 12.0,
            index + 1
        );
    }
    let line = |value: fn(&Second) -> f64| -> String {
        (0..used)
            .map(|s| format!("{:.1},{:.1}", x(s as f64 + 0.5), y(value(&seconds[s]))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (colour, value) in [
        (
            "#e08a00",
            (|s: &Second| s.pages.total() as f64) as fn(&Second) -> f64,
        ),
        ("#1f5fa8", |s: &Second| s.pages.ok as f64),
        ("#c62828", |s: &Second| s.pages.failed as f64),
    ] {
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.2" points="{}"/>"#,
            line(value)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="4" y="{:.1}">{peak:.0}/s</text><text x="4" y="{:.1}">0</text><text x="{:.1}" y="{:.1}">{used} s</text>
</svg>"##,
        TOP + 4.0,
        TOP + PLOT_H,
        WIDTH - 60.0,
        HEIGHT - 8.0
    );
    svg
}
