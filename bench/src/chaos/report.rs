//! The chaos run's report: per window (the baseline, each fault, and the
//! quiet gap after it) pages and calls served, degraded and failed, with
//! p50/p99; the time to recover after each fault; each process's memory
//! and open files, first and last seen; the targets, checked. The
//! timeline chart is [`super::chart`].

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

/// One process's life (a replica restarted is a new one): its footprint
/// when first and last sampled, how many times, and whether it ran to the
/// end of the run.
#[derive(Clone, Debug)]
pub struct Life {
    pub name: String,
    pub first: Footprint,
    pub last: Footprint,
    pub samples: usize,
    pub to_the_end: bool,
}

/// Samples the lives still running, `at_end` of the run or not.
pub fn sample(lives: &mut Vec<Life>, running: Vec<(String, Footprint)>, at_end: bool) {
    for (name, footprint) in running {
        match lives.iter_mut().find(|life| life.name == name) {
            Some(life) => {
                life.last = footprint;
                life.samples += 1;
                life.to_the_end = at_end;
            }
            None => lives.push(Life {
                name,
                first: footprint,
                last: footprint,
                samples: 1,
                to_the_end: at_end,
            }),
        }
    }
}

/// The samples a life needs for its footprint to be judged: a replica
/// sampled once or twice was killed or restarted before it saw much load.
const JUDGED_AFTER: usize = 3;

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
    dropped: u64,
    baseline: &Window,
    windows: &[Window],
    lives: &[Life],
) -> Vec<Target> {
    let mut targets = Vec::new();
    let mut check = |what: String, measured: String, met: bool| {
        targets.push(Target {
            what,
            measured,
            met,
        })
    };
    check(
        "every request recorded (the recorder holds the whole run)".to_owned(),
        format!("{dropped} past its end"),
        dropped == 0,
    );
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
    for (number, window) in windows.iter().enumerate() {
        // Numbered as in the windows table: a full run repeats each fault.
        let name = format!("#{} {}", number + 1, window.name);
        let ((from, to), (_, gap_to)) = spans(window);
        let recovered = recovery(seconds, window);
        check(
            format!("{name}: clean again within {MAX_RECOVERY:?}"),
            match recovered {
                Some(took) => format!("{:.1} s", took.as_secs_f64()),
                None => "not before the next fault".to_owned(),
            },
            recovered.is_some_and(|took| took <= MAX_RECOVERY),
        );
        if !window.calls_may_fail {
            let failed = tally(seconds, from, gap_to, false).failed;
            check(
                format!("{name}: no call fails"),
                format!("{failed} failed"),
                failed == 0,
            );
        }
        // Pages in flight when every replica is cut off wait the deadline;
        // from then on, none may.
        let settled_from = if window.every_replica_cut {
            (from + 2).min(to)
        } else {
            from
        };
        let settled = tally(seconds, settled_from, to, true);
        let rate = settled.total() as f64 / to.saturating_sub(settled_from).max(1) as f64;
        check(
            format!("{name}: page rate at least half the baseline's"),
            format!("{rate:.0}/s against {base_rate:.0}/s"),
            rate >= base_rate / 2.0,
        );
        if window.every_replica_cut {
            let whole = tally(seconds, from, to, true);
            let p50 = settled.latency.quantile(0.5);
            check(
                format!("{name}: median page under 10 ms"),
                format!("{} ms", ms(p50)),
                p50 < Duration::from_millis(10) && settled.total() > 0,
            );
            check(
                format!("{name}: no page waits past the deadline"),
                format!("slowest {} ms", ms(whole.max)),
                whole.max <= DEADLINE + Duration::from_millis(500),
            );
        }
    }
    for life in lives.iter().filter(|life| life.samples >= JUDGED_AFTER) {
        let (first, last) = (life.first, life.last);
        check(
            format!("{}: memory and open files flat", life.name),
            format!(
                "{} → {} MiB, {} → {} files",
                mib(first.rss),
                mib(last.rss),
                first.open_files,
                last.open_files
            ),
            last.rss <= first.rss + first.rss / 2 + (16 << 20)
                && last.open_files <= first.open_files + 64,
        );
    }
    targets
}

/// The report's Markdown.
pub fn markdown(
    seconds: &[Second],
    baseline: &Window,
    windows: &[Window],
    lives: &[Life],
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
        "\n## Processes\n\nResident memory and open files of each process, sampled as each fault begins and at the end: first and last seen. A replica restarted by a fault is a new process (`replica2.3` is replica 2's third life); a life sampled {JUDGED_AFTER} times or more is judged flat or not.\n\n| Process | Samples | RSS first (MiB) | RSS last (MiB) | Files first | Files last | Ran to the end |\n| --- | --- | --- | --- | --- | --- | --- |"
    );
    for life in lives {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            life.name,
            life.samples,
            mib(life.first.rss),
            mib(life.last.rss),
            life.first.open_files,
            life.last.open_files,
            if life.to_the_end { "yes" } else { "no" }
        );
    }
    md
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
