//! The chaos run's report: per window (the baseline, each fault, and the
//! quiet gap after it) pages and calls served, degraded and failed, with
//! p50/p99; the time to recover after each fault; each process's memory
//! and open files at start and end; the targets, checked; and a timeline
//! chart (SVG) of pages per second with the fault windows shaded.

use std::{fmt::Write as _, time::Duration};

use super::{
    fleet::Footprint,
    load::{Second, Tally},
};

/// A fault window and the quiet gap after it (seconds since the start).
#[derive(Clone, Debug)]
pub struct Window {
    pub name: String,
    pub start: f64,
    pub end: f64,
    /// When the next window starts.
    pub gap_end: f64,
    pub calls_may_fail: bool,
    pub every_replica_cut: bool,
}

/// The longest a fault may take to leave no trace once it ends.
pub const MAX_RECOVERY: Duration = Duration::from_secs(5);
/// The marketplace's deadline: a page in flight waits at most this (and a
/// little more to render).
const DEADLINE: Duration = Duration::from_secs(1);

/// What the report checks, and what it found.
#[derive(Debug)]
pub struct Target {
    pub what: String,
    pub measured: String,
    pub met: bool,
}

/// Each process's footprint at the end of the baseline and at the end.
pub type Footprints = Vec<(String, Footprint, Option<Footprint>)>;

fn tally(seconds: &[Second], from: usize, to: usize, pages: bool) -> Tally {
    let mut total = Tally::default();
    for second in seconds.iter().take(to).skip(from) {
        total.add(if pages { &second.pages } else { &second.calls });
    }
    total
}

fn clean(second: &Second) -> bool {
    second.pages.degraded == 0 && second.pages.failed == 0 && second.calls.failed == 0
}

/// The seconds of `window`'s faults, and of its gap.
fn spans(window: &Window) -> ((usize, usize), (usize, usize)) {
    let fault = (window.start.floor() as usize, window.end.ceil() as usize);
    (
        fault,
        (fault.1, (window.gap_end.floor() as usize).max(fault.1)),
    )
}

/// How long after `window`'s faults ended the run was clean to the end of
/// the gap; None if it never was.
pub fn recovery(seconds: &[Second], window: &Window) -> Option<Duration> {
    let (_, (from, to)) = spans(window);
    let mut first_clean = None;
    for (s, second) in seconds.iter().enumerate().take(to).skip(from) {
        match (clean(second), first_clean) {
            (true, None) => first_clean = Some(s),
            (false, _) => first_clean = None,
            _ => {}
        }
    }
    first_clean.map(|s| Duration::from_secs_f64((s as f64 - window.end).max(0.0)))
}

fn ms(latency: Duration) -> String {
    format!("{:.1}", latency.as_secs_f64() * 1e3)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1 << 20) as f64)
}

/// Checks the targets.
pub fn targets(
    seconds: &[Second],
    baseline: &Window,
    windows: &[Window],
    footprints: &Footprints,
) -> Vec<Target> {
    let mut targets = Vec::new();
    let mut check = |what: String, measured: String, met: bool| {
        targets.push(Target {
            what,
            measured,
            met,
        })
    };
    let all_pages = tally(seconds, 0, seconds.len(), true);
    check(
        "every page answered 200, through every fault".to_owned(),
        format!("{} of {} pages failed", all_pages.failed, all_pages.total()),
        all_pages.failed == 0 && all_pages.total() > 0,
    );
    let (_, (from, to)) = spans(baseline);
    let base_pages = tally(seconds, from, to, true);
    let base_calls = tally(seconds, from, to, false);
    check(
        "baseline: every page full, every call answered".to_owned(),
        format!(
            "{} degraded, {} calls failed",
            base_pages.degraded, base_calls.failed
        ),
        base_pages.degraded == 0 && base_calls.failed == 0 && base_calls.total() > 0,
    );
    let base_rate = base_pages.total() as f64 / (to - from).max(1) as f64;
    for window in windows {
        let ((from, to), (_, gap_to)) = spans(window);
        match recovery(seconds, window) {
            Some(took) => check(
                format!("{}: clean again within {MAX_RECOVERY:?}", window.name),
                format!("{:.1} s", took.as_secs_f64()),
                took <= MAX_RECOVERY,
            ),
            None => check(
                format!("{}: clean again within {MAX_RECOVERY:?}", window.name),
                "not before the next fault".to_owned(),
                false,
            ),
        }
        if !window.calls_may_fail {
            let failed = tally(seconds, from, gap_to, false).failed;
            check(
                format!("{}: no call fails", window.name),
                format!("{failed} failed"),
                failed == 0,
            );
        }
        if window.every_replica_cut {
            // Pages in flight at the cut wait the deadline; then none may.
            let settled = tally(seconds, (from + 2).min(to), to, true);
            let rate = settled.total() as f64 / to.saturating_sub(from + 2).max(1) as f64;
            let whole = tally(seconds, from, to, true);
            let p50 = settled.latency.quantile(0.5);
            check(
                format!("{}: median page under 10 ms", window.name),
                format!("{} ms", ms(p50)),
                p50 < Duration::from_millis(10) && settled.total() > 0,
            );
            check(
                format!("{}: page rate at least half the baseline's", window.name),
                format!("{rate:.0}/s against {base_rate:.0}/s"),
                rate >= base_rate / 2.0,
            );
            check(
                format!("{}: no page waits past the deadline", window.name),
                format!("slowest {} ms", ms(whole.max)),
                whole.max <= DEADLINE + Duration::from_millis(500),
            );
        }
    }
    for (name, start, end) in footprints {
        let Some(end) = end else { continue };
        check(
            format!("{name}: memory and open files flat"),
            format!(
                "{} → {} MiB, {} → {} files",
                mib(start.rss),
                mib(end.rss),
                start.open_files,
                end.open_files
            ),
            end.rss <= start.rss + start.rss / 2 + (16 << 20)
                && end.open_files <= start.open_files + 64,
        );
    }
    targets
}

/// The report's Markdown.
pub fn markdown(
    seconds: &[Second],
    baseline: &Window,
    windows: &[Window],
    footprints: &Footprints,
    targets: &[Target],
    setup: &str,
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Chaos run\n\n{setup}\n\n![Pages per second, fault windows shaded](chaos.svg)\n"
    );
    let _ = writeln!(
        md,
        "## Targets\n\n| Target | Measured | Met |\n| --- | --- | --- |"
    );
    for target in targets {
        let met = if target.met { "yes" } else { "**no**" };
        let _ = writeln!(md, "| {} | {} | {met} |", target.what, target.measured);
    }
    let _ = writeln!(
        md,
        "\n## Windows\n\nEach fault window, then the quiet gap after it. Pages: full / degraded / failed; calls: OK / failed.\n\n\
         | # | Window | From–to (s) | Pages full | degraded | failed | p50 ms | p99 ms | Calls OK | failed | p50 ms | p99 ms | Clean again after |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    let row = |md: &mut String,
               number: String,
               name: &str,
               (from, to): (usize, usize),
               recovered: String| {
        let pages = tally(seconds, from, to, true);
        let calls = tally(seconds, from, to, false);
        let _ = writeln!(
            md,
            "| {number} | {name} | {from}–{to} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {recovered} |",
            pages.ok,
            pages.degraded,
            pages.failed,
            ms(pages.latency.quantile(0.5)),
            ms(pages.latency.quantile(0.99)),
            calls.ok,
            calls.failed,
            ms(calls.latency.quantile(0.5)),
            ms(calls.latency.quantile(0.99)),
        );
    };
    row(
        &mut md,
        String::new(),
        "baseline",
        spans(baseline).1,
        String::new(),
    );
    for (index, window) in windows.iter().enumerate() {
        let (fault, gap) = spans(window);
        let recovered = recovery(seconds, window).map_or_else(
            || "not recovered".to_owned(),
            |d| format!("{:.1} s", d.as_secs_f64()),
        );
        row(
            &mut md,
            (index + 1).to_string(),
            &window.name,
            fault,
            String::new(),
        );
        row(&mut md, String::new(), "↳ after", gap, recovered);
    }
    let _ = writeln!(
        md,
        "\n## Processes\n\nResident memory and open files after the baseline and at the end (replicas restarted by a fault are new processes, shown by life: `replica2.3` is replica 2's third).\n\n| Process | RSS start (MiB) | RSS end (MiB) | Files start | Files end |\n| --- | --- | --- | --- | --- |"
    );
    for (name, start, end) in footprints {
        let (rss, files) = end.map_or(("exited".to_owned(), String::new()), |end| {
            (mib(end.rss), end.open_files.to_string())
        });
        let _ = writeln!(
            md,
            "| {name} | {} | {rss} | {} | {files} |",
            mib(start.rss),
            start.open_files
        );
    }
    md
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn second(ok: u64, degraded: u64) -> Second {
        let mut second = Second::default();
        second.pages.ok = ok;
        second.pages.degraded = degraded;
        second
    }

    #[test]
    fn recovery_is_from_the_faults_end_to_the_first_second_clean_for_good() {
        let seconds = [
            second(9, 0),
            second(1, 5),
            second(9, 0),
            second(1, 1),
            second(9, 0),
            second(9, 0),
        ];
        let window = |end| Window {
            name: "fault".to_owned(),
            start: 0.0,
            end,
            gap_end: 6.0,
            calls_may_fail: true,
            every_replica_cut: false,
        };
        assert_eq!(
            recovery(&seconds, &window(1.5)),
            Some(Duration::from_secs_f64(2.5))
        );
        let never = [second(9, 0), second(9, 1)];
        assert_eq!(
            recovery(
                &never,
                &Window {
                    gap_end: 2.0,
                    ..window(0.5)
                }
            ),
            None
        );
    }

    #[test]
    fn quantiles_are_within_a_bucket() {
        let mut histogram = crate::chaos::load::Histogram::default();
        for micros in 1..=1000 {
            histogram.record(Duration::from_micros(micros));
        }
        let p50 = histogram.quantile(0.5).as_micros();
        assert!((448..=500).contains(&p50), "{p50}");
        assert!(histogram.quantile(1.0) <= Duration::from_micros(1000));
    }
}
