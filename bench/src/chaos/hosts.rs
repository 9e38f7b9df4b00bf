//! The chaos run's hosts: network namespaces of its own, one per replica
//! and a hub for the marketplace and the load, each replica joined to the
//! hub by a veth pair; and the faults a network makes on those links,
//! from Debian's tools: nftables drop rules (partitions), the `tbf` qdisc
//! (a link throttled to a trickle), and a CPU quota (cgroup).
//!
//! Every namespace is named `chaos<pid>-…` after the run that made it,
//! so that [`Hosts::drop`] removes exactly its own, and a later run removes
//! those of a run that was killed before it could ([`remove_stale`]).

use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// The port every replica listens on.
pub const REPLICA_PORT: u16 = 50051;

/// The run's namespaces. Dropping it kills whatever still runs in them and
/// removes them, and the CPU cgroup.
#[derive(Debug)]
pub struct Hosts {
    prefix: String,
    replicas: usize,
    /// Made by this process, which removes them when done.
    owner: bool,
}

/// Runs `program` with `args`; fails with what it wrote to stderr.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program} (is it installed?)"))?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `program` with `args` in namespace `ns`, `script` on its stdin.
fn run_in(ns: &str, program: &str, args: &[&str], script: Option<&str>) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {program} in {ns}"))?;
    if let (Some(script), Some(mut stdin)) = (script, child.stdin.take()) {
        stdin
            .write_all(script.as_bytes())
            .context("writing a script")?;
    }
    let output = child.wait_with_output().context("waiting for a tool")?;
    if !output.status.success() {
        bail!(
            "`{program} {}` in {ns} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Which way packets of a partitioned replica are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Both ways: nothing reaches it, nothing leaves it.
    Full,
    /// Only what it sends: calls reach it, its answers never come back.
    Replies,
}

impl Hosts {
    /// Makes the hub and `replicas` replica namespaces (numbered from 1),
    /// each with loopback up and joined to the hub: replica `i` is
    /// `10.99.i.2`, the hub `10.99.i.1` on that link.
    pub fn create(replicas: usize) -> anyhow::Result<Self> {
        let hosts = Self {
            prefix: format!("chaos{}", std::process::id()),
            replicas,
            owner: true,
        };
        let hub = hosts.hub();
        run("ip", &["netns", "add", &hub])?;
        run("ip", &["-n", &hub, "link", "set", "lo", "up"])?;
        for i in 1..=replicas {
            let ns = hosts.replica(i);
            let (link, hub_addr, addr) = (
                format!("r{i}"),
                format!("10.99.{i}.1/24"),
                format!("10.99.{i}.2/24"),
            );
            run("ip", &["netns", "add", &ns])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            run(
                "ip",
                &[
                    "link", "add", &link, "netns", &hub, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
            )?;
            run("ip", &["-n", &hub, "addr", "add", &hub_addr, "dev", &link])?;
            run("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            run("ip", &["-n", &hub, "link", "set", &link, "up"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(hosts)
    }

    /// The hosts another process made under `prefix` (it removes them).
    pub fn attach(prefix: &str, replicas: usize) -> Self {
        Self {
            prefix: prefix.to_owned(),
            replicas,
            owner: false,
        }
    }

    /// What names this run's namespaces.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The hub's namespace: the marketplace and the load.
    pub fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// Replica `i`'s namespace.
    pub fn replica(&self, i: usize) -> String {
        format!("{}-r{i}", self.prefix)
    }

    /// Replica `i`'s address.
    pub fn replica_ip(i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 99, i as u8, 2))
    }

    /// Drops replica `i`'s packets on its link, as `cut` says.
    pub fn partition(&self, i: usize, cut: Cut) -> anyhow::Result<()> {
        let input = match cut {
            Cut::Full => "iifname \"eth0\" drop",
            Cut::Replies => "",
        };
        let script = format!(
            "table inet chaos {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n  {input}\n }}\n chain output {{\n  type filter hook output priority 0; policy accept;\n  oifname \"eth0\" drop\n }}\n}}\n"
        );
        run_in(&self.replica(i), "nft", &["-f", "-"], Some(&script))
    }

    /// Removes replica `i`'s drop rules.
    pub fn heal(&self, i: usize) -> anyhow::Result<()> {
        run_in(
            &self.replica(i),
            "nft",
            &["delete", "table", "inet", "chaos"],
            None,
        )
    }

    /// Throttles what replica `i` sends to `rate` (tc's units, `16kbit`).
    pub fn throttle(&self, i: usize, rate: &str) -> anyhow::Result<()> {
        run_in(
            &self.replica(i),
            "tc",
            &[
                "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "2kb",
                "latency", "500ms",
            ],
            None,
        )
    }

    /// Removes replica `i`'s throttle.
    pub fn unthrottle(&self, i: usize) -> anyhow::Result<()> {
        run_in(
            &self.replica(i),
            "tc",
            &["qdisc", "del", "dev", "eth0", "root"],
            None,
        )
    }

    /// The CPU cgroup of starved processes (cgroup v1's `cpu` controller,
    /// or v2's `cpu.max`): `percent` of one CPU. Its directory.
    pub fn starve_group(&self, percent: u32) -> anyhow::Result<PathBuf> {
        let period = 100_000;
        let quota = period * u64::from(percent) / 100;
        let (root, v1) = cgroup_root()?;
        let dir = root.join(&self.prefix);
        let files = if v1 {
            vec![
                ("cpu.cfs_period_us", period.to_string()),
                ("cpu.cfs_quota_us", quota.to_string()),
            ]
        } else {
            vec![("cpu.max", format!("{quota} {period}"))]
        };
        if !dir.is_dir() {
            std::fs::create_dir(&dir)
                .with_context(|| format!("cannot make the cgroup {}", dir.display()))?;
        }
        for (file, value) in files {
            let path = dir.join(file);
            std::fs::write(&path, value)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(dir)
    }
}

/// Where CPU cgroups are made, and whether it is cgroup v1. `ip netns
/// exec` mounts a sysfs of the namespace's own over /sys, without the
/// cgroup mounts: the inner half then reaches them through the outer
/// half's root (its parent's).
fn cgroup_root() -> anyhow::Result<(PathBuf, bool)> {
    let parent = std::os::unix::process::parent_id();
    for base in [
        PathBuf::from("/"),
        PathBuf::from(format!("/proc/{parent}/root")),
    ] {
        let cgroup = base.join("sys/fs/cgroup");
        if cgroup.join("cpu/cpu.cfs_quota_us").is_file() {
            return Ok((cgroup.join("cpu"), true));
        }
        if cgroup.join("cgroup.controllers").is_file() {
            return Ok((cgroup, false));
        }
    }
    bail!("no CPU cgroup controller is mounted (cgroup v1 cpu, or v2) to starve a replica with")
}

/// Moves process `pid` (every thread) into the cgroup `group`, or back to
/// the root's when `group` is None.
pub fn move_to_group(group: Option<&std::path::Path>, pid: u32) -> anyhow::Result<()> {
    let (root, _) = cgroup_root()?;
    let path = group.unwrap_or(&root).join("cgroup.procs");
    std::fs::write(&path, pid.to_string())
        .with_context(|| format!("cannot write {}", path.display()))
}

impl Drop for Hosts {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        let mut namespaces = vec![self.hub()];
        namespaces.extend((1..=self.replicas).map(|i| self.replica(i)));
        remove(&namespaces);
        for base in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup"] {
            let _ = std::fs::remove_dir(PathBuf::from(base).join(&self.prefix));
        }
    }
}

/// Kills every process in `namespaces` and removes them (best effort: this
/// runs on the way out, failed or not).
fn remove(namespaces: &[String]) {
    for ns in namespaces {
        if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
            for pid in pids.split_whitespace() {
                let _ = run("kill", &["-KILL", pid]);
            }
        }
    }
    for ns in namespaces {
        let _ = run("ip", &["netns", "delete", ns]);
    }
}

/// Removes the namespaces (and cgroups) of chaos runs that are gone, killed
/// before they could clean up. Returns their names.
pub fn remove_stale() -> anyhow::Result<Vec<String>> {
    let listed = run("ip", &["netns", "list"])?;
    let stale: Vec<String> = listed
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| {
            let Some(pid) = name
                .strip_prefix("chaos")
                .and_then(|rest| rest.split('-').next())
            else {
                return false;
            };
            pid.parse::<u32>()
                .is_ok_and(|pid| !PathBuf::from(format!("/proc/{pid}")).exists())
        })
        .map(str::to_owned)
        .collect();
    remove(&stale);
    Ok(stale)
}
