//! The gRPC phase: h2load makes Recommend calls on each contract to the
//! recommendations service and to bare tonic (the ceiling), round after
//! round, and every call is proved to have succeeded; a negative control
//! shows that the checks catch failed calls.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::{Context, bail};
use prost::Message as _;
use protobufs::v1;

use super::{
    Suite, alternating, cpu_per_request, kernel_per_request, memory, threads,
    workload::{Contract, contracts, frame, write_catalog},
};
use crate::{
    checks::{self, CallCounts},
    load::{self, GrpcLoad},
    process::{self, Server, Usage},
    prometheus,
    report::{Comparison, Figures, Memory},
};

/// h2load's shape: like the marketplace, few connections with many calls
/// multiplexed on each.
const GRPC_CONNECTIONS: u32 = 8;
const GRPC_STREAMS: u32 = 16;

/// What one h2load run gave.
pub(super) struct GrpcRun {
    pub(super) outcome: load::GrpcOutcome,
    pub(super) counted: Option<CallCounts>,
    usage: (Usage, Usage),
}

/// A gRPC server under load.
pub(super) struct GrpcTarget<'a> {
    pub(super) server: &'a Server,
    pub(super) addr: SocketAddr,
    /// The admin listener, for the service's own count of calls.
    pub(super) admin: Option<SocketAddr>,
}

impl Suite {
    /// Recommend on both contracts: the service against bare tonic.
    pub async fn grpc(&self) -> anyhow::Result<(Vec<Comparison>, Vec<Memory>)> {
        let catalog = self.work.join("bench-catalog.csv");
        write_catalog(&catalog)?;
        let contracts = contracts(&self.work)?;

        let (service, addr, admin) = self
            .start_recommendations("recommendations", &self.placement, Some(&catalog))
            .await?;
        let bare_addr = process::free_port()?;
        let mut bare = Server::start(
            "bare-tonic",
            &self.binary("bare-tonic")?,
            &[
                threads(self.placement.workers),
                vec![
                    format!("--listen={bare_addr}"),
                    format!("--catalog={}", catalog.display()),
                ],
            ]
            .concat(),
            &[],
            &self.work,
            self.placement.servers.as_deref(),
        )?;
        bare.wait_for_port(bare_addr, Duration::from_secs(10))
            .await?;

        let service_target = GrpcTarget {
            server: &service,
            addr,
            admin: Some(admin),
        };
        let bare_target = GrpcTarget {
            server: &bare,
            addr: bare_addr,
            admin: None,
        };
        let mut rounds: Vec<Vec<(Figures, Figures)>> = vec![Vec::new(); contracts.len()];
        for round in 0..self.plan.rounds {
            for (contract, results) in contracts.iter().zip(&mut rounds) {
                eprintln!("bench: round {}, Recommend ({})", round + 1, contract.name);
                let measured = self.grpc_run(&service_target, contract);
                let ceiling = self.grpc_run(&bare_target, contract);
                let (measured, ceiling) = alternating(round, measured, ceiling).await?;
                results.push((measured, ceiling));
            }
        }
        self.negative_control(&service_target, &contracts[0])
            .await?;
        let memory = vec![
            memory(&service, "Recommend, both contracts", self.ticks)?,
            memory(&bare, "Recommend, both contracts", self.ticks)?,
        ];
        service.stop().await?;
        bare.stop().await?;

        let comparisons = contracts
            .iter()
            .zip(rounds)
            .map(|(contract, rounds)| Comparison {
                scenario: format!("Recommend ({})", contract.name),
                load: format!(
                    "h2load, {GRPC_CONNECTIONS} connections × {GRPC_STREAMS} streams, {} calls per round, {} rounds, {}",
                    self.plan.calls,
                    self.plan.rounds,
                    self.placement.label()
                ),
                service: "recommendations".to_owned(),
                ceiling: "bare tonic".to_owned(),
                service_figures: Figures::median(&rounds.iter().map(|r| r.0).collect::<Vec<_>>()),
                ceiling_figures: Figures::median(&rounds.iter().map(|r| r.1).collect::<Vec<_>>()),
                rounds,
                checked: format!(
                    "every call checked: HTTP 200 in h2load's log, exactly {} response bytes each (one message, so no gRPC error), and the service's own count of OK calls",
                    contract.response_bytes
                ),
            })
            .collect();
        Ok((comparisons, memory))
    }

    /// A warm-up, then one measured run of fixed size, checked call by call.
    async fn grpc_run(
        &self,
        target: &GrpcTarget<'_>,
        contract: &Contract,
    ) -> anyhow::Result<Figures> {
        self.h2load(
            target,
            contract.path,
            &contract.body,
            self.plan.warmup_calls,
        )
        .await?;
        let calls = self.plan.calls;
        let run = self
            .h2load(target, contract.path, &contract.body, calls)
            .await?;
        checks::grpc_run(
            target.server.name(),
            calls,
            contract.response_bytes,
            &run.outcome,
            run.counted,
        )?;
        Ok(Figures {
            rate: run.outcome.summary.rate,
            p50_us: run.outcome.latency.p50_us,
            p99_us: run.outcome.latency.p99_us,
            cpu_us: cpu_per_request(&[run.usage], calls),
            kernel_us: kernel_per_request(&[run.usage], calls),
        })
    }

    /// The negative control: calls that all fail (an unknown category,
    /// INVALID_ARGUMENT behind HTTP 200) must not pass the checks.
    async fn negative_control(
        &self,
        target: &GrpcTarget<'_>,
        contract: &Contract,
    ) -> anyhow::Result<()> {
        let body = self.work.join("failing-request.bin");
        let request = v1::RecommendRequest {
            user_id: 1,
            category: 99,
            max_results: 3,
        };
        std::fs::write(&body, frame(request.encode_to_vec())?)
            .with_context(|| format!("cannot write {}", body.display()))?;
        let calls = 1000;
        let run = self.h2load(target, contract.path, &body, calls).await?;
        match checks::grpc_run(
            target.server.name(),
            calls,
            contract.response_bytes,
            &run.outcome,
            run.counted,
        ) {
            Ok(()) => {
                bail!("the checks passed {calls} calls that all failed with INVALID_ARGUMENT")
            }
            Err(err) => eprintln!(
                "bench: negative control: {calls} failing calls behind HTTP 200 were caught ({err})"
            ),
        }
        Ok(())
    }

    /// One h2load run of `calls` posting `body` to `path`, with the CPU the
    /// server used and, if it counts calls, what it counted.
    pub(super) async fn h2load(
        &self,
        target: &GrpcTarget<'_>,
        path: &str,
        body: &Path,
        calls: u64,
    ) -> anyhow::Result<GrpcRun> {
        let log = self.work.join("h2load.tsv");
        let grpc_load = GrpcLoad {
            url: format!("http://{}{path}", target.addr),
            body,
            calls,
            connections: GRPC_CONNECTIONS,
            streams: GRPC_STREAMS,
            log: &log,
            cpus: self.placement.load.as_deref(),
        };
        let count = |text: &str, code: Option<&str>| {
            let method = format!("rpc_method=\"{}\"", path.trim_start_matches('/'));
            let code = code.map(|code| format!("rpc_response_status_code=\"{code}\""));
            let mut labels = vec![method.as_str()];
            labels.extend(code.as_deref());
            prometheus::sum(text, "rpc_server_call_duration_seconds_count", &labels)
        };
        let before_metrics = self.scrape(target.admin).await?;
        let before = target.server.usage(self.ticks)?;
        let outcome = load::h2load(&grpc_load).await?;
        let after = target.server.usage(self.ticks)?;
        let after_metrics = self.scrape(target.admin).await?;
        let counted = before_metrics
            .zip(after_metrics)
            .map(|(before, after)| CallCounts {
                ok: count(&after, Some("OK")) - count(&before, Some("OK")),
                all: count(&after, None) - count(&before, None),
            });
        Ok(GrpcRun {
            outcome,
            counted,
            usage: (before, after),
        })
    }
}
