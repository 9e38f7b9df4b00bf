//! The servers under test as child processes, and what `/proc` says they
//! cost: CPU time (utime + stime) and peak resident memory (VmHWM).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// A server started by the suite. Dropping it kills the process, so that an
/// error anywhere leaves nothing running; [`Server::stop`] stops it gracefully.
#[derive(Debug)]
pub struct Server {
    name: String,
    child: Child,
    pid: u32,
    log: PathBuf,
    /// Whether its cost includes its child processes' (see
    /// [`Server::with_children`]).
    children: bool,
}

/// CPU time and peak memory of a process so far.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    /// User plus system CPU time of all its threads.
    pub cpu: Duration,
    /// The part of `cpu` spent in the kernel (system time).
    pub system: Duration,
    /// Peak resident set size, in bytes.
    pub peak_rss: u64,
}

impl Server {
    /// Starts `binary` with `args` and `envs`, its output going to
    /// `<log_dir>/<name>.log`.
    pub fn start(
        name: &str,
        binary: &Path,
        args: &[String],
        envs: &[(&str, String)],
        log_dir: &Path,
        cpus: Option<&str>,
    ) -> anyhow::Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let output = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let errors = output.try_clone().context("duplicating a log handle")?;
        let child = pinned(binary, cpus)
            .args(args)
            .envs(envs.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child
            .id()
            .with_context(|| format!("{name} exited at once; see {}", log.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            pid,
            log,
            children: false,
        })
    }

    /// Counts the processes it starts (gunicorn's workers) in its cost:
    /// their CPU time, and the sum of every one's peak memory.
    pub fn with_children(mut self) -> Self {
        self.children = true;
        self
    }

    /// The name it was started under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits until `addr` accepts TCP connections, failing if the process
    /// exits first or `timeout` passes.
    pub async fn wait_for_port(
        &mut self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait().context("checking a child")? {
                bail!(
                    "{} exited ({status}) before listening; see {}",
                    self.name,
                    self.log.display()
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{} did not listen on {addr} within {timeout:?}; see {}",
                    self.name,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its CPU time and peak memory so far (with its children's, if
    /// [`Server::with_children`]).
    pub fn usage(&self, clock_ticks: u64) -> anyhow::Result<Usage> {
        let mut pids = vec![self.pid];
        if self.children {
            pids.extend(descendants(self.pid)?);
        }
        let (mut ticks, mut system, mut peak) = (0, 0, 0);
        for pid in pids {
            let stat = read(&format!("/proc/{pid}/stat"))?;
            let status = read(&format!("/proc/{pid}/status"))?;
            let (user, kernel) =
                cpu_ticks(&stat).with_context(|| format!("unreadable /proc/{pid}/stat"))?;
            ticks += user + kernel;
            system += kernel;
            peak += peak_rss(&status).with_context(|| format!("no VmHWM in /proc/{pid}/status"))?;
        }
        Ok(Usage {
            cpu: Duration::from_secs_f64(ticks as f64 / clock_ticks as f64),
            system: Duration::from_secs_f64(system as f64 / clock_ticks as f64),
            peak_rss: peak,
        })
    }

    /// How many file descriptors it has open (sockets included).
    pub fn open_files(&self) -> anyhow::Result<usize> {
        let dir = format!("/proc/{}/fd", self.pid);
        Ok(std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list {dir}"))?
            .count())
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let signalled = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await
            .context("running kill")?;
        if !signalled.success() {
            bail!("cannot signal {} (pid {})", self.name, self.pid);
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .with_context(|| format!("{} did not stop within 30 s", self.name))?
            .context("waiting for a child")?;
        if !status.success() {
            bail!(
                "{} stopped with {status}; see {}",
                self.name,
                self.log.display()
            );
        }
        Ok(())
    }
}

fn read(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
}

/// Every process descended from `pid`, found by their parents in `/proc`
/// (this kernel has no `/proc/<pid>/task/<tid>/children`).
fn descendants(pid: u32) -> anyhow::Result<Vec<u32>> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
        let Some(child) = entry
            .ok()
            .and_then(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        else {
            continue;
        };
        // A process may end between the listing and the read.
        if let Some(parent) = std::fs::read_to_string(format!("/proc/{child}/stat"))
            .ok()
            .as_deref()
            .and_then(parent_pid)
        {
            parents.push((child, parent));
        }
    }
    let mut found = vec![pid];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        next += 1;
    }
    found.remove(0);
    Ok(found)
}

/// The parent's pid (field 4) from the text of `/proc/<pid>/stat`.
fn parent_pid(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// (utime, stime): user and system CPU time in clock ticks, from the text of `/proc/<pid>/stat`.
/// They are fields 14 and 15; the command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub fn cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// VmHWM, in bytes, from the text of `/proc/<pid>/status`.
pub fn peak_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), the unit of
/// `/proc/<pid>/stat`'s CPU times.
pub fn clock_ticks() -> anyhow::Result<u64> {
    let output = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK")?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK printed no number")
}

/// A command for `program`, run on the CPUs `cpus` (a taskset(1) list such
/// as `1` or `0-1`) when given. taskset execs the program: the pid is its.
pub fn pinned(program: impl AsRef<std::ffi::OsStr>, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.args(["--cpu-list", cpus]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// A loopback address with a port free at the time of the call, for a
/// server to bind; below the kernel's range of ephemeral ports, which no
/// outgoing connection of the siege can take meanwhile
/// ([`service_kit::testing::try_free_addr`]).
pub fn free_port() -> anyhow::Result<SocketAddr> {
    service_kit::testing::try_free_addr([127, 0, 0, 1]).context("finding a free port")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1163 0 0 0 \
                    250 75 0 0 20 0 3 0 123 456 789";

        assert_eq!(cpu_ticks(stat), Some((250, 75)));
        assert_eq!(cpu_ticks("4242 (short) S 1"), None);
    }

    #[test]
    fn the_parent_is_read_after_the_command_name() {
        let stat = "4242 (tokio (rt) x) S 17 4242 4242 0 -1 4194560";

        assert_eq!(parent_pid(stat), Some(17));
        assert_eq!(parent_pid("4242 (short)"), None);
    }

    #[tokio::test]
    async fn a_server_with_children_finds_them_all() {
        let logs = std::env::temp_dir();
        // A shell with two children, one of which has a child of its own;
        // dropping the server kills the shell, and the sleeps end by
        // themselves soon after.
        let server = Server::start(
            "family",
            Path::new("sh"),
            &[
                "-c".to_owned(),
                "sleep 5 & sh -c 'sleep 5 & wait' & wait".to_owned(),
            ],
            &[],
            &logs,
            None,
        )
        .expect("sh")
        .with_children();
        let mut sleeps = 0;
        for _ in 0..100 {
            let comms: Vec<String> = descendants(server.pid())
                .expect("descendants")
                .into_iter()
                .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
                .collect();
            sleeps = comms.iter().filter(|c| c.trim() == "sleep").count();
            if sleeps == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        assert_eq!(sleeps, 2, "both sleeps, the grandchild too");
        let usage = server
            .usage(clock_ticks().expect("getconf"))
            .expect("usage");
        // Four processes' peaks, each at least a page.
        assert!(usage.peak_rss >= 4 * 4096, "{usage:?}");
    }

    #[test]
    fn peak_rss_is_read_in_bytes() {
        let status =
            "Name:\trecommendations\nVmPeak:\t  600000 kB\nVmHWM:\t    9196 kB\nVmRSS:\t 8968 kB\n";

        assert_eq!(peak_rss(status), Some(9196 * 1024));
        assert_eq!(peak_rss("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_a_readable_cost() {
        let stat = read("/proc/self/stat").expect("procfs");
        let status = read("/proc/self/status").expect("procfs");

        assert!(cpu_ticks(&stat).is_some(), "{stat}");
        assert!(peak_rss(&status).is_some_and(|bytes| bytes > 0), "{status}");
        assert!(clock_ticks().expect("getconf") > 0);
    }
}
