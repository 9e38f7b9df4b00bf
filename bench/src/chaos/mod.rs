//! The chaos run (`cargo xtask chaos`): the release binaries on hosts of
//! their own (network namespaces: [`hosts`]), several recommendations
//! replicas and a marketplace with mutual TLS, a live catalog and a hosts
//! file ([`fleet`]), under steady load of pages and Recommend calls
//! ([`load`]), through a schedule of faults alone and overlapping
//! ([`schedule`]); then the report with its targets checked ([`report`])
//! and its timeline ([`chart`]).
//!
//! The run is two processes. The outer one makes the namespaces, runs the
//! inner one in the hub namespace (so that every packet of the run stays
//! in namespaces it made), and removes everything when the inner one ends,
//! whether it passed, failed, or was interrupted (SIGINT, SIGTERM).

pub mod chart;
pub mod fleet;
pub mod hosts;
pub mod load;
pub mod report;
pub mod schedule;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::Parser;

use fleet::Fleet;
use hosts::Hosts;
use load::Recorder;
use report::{Life, Window};

/// Faults injected into the release binaries on namespaced hosts, under
/// load; the report's targets are checked, and a missed one fails the run.
/// Needs root, iproute2, nftables and tc.
#[derive(Clone, Debug, Parser)]
pub struct Args {
    /// One round of the schedule, about three minutes (as CI runs it).
    #[arg(long)]
    pub quick: bool,
    /// How long a full run injects faults, in seconds: the schedule is
    /// repeated, each fault held three times as long, until it is up.
    #[arg(long, default_value_t = 1800)]
    pub duration: u64,
    /// Recommendations replicas (one more is added and removed by a fault).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=16))]
    pub replicas: u8,
    /// Page loops and Recommend call loops, each one request at a time.
    #[arg(long, default_value_t = 16)]
    pub page_loops: usize,
    #[arg(long, default_value_t = 4)]
    pub call_loops: usize,
    /// Where the report, the chart and the processes' logs go.
    #[arg(long, default_value = "target/chaos")]
    pub out: PathBuf,
    /// Also write the report to docs/benchmarks/chaos.md and chaos.svg.
    #[arg(long)]
    pub docs: bool,
    /// Where the release binaries are (default: beside this one).
    #[arg(long)]
    pub binaries: Option<PathBuf>,
    /// (Internal) run the inner half, in the hub of the hosts named so.
    #[arg(long, hide = true)]
    pub inner: Option<String>,
}

/// Runs the outer half: makes the hosts, runs the inner half in the hub,
/// and removes the hosts, whatever happens.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(prefix) = args.inner.clone() {
        return inner(args, &prefix).await;
    }
    if hosts::run("id", &["-u"])?.trim() != "0" {
        bail!("the chaos run makes network namespaces: run it as root");
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables"), ("tc", "iproute2")] {
        hosts::run("sh", &["-c", &format!("command -v {tool}")])
            .with_context(|| format!("{tool} is missing: apt-get install {package}"))?;
    }
    for stale in hosts::remove_stale()? {
        eprintln!("chaos: removed {stale}, left by a run that was killed");
    }
    let hosts = Hosts::create(usize::from(args.replicas) + 1)?;
    let me = std::env::current_exe().context("finding this binary")?;
    let mut command = tokio::process::Command::new("ip");
    command
        .args(["netns", "exec", &hosts.hub()])
        .arg(&me)
        .args(std::env::args_os().skip(1))
        .arg(format!("--inner={}", hosts.prefix()))
        .kill_on_drop(true);
    let mut child = command.spawn().context("starting the run in the hub")?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("handling SIGTERM")?;
    let status = tokio::select! {
        status = child.wait() => status.context("waiting for the run")?,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("chaos: interrupted; cleaning up");
            stop_child(&mut child).await
        }
        _ = terminate.recv() => {
            eprintln!("chaos: terminated; cleaning up");
            stop_child(&mut child).await
        }
    };
    drop(hosts);
    if !status.success() {
        bail!("the run failed ({status})");
    }
    Ok(())
}

/// SIGTERM to the inner half, then SIGKILL if it lingers.
async fn stop_child(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    if let Some(pid) = child.id() {
        let _ = hosts::run("kill", &["-TERM", &pid.to_string()]);
    }
    match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
        Ok(Ok(status)) => status,
        _ => {
            let _ = child.kill().await;
            child.wait().await.unwrap_or_default()
        }
    }
}

/// The inner half, in the hub: stops early, killing what it started, on
/// SIGINT or SIGTERM.
async fn inner(args: Args, prefix: &str) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("handling SIGTERM")?;
    tokio::select! {
        result = chaos(&args, prefix) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        _ = terminate.recv() => bail!("terminated"),
    }
}

/// How the faults are paced: held `scale` times their base length, `gap`
/// seconds of quiet after each; they start until `faults_until` (a quick
/// run: one round, whatever the time).
struct Pace {
    scale: f64,
    gap: f64,
    faults_until: f64,
    quick: bool,
}

async fn chaos(args: &Args, prefix: &str) -> anyhow::Result<()> {
    let binaries = match &args.binaries {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary's directory")?
            .to_owned(),
    };
    let replicas = usize::from(args.replicas);
    let (scale, gap, baseline) = if args.quick {
        (1.0, 6.0, 15.0)
    } else {
        (3.0, 20.0, 60.0)
    };
    let pace = Pace {
        scale,
        gap,
        faults_until: baseline
            + if args.quick {
                0.0
            } else {
                args.duration as f64
            },
        quick: args.quick,
    };
    let steps = schedule::schedule(replicas);
    // Room for a last round begun just before `faults_until` (each step's
    // faults, restarts and gap, generously) and the stop.
    let round: f64 = steps.iter().map(|s| s.length * scale + gap + 30.0).sum();
    let hosts = Hosts::attach(prefix, replicas + 1);
    let mut fleet = Fleet::start(hosts, replicas + 1, replicas, &binaries, &args.out).await?;
    let recorder = Arc::new(Recorder::new((pace.faults_until + round) as usize + 60));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = load::pages(recorder.clone(), args.page_loops, stop.clone())?;
    tasks.extend(load::calls(recorder.clone(), args.call_loops, stop.clone(), &args.out).await?);

    tokio::time::sleep(Duration::from_secs_f64(baseline)).await;
    let baseline_window = Window {
        name: "baseline".to_owned(),
        start: 0.0,
        end: 0.0,
        gap_end: recorder.now(),
        calls_may_fail: false,
        every_replica_cut: false,
    };
    let (windows, lives, rounds) = inject(&mut fleet, &recorder, &steps, &pace, replicas).await?;
    let length = recorder.now();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    }
    let seconds = recorder.seconds();
    let seconds = &seconds[..(length.ceil() as usize).min(seconds.len())];
    let targets = report::targets(
        seconds,
        recorder.dropped(),
        &baseline_window,
        &windows,
        &lives,
    );
    let setup = format!(
        "{replicas} replicas of recommendations and a marketplace, each on a host of its own (network namespaces joined by veth pairs), with mutual TLS, a catalog file and a hosts file read live; {} page loops and {} Recommend call loops (the marketplace's client), one request at a time each; {rounds} round(s) of the schedule, faults held {scale}× their base length, {gap} s quiet after each; {length:.0} s in all{}.",
        args.page_loops,
        args.call_loops,
        if args.quick { " (`--quick`)" } else { "" }
    );
    let md = report::markdown(
        seconds,
        &baseline_window,
        &windows,
        &lives,
        &targets,
        &setup,
    );
    let svg = chart::chart(seconds, &windows, length);
    write(&args.out, &md, &svg)?;
    if args.docs {
        write(Path::new("docs/benchmarks"), &md, &svg)?;
    }
    let missed: Vec<_> = targets.iter().filter(|t| !t.met).collect();
    eprintln!("chaos: report in {}", args.out.join("chaos.md").display());
    if !missed.is_empty() {
        for target in &missed {
            eprintln!("chaos: missed: {} ({})", target.what, target.measured);
        }
        bail!("{} of {} targets missed", missed.len(), targets.len());
    }
    eprintln!("chaos: {} targets met", targets.len());
    Ok(())
}

/// Runs the schedule's steps, round after round, until `pace` says stop:
/// the fault windows, each process's footprints (sampled at each step and
/// at the end), and how many rounds began.
async fn inject(
    fleet: &mut Fleet,
    recorder: &Recorder,
    steps: &[schedule::Step],
    pace: &Pace,
    replicas: usize,
) -> anyhow::Result<(Vec<Window>, Vec<Life>, usize)> {
    let mut windows: Vec<Window> = Vec::new();
    let mut lives: Vec<Life> = Vec::new();
    let mut rounds = 0;
    'rounds: while rounds == 0 || (!pace.quick && recorder.now() < pace.faults_until) {
        rounds += 1;
        for step in steps {
            if rounds > 1 && recorder.now() >= pace.faults_until {
                break 'rounds;
            }
            report::sample(&mut lives, fleet.footprints(), false);
            let start = recorder.now();
            eprintln!("chaos: {start:>6.1} s  round {rounds}  {}", step.name);
            for fault in &step.faults {
                schedule::begin(fleet, fault, replicas).await?;
            }
            tokio::time::sleep(Duration::from_secs_f64(step.length * pace.scale)).await;
            for fault in &step.faults {
                schedule::end(fleet, fault).await?;
            }
            let end = recorder.now();
            if let Some(last) = windows.last_mut() {
                last.gap_end = start;
            }
            windows.push(Window {
                name: step.name.to_owned(),
                start,
                end,
                gap_end: end + pace.gap,
                calls_may_fail: step.calls_may_fail,
                every_replica_cut: step.every_replica_cut,
            });
            tokio::time::sleep(Duration::from_secs_f64(pace.gap)).await;
        }
    }
    if let Some(last) = windows.last_mut() {
        last.gap_end = recorder.now();
    }
    report::sample(&mut lives, fleet.footprints(), true);
    Ok((windows, lives, rounds))
}

fn write(dir: &Path, md: &str, svg: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("making {}", dir.display()))?;
    std::fs::write(dir.join("chaos.md"), md).context("writing the report")?;
    std::fs::write(dir.join("chaos.svg"), svg).context("writing the chart")
}
