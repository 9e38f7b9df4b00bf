//! Finding the recommendations replicas: the addresses `RECOMMENDATIONS_HOST`
//! resolves to, from DNS (a headless Service answers with every ready pod)
//! or from a hosts file that the caller controls.
//!
//! Bounded: a lookup that does not answer within the timeout fails (and a
//! new one is not started while it is still running: the system resolver
//! blocks a thread), the hosts file is read only if it is a regular file of
//! at most [`MAX_HOSTS_FILE_BYTES`], and addresses that cannot be a
//! replica (unspecified, multicast, broadcast) are refused.

use std::{
    collections::BTreeSet,
    io,
    net::{IpAddr, SocketAddr, ToSocketAddrs as _},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::{sync::Mutex, task::JoinHandle};

/// The largest hosts file read (a hosts file of thousands of lines is far
/// smaller).
pub const MAX_HOSTS_FILE_BYTES: u64 = 1024 * 1024;

/// Resolves one host name and port to every address it stands for.
#[derive(Clone, Debug)]
pub struct Resolver {
    host: String,
    port: u16,
    hosts_file: Option<PathBuf>,
    timeout: Duration,
    /// A lookup that has not returned yet: awaited again rather than
    /// started anew, so that a resolver that hangs holds one thread, not
    /// one per interval.
    pending: Arc<Mutex<Option<Lookup>>>,
    /// Refused addresses already logged.
    refused: Arc<std::sync::Mutex<BTreeSet<IpAddr>>>,
}

type Lookup = JoinHandle<anyhow::Result<Vec<IpAddr>>>;

impl Resolver {
    /// Resolves `host` with DNS (the system resolver), or only from
    /// `hosts_file` (hosts(5) format) when one is given; a lookup that
    /// takes longer than `timeout` fails.
    pub fn new(host: &str, port: u16, hosts_file: Option<PathBuf>, timeout: Duration) -> Self {
        Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            hosts_file,
            timeout,
            pending: Arc::default(),
            refused: Arc::default(),
        }
    }

    /// Every usable address of the host. An IP address resolves to itself.
    pub async fn resolve(&self) -> anyhow::Result<BTreeSet<SocketAddr>> {
        let ips = match self.host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.lookup().await?,
        };
        let (usable, refused): (Vec<IpAddr>, Vec<IpAddr>) =
            ips.into_iter().partition(|ip| usable(*ip));
        self.log_refused(refused);
        let addresses: BTreeSet<SocketAddr> = usable
            .into_iter()
            .map(|ip| SocketAddr::new(ip, self.port))
            .collect();
        if addresses.is_empty() {
            bail!("{} resolves to no usable address", self.host);
        }
        Ok(addresses)
    }

    /// The host's addresses, from the hosts file or DNS, within the timeout.
    async fn lookup(&self) -> anyhow::Result<Vec<IpAddr>> {
        let mut pending = self.pending.lock().await;
        let lookup = pending.get_or_insert_with(|| {
            let host = self.host.clone();
            let port = self.port;
            let hosts_file = self.hosts_file.clone();
            tokio::task::spawn_blocking(move || match hosts_file {
                Some(path) => {
                    let text = crate::files::read_to_string(&path, MAX_HOSTS_FILE_BYTES, "")
                        .with_context(|| format!("the hosts file {}", path.display()))?;
                    Ok(hosts_entries(&text, &host).collect())
                }
                None => Ok((host.as_str(), port)
                    .to_socket_addrs()
                    .with_context(|| format!("cannot resolve {host}"))?
                    .map(|addr| addr.ip())
                    .collect()),
            })
        });
        let Ok(joined) = tokio::time::timeout(self.timeout, lookup).await else {
            bail!(
                "no answer for {} within {:?} (--resolve-timeout)",
                self.host,
                self.timeout
            );
        };
        *pending = None;
        joined
            .map_err(io::Error::other)
            .context("the lookup failed")?
    }

    fn log_refused(&self, refused: Vec<IpAddr>) {
        let mut logged = self
            .refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for ip in refused {
            if logged.len() < 64 && logged.insert(ip) {
                tracing::warn!(host = %self.host, address = %ip, "refused: not an address a replica can have");
            }
        }
    }
}

/// Whether a replica can be reached at `ip`: not unspecified (`0.0.0.0`
/// would reach this host), multicast or broadcast.
fn usable(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    !ip.is_unspecified() && !ip.is_multicast() && !matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

/// The addresses `name` has in a hosts file.
fn hosts_entries<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = IpAddr> + 'a {
    text.lines().filter_map(move |line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let ip = fields.next()?.parse().ok()?;
        fields
            .any(|alias| alias.eq_ignore_ascii_case(name))
            .then_some(ip)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hosts_file_may_list_one_name_on_several_lines() {
        let text = "127.0.0.1 localhost\n\
                    127.0.0.2 recommendations # first\n\
                    # 127.0.0.9 recommendations\n\
                    127.0.0.3\tother recommendations\n";

        let ips: Vec<IpAddr> = hosts_entries(text, "recommendations").collect();

        assert_eq!(
            ips,
            [IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3])]
        );
    }

    #[tokio::test]
    async fn an_ip_address_resolves_to_itself() {
        let resolver = Resolver::new("[::1]", 7, None, Duration::from_secs(1));

        let addresses = resolver.resolve().await.expect("no lookup needed");

        let ipv6_loopback = SocketAddr::new(IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]), 7);
        assert_eq!(addresses.into_iter().collect::<Vec<_>>(), [ipv6_loopback]);
    }

    #[tokio::test]
    async fn a_name_missing_from_the_hosts_file_is_an_error() {
        let file = std::env::temp_dir().join(format!("hosts-{}", std::process::id()));
        std::fs::write(&file, "127.0.0.1 localhost\n").expect("writable temp dir");
        let resolver = Resolver::new(
            "recommendations",
            1,
            Some(file.clone()),
            Duration::from_secs(1),
        );

        let error = resolver.resolve().await.expect_err("no entry");

        assert!(
            error.to_string().contains("resolves to no usable address"),
            "{error}"
        );
        let _ = std::fs::remove_file(file);
    }

    #[tokio::test]
    async fn unusable_addresses_are_refused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("hosts");
        std::fs::write(
            &file,
            "0.0.0.0 recommendations\n:: recommendations\n224.0.0.1 recommendations\n\
             255.255.255.255 recommendations\n::ffff:0.0.0.0 recommendations\n\
             10.0.0.7 recommendations\n",
        )
        .expect("written");
        let resolver = Resolver::new("recommendations", 9, Some(file), Duration::from_secs(1));

        let addresses = resolver.resolve().await.expect("one usable address");

        assert_eq!(
            addresses.into_iter().collect::<Vec<_>>(),
            [SocketAddr::from(([10, 0, 0, 7], 9))]
        );
        for ip in ["0.0.0.0", "::", "ff02::1"] {
            let only = Resolver::new(ip, 9, None, Duration::from_secs(1));
            assert!(only.resolve().await.is_err(), "{ip} is refused");
        }
    }

    #[tokio::test]
    async fn a_fifo_or_a_huge_hosts_file_fails_the_lookup_and_does_not_hang() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let fifo = dir.path().join("hosts");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success(), "mkfifo {}", fifo.display());
        let huge = dir.path().join("huge");
        std::fs::write(&huge, vec![b'#'; MAX_HOSTS_FILE_BYTES as usize + 1]).expect("written");

        for (path, problem) in [
            (fifo, "not a regular file (a FIFO)"),
            (huge, "over the limit"),
        ] {
            let resolver = Resolver::new("recommendations", 9, Some(path), Duration::from_secs(30));
            let error = resolver.resolve().await.expect_err("refused");
            assert!(format!("{error:#}").contains(problem), "{error:#}");
        }
    }

    #[tokio::test]
    async fn a_lookup_that_does_not_answer_times_out_and_is_awaited_again() {
        let resolver = Resolver::new("recommendations", 9, None, Duration::from_millis(50));
        // A lookup that never returns, as a resolver that hangs.
        let (_release, wait) = std::sync::mpsc::channel::<()>();
        *resolver.pending.lock().await = Some(tokio::task::spawn_blocking(move || {
            let _ = wait.recv();
            Ok(Vec::new())
        }));

        for _ in 0..3 {
            let error = resolver.resolve().await.expect_err("no answer");
            assert!(error.to_string().contains("within 50ms"), "{error}");
        }
        // Still the same lookup: none was started while it ran.
        assert!(resolver.pending.lock().await.is_some());
    }
}
