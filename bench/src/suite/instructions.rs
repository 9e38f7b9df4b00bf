//! The instructions phase: callgrind counts the instructions each service
//! executes per page. CPU time on a shared VM moves by 10 to 20 % between
//! runs; an instruction count repeats to a fraction of a per cent, so it can
//! judge a change of a few per cent (issue 16's "≤ 2 % per page" for
//! tracing). One service runs under callgrind at a time, its peer natively;
//! wrk loads the homepage on a few connections, and callgrind counts only
//! the measured window, after a warm-up. Then the same for one Recommend
//! call on each contract, recommendations against bare tonic under h2load,
//! as the gRPC phase loads them: a ratio that does not drift with the VM.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail, ensure};
use tokio::process::Command;

use super::{
    Suite,
    grpc::GrpcTarget,
    settle,
    workload::{contracts, write_catalog},
};
use crate::{
    callgrind, checks,
    load::{self, HttpLoad},
    process::{self, Server},
    report::{CallInstructions, Instructions},
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

    /// Instructions per Recommend call on each contract: recommendations,
    /// then bare tonic, each under callgrind in turn.
    pub async fn call_instructions(&self) -> anyhow::Result<Vec<CallInstructions>> {
        let catalog = self.work.join("bench-catalog.csv");
        write_catalog(&catalog)?;
        let contracts = contracts(&self.work)?;
        let mut counts = vec![[0.0; 2]; contracts.len()];
        for (side, name) in ["recommendations", "bare-tonic"].into_iter().enumerate() {
            eprintln!("bench: instructions per Recommend call, {name} under callgrind");
            let out = self.work.join(format!("callgrind.{name}.calls.out"));
            let addr = process::free_port()?;
            let (envs, args) = if side == 0 {
                let envs = vec![
                    ("RECOMMENDATIONS_LISTEN", addr.to_string()),
                    (
                        "RECOMMENDATIONS_ADMIN_LISTEN",
                        process::free_port()?.to_string(),
                    ),
                    ("RECOMMENDATIONS_CATALOG", catalog.display().to_string()),
                ];
                (envs, Vec::new())
            } else {
                let args = vec![
                    format!("--listen={addr}"),
                    format!("--catalog={}", catalog.display()),
                ];
                (Vec::new(), args)
            };
            let mut server = self.launch_with(name, name, &envs, &args, Some(&out))?;
            server.wait_for_port(addr, START_TIMEOUT).await?;
            let target = GrpcTarget {
                server: &server,
                addr,
                admin: None,
            };
            for (dump, (contract, count)) in contracts.iter().zip(&mut counts).enumerate() {
                let calls = self.plan.warmup_calls;
                // Valgrind translates code as it first runs: warm up past that.
                self.h2load(&target, contract.path, &contract.body, calls / 10)
                    .await?;
                let pid = server.pid();
                callgrind_control(pid, &["--zero"]).await?;
                callgrind_control(pid, &["--instr=on"]).await?;
                let run = self
                    .h2load(&target, contract.path, &contract.body, calls)
                    .await?;
                callgrind_control(pid, &["--instr=off"]).await?;
                callgrind_control(pid, &["--dump"]).await?;
                checks::grpc_run(name, calls, contract.response_bytes, &run.outcome, None)?;
                let dump = PathBuf::from(format!("{}.{}", out.display(), dump + 1));
                count[side] = total(&dump)? as f64 / calls as f64;
            }
            server.stop().await?;
        }
        Ok(contracts
            .iter()
            .zip(counts)
            .map(|(contract, [service, ceiling])| CallInstructions {
                scenario: format!("Recommend ({})", contract.name),
                calls: self.plan.warmup_calls,
                service,
                ceiling,
            })
            .collect())
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
        self.launch_with(name, binary, envs, &[], callgrind)
    }

    /// [`Suite::launch`] with `args` after the worker count.
    fn launch_with(
        &self,
        name: &str,
        binary: &str,
        envs: &[(&str, String)],
        args: &[String],
        callgrind: Option<&Path>,
    ) -> anyhow::Result<Server> {
        let binary = self.binary(binary)?;
        let mut envs = envs.to_vec();
        envs.push(("RUST_LOG", "info".to_owned()));
        let workers = "--worker-threads=1".to_owned();
        let program: Vec<String> = [binary.display().to_string(), workers]
            .into_iter()
            .chain(args.iter().cloned())
            .collect();
        match callgrind {
            Some(out) => {
                // Dumps left by an earlier run must not be read as this one's.
                for dump in 1..=2 {
                    let _ = std::fs::remove_file(format!("{}.{dump}", out.display()));
                }
                let valgrind = [
                    "--tool=callgrind".to_owned(),
                    "--instr-atstart=no".to_owned(),
                    format!("--callgrind-out-file={}", out.display()),
                ];
                Server::start(
                    name,
                    Path::new("valgrind"),
                    &[&valgrind[..], &program].concat(),
                    &envs,
                    &self.work,
                    None,
                )
                .context("is valgrind installed? (`apt-get install valgrind`)")
            }
            None => Server::start(name, &binary, &program[1..], &envs, &self.work, None),
        }
    }
}

/// The instructions a callgrind dump counted.
fn total(dump: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(dump)
        .with_context(|| format!("callgrind wrote no dump {}", dump.display()))?;
    callgrind::totals(&text).with_context(|| format!("no `totals:` line in {}", dump.display()))
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
