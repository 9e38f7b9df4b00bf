//! The instructions phase: callgrind counts the instructions each service
//! executes per page. CPU time on a shared VM moves by 10 to 20 % between
//! runs; an instruction count repeats to a fraction of a per cent, so it can
//! judge a change of a few per cent (issue 16's "≤ 2 % per page" for
//! tracing). One service runs under callgrind at a time, its peer natively;
//! wrk loads the homepage on a few connections, and callgrind counts only
//! the measured window, after a warm-up.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail, ensure};
use tokio::process::Command;

use super::{Suite, settle};
use crate::{
    callgrind,
    load::{self, HttpLoad},
    process::{self, Server},
    report::Instructions,
};

/// Few connections: callgrind runs the counted service some 50× slower, and
/// a page must not wait on its deadline (a degraded page is a different
/// page).
const CONNECTIONS: u32 = 4;

/// Valgrind starts a program in seconds, not milliseconds.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The service whose instructions are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counted {
    Marketplace,
    Recommendations,
}

impl Suite {
    /// Instructions per page: the marketplace's, then recommendations' (for
    /// the one call each page makes).
    pub async fn instructions(&self) -> anyhow::Result<Vec<Instructions>> {
        let mut counts = Vec::new();
        for counted in [Counted::Marketplace, Counted::Recommendations] {
            counts.push(self.count(counted).await?);
        }
        Ok(counts)
    }

    async fn count(&self, counted: Counted) -> anyhow::Result<Instructions> {
        let (name, per) = match counted {
            Counted::Marketplace => ("marketplace", "page"),
            Counted::Recommendations => ("recommendations", "call of a page"),
        };
        eprintln!("bench: instructions per {per}, {name} under callgrind");
        let out = self.work.join(format!("callgrind.{name}.out"));
        let callgrind = |counts: bool| counts.then_some(out.as_path());

        let grpc = process::free_port()?;
        let mut recommendations = self.launch(
            "recommendations-counted",
            "recommendations",
            &[
                ("RECOMMENDATIONS_LISTEN", grpc.to_string()),
                (
                    "RECOMMENDATIONS_ADMIN_LISTEN",
                    process::free_port()?.to_string(),
                ),
            ],
            callgrind(counted == Counted::Recommendations),
        )?;
        recommendations.wait_for_port(grpc, START_TIMEOUT).await?;
        let web = process::free_port()?;
        let mut marketplace = self.launch(
            "marketplace-counted",
            "marketplace",
            &[
                ("MARKETPLACE_LISTEN", web.to_string()),
                (
                    "MARKETPLACE_ADMIN_LISTEN",
                    process::free_port()?.to_string(),
                ),
                ("RECOMMENDATIONS_HOST", grpc.ip().to_string()),
                ("RECOMMENDATIONS_PORT", grpc.port().to_string()),
            ],
            callgrind(counted == Counted::Marketplace),
        )?;
        marketplace.wait_for_port(web, START_TIMEOUT).await?;

        let mut http_load = HttpLoad {
            url: format!("http://{web}/"),
            duration: self.plan.warmup_time * 3,
            connections: CONNECTIONS,
            threads: 1,
            cpus: None,
        };
        // Valgrind translates code as it first runs: warm up past that.
        load::wrk(&http_load).await?;
        settle().await;
        let pid = match counted {
            Counted::Marketplace => marketplace.pid(),
            Counted::Recommendations => recommendations.pid(),
        };
        callgrind_control(pid, &["--instr=on"]).await?;
        http_load.duration = self.plan.page_time;
        let outcome = load::wrk(&http_load).await?;
        settle().await;
        callgrind_control(pid, &["--instr=off"]).await?;
        callgrind_control(pid, &["--dump"]).await?;
        marketplace.stop().await?;
        recommendations.stop().await?;

        ensure!(
            outcome.non_2xx_3xx == 0 && outcome.socket_errors == 0 && outcome.requests > 0,
            "wrk under callgrind: {} pages, {} not 2xx, {} socket errors",
            outcome.requests,
            outcome.non_2xx_3xx,
            outcome.socket_errors
        );
        let dump = PathBuf::from(format!("{}.1", out.display()));
        let text = std::fs::read_to_string(&dump)
            .with_context(|| format!("callgrind wrote no dump {}", dump.display()))?;
        let total = callgrind::totals(&text)
            .with_context(|| format!("no `totals:` line in {}", dump.display()))?;
        let requests = outcome.requests as f64;
        Ok(Instructions {
            process: name.to_owned(),
            per: per.to_owned(),
            requests: outcome.requests,
            per_request: total as f64 / requests,
            components: callgrind::by_component(&text)
                .into_iter()
                .map(|(component, count)| (component.to_owned(), count as f64 / requests))
                .collect(),
        })
    }

    /// Starts `binary` with one worker (so that each page's instructions
    /// are one thread's), under callgrind writing to `callgrind` if given.
    fn launch(
        &self,
        name: &str,
        binary: &str,
        envs: &[(&str, String)],
        callgrind: Option<&Path>,
    ) -> anyhow::Result<Server> {
        let binary = self.binary(binary)?;
        let mut envs = envs.to_vec();
        envs.push(("RUST_LOG", "info".to_owned()));
        let workers = "--worker-threads=1".to_owned();
        match callgrind {
            Some(out) => {
                // A dump left by an earlier run must not be read as this one's.
                let _ = std::fs::remove_file(format!("{}.1", out.display()));
                Server::start(
                    name,
                    Path::new("valgrind"),
                    &[
                        "--tool=callgrind".to_owned(),
                        "--instr-atstart=no".to_owned(),
                        format!("--callgrind-out-file={}", out.display()),
                        binary.display().to_string(),
                        workers,
                    ],
                    &envs,
                    &self.work,
                    None,
                )
                .context("is valgrind installed? (`apt-get install valgrind`)")
            }
            None => Server::start(name, &binary, &[workers], &envs, &self.work, None),
        }
    }
}

/// Tells the callgrind run `pid` to do `args` (see callgrind_control(1)).
async fn callgrind_control(pid: u32, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .context("cannot run callgrind_control (it comes with valgrind)")?;
    if !status.success() {
        bail!("callgrind_control {} {pid}: {status}", args.join(" "));
    }
    Ok(())
}
