//! The chaos run's processes and the files they read: recommendations
//! replicas, each in its own namespace, and the marketplace in the hub,
//! with mutual TLS from a CA made for the run, a catalog file and a hosts
//! file, all reloaded live. Each process's log is a file in the output
//! directory; its memory and open files are read from `/proc`.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use service_kit::testing::{Pki, Purpose};

use super::hosts::{Hosts, REPLICA_PORT};
use crate::process::Server;

/// The marketplace's page listener and admin listener, in the hub.
pub const MARKETPLACE: &str = "127.0.0.1:5080";
pub const MARKETPLACE_ADMIN: &str = "127.0.0.1:5081";

/// Resident memory and open files of a process, from `/proc`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub rss: u64,
    pub open_files: usize,
}

/// The processes, and the files they read.
pub struct Fleet {
    pub hosts: Hosts,
    binaries: PathBuf,
    out: PathBuf,
    pki: Pki,
    /// Replica `i` is `replicas[i - 1]`: its process (None while down) and
    /// how many times it was started.
    replicas: Vec<(Option<Server>, u32)>,
    marketplace: Option<Server>,
    /// The replicas the hosts file lists.
    listed: BTreeSet<usize>,
    catalog_turn: u32,
}

impl Fleet {
    /// Writes the files and starts `listed` replicas (numbered from 1, of
    /// the `hosts`' replicas) and the marketplace, ready to serve.
    pub async fn start(
        hosts: Hosts,
        replicas: usize,
        listed: usize,
        binaries: &Path,
        out: &Path,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(out.join("logs")).context("making the output directory")?;
        let pki = Pki::new();
        std::fs::write(out.join("ca.pem"), pki.ca_pem()).context("writing the CA")?;
        let mut fleet = Self {
            marketplace: None,
            hosts,
            binaries: binaries.to_owned(),
            out: out.to_owned(),
            pki,
            replicas: (0..replicas).map(|_| (None, 0)).collect(),
            listed: (1..=listed).collect(),
            catalog_turn: 0,
        };
        fleet.issue_certificates()?;
        fleet.write_catalog()?;
        fleet.write_hosts()?;
        for i in 1..=listed {
            fleet.start_replica(i).await?;
        }
        fleet.marketplace = Some(fleet.start_marketplace().await?);
        Ok(fleet)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }

    /// Writes `text` to `name` beside and renames it into place, so that a
    /// reader sees the old file or the new one, never half of one.
    fn replace(&self, name: &str, text: &str) -> anyhow::Result<()> {
        let (path, next) = (self.path(name), self.path(&format!(".{name}.next")));
        std::fs::write(&next, text).with_context(|| format!("writing {}", next.display()))?;
        std::fs::rename(&next, &path).with_context(|| format!("replacing {}", path.display()))
    }

    /// New leaf certificates for both sides from the run's CA, each file
    /// replaced whole. The services read them within their reload interval.
    pub fn issue_certificates(&self) -> anyhow::Result<()> {
        let (cert, key) = self.pki.issue("recommendations", &[Purpose::ServerAuth]);
        self.replace("server.key", &key)?;
        self.replace("server.pem", &cert)?;
        let (cert, key) = self.pki.issue("marketplace", &[Purpose::ClientAuth]);
        self.replace("client.key", &key)?;
        self.replace("client.pem", &cert)
    }

    /// Writes the next catalog: 300 books, of which 1 in 8 change titles
    /// from one catalog to the next.
    pub fn write_catalog(&mut self) -> anyhow::Result<()> {
        self.catalog_turn += 1;
        let categories = ["mystery", "science_fiction", "self_help"];
        let mut csv = String::from("id,title,author,category\n");
        for id in 1..=300 {
            let edition = if id % 8 == 0 { self.catalog_turn } else { 1 };
            let category = categories[id % 3];
            csv.push_str(&format!(
                "{id},Book {id} (edition {edition}),Author {id},{category}\n"
            ));
        }
        self.replace("catalog.csv", &csv)
    }

    /// Lists the replicas of `listed` in the hosts file.
    fn write_hosts(&self) -> anyhow::Result<()> {
        let mut text = String::from("127.0.0.1 localhost\n");
        for i in &self.listed {
            text.push_str(&format!("{} recommendations\n", Hosts::replica_ip(*i)));
        }
        self.replace("hosts", &text)
    }

    /// Adds or removes replica `i` from the hosts file (the marketplace
    /// reads it within its resolve interval).
    pub fn list(&mut self, i: usize, listed: bool) -> anyhow::Result<()> {
        if listed {
            self.listed.insert(i);
        } else {
            self.listed.remove(&i);
        }
        self.write_hosts()
    }

    /// Replica `i`'s gRPC address.
    pub fn replica_addr(i: usize) -> SocketAddr {
        SocketAddr::new(Hosts::replica_ip(i), REPLICA_PORT)
    }

    /// Starts replica `i` in its namespace and waits until it serves.
    pub async fn start_replica(&mut self, i: usize) -> anyhow::Result<()> {
        let life = self.replicas[i - 1].1 + 1;
        let name = format!("replica{i}.{life}");
        let binary = self.binaries.join("recommendations");
        let args = [
            "netns".to_owned(),
            "exec".to_owned(),
            self.hosts.replica(i),
            binary.display().to_string(),
            format!("--listen={}", Self::replica_addr(i)),
            "--admin-listen=127.0.0.1:9090".to_owned(),
            format!("--catalog={}", self.path("catalog.csv").display()),
            format!("--tls-cert={}", self.path("server.pem").display()),
            format!("--tls-key={}", self.path("server.key").display()),
            format!("--tls-client-ca={}", self.path("ca.pem").display()),
            "--reload-interval=1s".to_owned(),
            "--max-connection-age=30s".to_owned(),
            "--log-format=json".to_owned(),
        ];
        let server = Server::start(&name, Path::new("ip"), &args, &[], &self.path("logs"), None)?;
        self.replicas[i - 1] = (Some(server), life);
        self.wait_serving(&name).await
    }

    /// Waits for the "serving" event in `name`'s log.
    async fn wait_serving(&self, name: &str) -> anyhow::Result<()> {
        let log = self.path("logs").join(format!("{name}.log"));
        for _ in 0..200 {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(r#""message":"serving""#) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{name} did not serve within 10 s; see {}", log.display())
    }

    async fn start_marketplace(&self) -> anyhow::Result<Server> {
        let binary = self.binaries.join("marketplace");
        let args = [
            binary.display().to_string(),
            format!("--listen={MARKETPLACE}"),
            format!("--admin-listen={MARKETPLACE_ADMIN}"),
            "--recommendations-host=recommendations".to_owned(),
            format!("--recommendations-port={REPLICA_PORT}"),
            format!("--hosts-file={}", self.path("hosts").display()),
            "--resolve-interval=1s".to_owned(),
            "--recommendations-tls-domain=recommendations".to_owned(),
            format!("--recommendations-tls-ca={}", self.path("ca.pem").display()),
            format!(
                "--recommendations-tls-client-cert={}",
                self.path("client.pem").display()
            ),
            format!(
                "--recommendations-tls-client-key={}",
                self.path("client.key").display()
            ),
            "--reload-interval=1s".to_owned(),
            "--log-format=json".to_owned(),
        ];
        // Already in the hub (the run's inner half runs there).
        let (program, rest) = args.split_first().context("a command")?;
        let server = Server::start(
            "marketplace",
            Path::new(program),
            rest,
            &[],
            &self.path("logs"),
            None,
        )?;
        self.wait_serving("marketplace").await?;
        Ok(server)
    }

    /// Replica `i`'s process id, if it runs.
    pub fn replica_pid(&self, i: usize) -> Option<u32> {
        self.replicas[i - 1].0.as_ref().map(Server::pid)
    }

    /// Kills replica `i` with SIGKILL.
    pub fn kill_replica(&mut self, i: usize) {
        // Dropping the server kills it (SIGKILL) and reaps it.
        self.replicas[i - 1].0 = None;
    }

    /// Stops replica `i` as Kubernetes does (SIGTERM, drain) and waits.
    pub async fn stop_replica(&mut self, i: usize) -> anyhow::Result<()> {
        match self.replicas[i - 1].0.take() {
            Some(server) => server.stop().await,
            None => Ok(()),
        }
    }

    /// Sends SIGHUP to every running replica (a catalog reload).
    pub fn hang_up_replicas(&self) -> anyhow::Result<()> {
        for (server, _) in &self.replicas {
            if let Some(server) = server {
                super::hosts::run("kill", &["-HUP", &server.pid().to_string()])?;
            }
        }
        Ok(())
    }

    /// The footprint of each running process, by name.
    pub fn footprints(&self) -> Vec<(String, Footprint)> {
        let servers = self.marketplace.iter().chain(
            self.replicas
                .iter()
                .filter_map(|(server, _)| server.as_ref()),
        );
        servers
            .filter_map(|server| Some((server.name().to_owned(), footprint(server.pid())?)))
            .collect()
    }
}

/// Process `pid`'s resident memory (VmRSS) and open files.
pub fn footprint(pid: u32) -> Option<Footprint> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()?
        * 1024;
    let open_files = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Footprint { rss, open_files })
}
