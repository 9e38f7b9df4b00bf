//! The faults of a chaos run, alone and overlapping, and the schedule that
//! injects them: each step starts its faults, holds them for its length,
//! ends them, and leaves a quiet gap before the next, in which the time to
//! recover is measured. A full run repeats the schedule, longer, until its
//! time is up.

use std::time::Duration;

use super::{
    fleet::Fleet,
    hosts::{Cut, move_to_group},
};

/// A rolling restart's pace: the next replica goes once the last one
/// restarted has had a readiness probe's period (kubernetes.yaml's
/// `periodSeconds`) to be seen serving, as a rollout waits for Ready.
const READINESS_PERIOD: Duration = Duration::from_secs(5);

/// One fault, on replicas numbered from 1.
#[derive(Clone, Debug)]
pub enum Fault {
    /// SIGKILL, restarted when the step ends.
    Kill(usize),
    /// Every listed replica in turn: SIGTERM, drain, start, serving, and
    /// [`READINESS_PERIOD`] before the next.
    RollingRestart,
    /// Packets dropped on the replicas' links until the step ends.
    Partition(Vec<usize>, Cut),
    /// What the replica sends throttled to a trickle (`tbf`, 16 kbit/s).
    Throttle(usize),
    /// The replica held to 5 % of one CPU (a cgroup quota).
    Starve(usize),
    /// A replica started and listed in the hosts file, then unlisted and
    /// stopped when the step ends.
    Add(usize),
    /// New leaf certificates for both sides, read live.
    RotateCertificates,
    /// Another catalog, read live (the file changes; SIGHUP too).
    ReloadCatalog,
}

/// A step of the schedule.
#[derive(Clone, Debug)]
pub struct Step {
    pub name: &'static str,
    pub faults: Vec<Fault>,
    /// How long the faults hold, at scale 1.
    pub length: f64,
    /// Whether Recommend calls may fail in it (a replica is unreachable or
    /// too slow for some calls' deadline); pages never may.
    pub calls_may_fail: bool,
    /// Every replica cut off: pages must render at once.
    pub every_replica_cut: bool,
}

/// The schedule, for `replicas` replicas (and one more to add).
pub fn schedule(replicas: usize) -> Vec<Step> {
    let all: Vec<usize> = (1..=replicas).collect();
    let step = |name, faults, length, calls_may_fail| Step {
        name,
        faults,
        length,
        calls_may_fail,
        every_replica_cut: false,
    };
    vec![
        step(
            "SIGKILL a replica, restart 5 s later",
            vec![Fault::Kill(1)],
            5.0,
            true,
        ),
        step("rolling restart", vec![Fault::RollingRestart], 0.0, false),
        step(
            "one replica cut off, both ways",
            vec![Fault::Partition(vec![1], Cut::Full)],
            8.0,
            true,
        ),
        step(
            "one replica's replies dropped",
            vec![Fault::Partition(vec![2], Cut::Replies)],
            8.0,
            true,
        ),
        Step {
            every_replica_cut: true,
            ..step(
                "every replica cut off",
                vec![Fault::Partition(all, Cut::Full)],
                10.0,
                true,
            )
        },
        step(
            "a replica's link throttled to 16 kbit/s",
            vec![Fault::Throttle(3)],
            10.0,
            true,
        ),
        step(
            "a replica starved of CPU (5 %)",
            vec![Fault::Starve(1)],
            10.0,
            true,
        ),
        step(
            "a replica added by the hosts file, then removed",
            vec![Fault::Add(replicas + 1)],
            10.0,
            false,
        ),
        step(
            "a partition during a rolling restart",
            vec![Fault::Partition(vec![1], Cut::Full), Fault::RollingRestart],
            2.0,
            true,
        ),
        step(
            "a replica back from a partition during a certificate rotation",
            vec![
                Fault::Partition(vec![2], Cut::Full),
                Fault::RotateCertificates,
            ],
            8.0,
            true,
        ),
        step(
            "a catalog reload while a replica is cut off",
            vec![Fault::Partition(vec![3], Cut::Full), Fault::ReloadCatalog],
            8.0,
            true,
        ),
        step(
            "certificate rotation",
            vec![Fault::RotateCertificates],
            3.0,
            false,
        ),
        step("catalog reload", vec![Fault::ReloadCatalog], 3.0, false),
    ]
}

/// Starts `fault`.
pub async fn begin(fleet: &mut Fleet, fault: &Fault, replicas: usize) -> anyhow::Result<()> {
    match fault {
        Fault::Kill(i) => fleet.kill_replica(*i),
        Fault::RollingRestart => {
            for i in 1..=replicas {
                fleet.stop_replica(i).await?;
                fleet.start_replica(i).await?;
                // The next only once this one would pass a readiness probe.
                tokio::time::sleep(READINESS_PERIOD).await;
            }
        }
        Fault::Partition(cut, how) => {
            for i in cut {
                fleet.hosts.partition(*i, *how)?;
            }
        }
        Fault::Throttle(i) => fleet.hosts.throttle(*i, "16kbit")?,
        Fault::Starve(i) => {
            let group = fleet.hosts.starve_group(5)?;
            if let Some(pid) = fleet.replica_pid(*i) {
                move_to_group(Some(&group), pid)?;
            }
        }
        Fault::Add(i) => {
            fleet.start_replica(*i).await?;
            fleet.list(*i, true)?;
        }
        Fault::RotateCertificates => fleet.issue_certificates()?,
        Fault::ReloadCatalog => {
            fleet.write_catalog()?;
            fleet.hang_up_replicas()?;
        }
    }
    Ok(())
}

/// Ends `fault`.
pub async fn end(fleet: &mut Fleet, fault: &Fault) -> anyhow::Result<()> {
    match fault {
        Fault::Kill(i) => fleet.start_replica(*i).await?,
        Fault::Partition(cut, _) => {
            for i in cut {
                fleet.hosts.heal(*i)?;
            }
        }
        Fault::Throttle(i) => fleet.hosts.unthrottle(*i)?,
        Fault::Starve(i) => {
            if let Some(pid) = fleet.replica_pid(*i) {
                move_to_group(None, pid)?;
            }
        }
        Fault::Add(i) => {
            fleet.list(*i, false)?;
            // Unlisted at the next resolution (every second), then stopped.
            tokio::time::sleep(Duration::from_secs(2)).await;
            fleet.stop_replica(*i).await?;
        }
        Fault::RollingRestart | Fault::RotateCertificates | Fault::ReloadCatalog => {}
    }
    Ok(())
}
