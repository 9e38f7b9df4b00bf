//! The HTTP phase: wrk loads the homepage (marketplace and
//! recommendations) and bare axum serving a saved copy of the same page
//! (the ceiling); no response may fail and no page may be degraded. With
//! export on, both services trace every page and send the spans to a
//! collector in the suite, and the spans exported and dropped are reported.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, ensure};

use super::{
    Placement, Suite, alternating, cpu_per_request, kernel_per_request, memory, settle, threads,
    usages,
};
use crate::{
    checks::{self, PageCounts},
    collector::Collector,
    load::{self, HttpLoad},
    process::{self, Server, Usage},
    prometheus,
    report::{Comparison, Figures, Memory, rate},
};

/// wrk's shape: browsers keep connections open and reuse them.
const HTTP_CONNECTIONS: u32 = 64;
const HTTP_THREADS: u32 = 1;

impl Suite {
    /// The homepage (marketplace + recommendations) against bare axum
    /// serving the same page; with `export`, every span goes to a
    /// collector.
    pub async fn http(
        &self,
        placement: &Placement,
        scenario: &str,
        export: bool,
    ) -> anyhow::Result<(Comparison, Vec<Memory>)> {
        let collector = match export {
            true => Some(Collector::start().await?),
            false => None,
        };
        // Every page sampled (the default sampler, with no caller's choice).
        let tracing: Vec<(&'static str, String)> = collector
            .iter()
            .flat_map(|c| {
                [
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", c.endpoint()),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
                ]
            })
            .collect();
        let (recommendations, grpc, grpc_admin) = self
            .start_recommendations_with("recommendations-for-pages", placement, None, &tracing)
            .await?;
        let (marketplace, web, web_admin) =
            self.start_marketplace(placement, grpc, &tracing).await?;

        // The ceiling serves the very page the marketplace renders.
        let page = self.homepage(web).await?;
        let page_file = self.work.join("homepage.html");
        std::fs::write(&page_file, &page)
            .with_context(|| format!("cannot write {}", page_file.display()))?;
        let bare_addr = process::free_port()?;
        let mut bare = Server::start(
            "bare-axum",
            &self.binary("bare-axum")?,
            &[
                threads(placement.workers),
                vec![
                    format!("--listen={bare_addr}"),
                    format!("--page={}", page_file.display()),
                ],
            ]
            .concat(),
            &[],
            &self.work,
            placement.servers.as_deref(),
        )?;
        bare.wait_for_port(bare_addr, Duration::from_secs(10))
            .await?;

        let mut rounds = Vec::new();
        let times = self.plan.page_times();
        for round in 0..self.plan.rounds {
            eprintln!("bench: round {}, homepage", round + 1);
            let (bare_servers, servers) = ([&bare], [&marketplace, &recommendations]);
            let ceiling = self.http_run(
                &bare_servers,
                bare_addr,
                None,
                placement,
                HTTP_CONNECTIONS,
                times,
            );
            let admins = Some((web_admin, grpc_admin));
            let measured = self.http_run(&servers, web, admins, placement, HTTP_CONNECTIONS, times);
            let pair = alternating(round, measured, ceiling).await?;
            rounds.push(pair);
        }
        let memory = vec![
            memory(&marketplace, scenario, self.ticks)?,
            memory(&recommendations, scenario, self.ticks)?,
            memory(&bare, scenario, self.ticks)?,
        ];
        let exported = match &collector {
            Some(collector) => {
                let admins = [web_admin, grpc_admin];
                Some(self.export_counts(collector, admins).await?)
            }
            None => None,
        };
        marketplace.stop().await?;
        recommendations.stop().await?;
        bare.stop().await?;
        let checked = "no response other than 2xx (wrk), every page counted as 200 by the marketplace, none degraded, and one OK Recommend per page counted by recommendations; CPU is both services' together";
        let checked = match exported {
            Some(spans) => format!("{checked}; {spans}"),
            None => checked.to_owned(),
        };

        let comparison = Comparison {
            scenario: scenario.to_owned(),
            load: format!(
                "wrk, {HTTP_CONNECTIONS} keep-alive connections, {} s per round, {} rounds, {}; the page is {} bytes",
                self.plan.page_time.as_secs(),
                self.plan.rounds,
                placement.label(),
                page.len()
            ),
            service: "marketplace + recommendations".to_owned(),
            ceiling: "bare axum, static copy".to_owned(),
            service_figures: Figures::median(&rounds.iter().map(|r| r.0).collect::<Vec<_>>()),
            ceiling_figures: Figures::median(&rounds.iter().map(|r| r.1).collect::<Vec<_>>()),
            rounds,
            checked,
        };
        Ok((comparison, memory))
    }

    /// The marketplace calling recommendations at `grpc`, with `extra`
    /// variables set, once it listens: the process, its web and its admin
    /// address.
    pub(super) async fn start_marketplace(
        &self,
        placement: &Placement,
        grpc: SocketAddr,
        extra: &[(&'static str, String)],
    ) -> anyhow::Result<(Server, SocketAddr, SocketAddr)> {
        let web = process::free_port()?;
        let web_admin = process::free_port()?;
        let mut envs = vec![
            ("MARKETPLACE_LISTEN", web.to_string()),
            ("MARKETPLACE_ADMIN_LISTEN", web_admin.to_string()),
            ("RECOMMENDATIONS_HOST", grpc.ip().to_string()),
            ("RECOMMENDATIONS_PORT", grpc.port().to_string()),
            ("RUST_LOG", "info".to_owned()),
        ];
        envs.extend_from_slice(extra);
        let mut marketplace = Server::start(
            "marketplace",
            &self.binary("marketplace")?,
            &threads(placement.workers),
            &envs,
            &self.work,
            placement.servers.as_deref(),
        )?;
        marketplace
            .wait_for_port(web, Duration::from_secs(10))
            .await?;
        Ok((marketplace, web, web_admin))
    }

    /// What became of the spans over the whole scenario, warm-ups included,
    /// from both services' metrics (`admins`) and the collector, which must
    /// agree on the spans exported.
    async fn export_counts(
        &self,
        collector: &Collector,
        admins: [SocketAddr; 2],
    ) -> anyhow::Result<String> {
        let (mut queued, mut dropped, mut exported) = (0.0, 0.0, 0.0);
        for admin in admins {
            let text = self.scrape(Some(admin)).await?.unwrap_or_default();
            let processed = "otel_sdk_processor_span_processed_total";
            queued += prometheus::sum(&text, processed, &[r#"error_type="""#]);
            dropped += prometheus::sum(&text, processed, &[r#"error_type="queue_full""#]);
            exported += prometheus::sum(
                &text,
                "otel_sdk_exporter_span_exported_total",
                &[r#"error_type="""#],
            );
        }
        let received = collector.spans() as f64;
        ensure!(
            queued > 0.0 && exported <= received,
            "span export: {queued} queued, {exported} counted exported, {received} received"
        );
        let share = 100.0 * dropped / (queued + dropped);
        Ok(format!(
            "spans, warm-ups included: every page sampled, {} queued, {} dropped as the queue was full ({share:.1} %), {} received by the collector",
            rate(queued),
            rate(dropped),
            rate(received)
        ))
    }

    /// The homepage as the marketplace renders it, checked to be whole.
    pub(super) async fn homepage(&self, web: SocketAddr) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("http://{web}/"))
            .send()
            .await
            .context("fetching the homepage")?;
        let status = response.status();
        let page = response.text().await.context("reading the homepage")?;
        ensure!(
            status == reqwest::StatusCode::OK
                && page.matches("<li>").count() == 3
                && !page.contains("role=\"status\""),
            "the homepage is not whole ({status}):\n{page}"
        );
        Ok(page)
    }

    /// A warm-up, then one measured run, of `(warm-up, measured)` times
    /// (usually [`Plan::page_times`]), on `connections`. `admins`
    /// (marketplace and recommendations) check every page.
    pub(super) async fn http_run(
        &self,
        servers: &[&Server],
        addr: SocketAddr,
        admins: Option<(SocketAddr, SocketAddr)>,
        placement: &Placement,
        connections: u32,
        (warmup, measured): (Duration, Duration),
    ) -> anyhow::Result<Figures> {
        let mut http_load = HttpLoad {
            cpus: placement.load.clone(),
            url: format!("http://{addr}/"),
            duration: warmup,
            connections,
            threads: HTTP_THREADS,
        };
        load::wrk(&http_load).await?;
        settle().await;
        http_load.duration = measured;

        let (web_admin, grpc_admin) = admins.unzip();
        let pages = |text: &str, status: Option<&str>| {
            let mut labels = vec![r#"http_route="/""#];
            let status = status.map(|s| format!("http_response_status_code=\"{s}\""));
            labels.extend(status.as_deref());
            prometheus::sum(text, "http_server_request_duration_seconds_count", &labels)
        };
        let degraded = |text: &str| prometheus::sum(text, "marketplace_degraded_pages_total", &[]);
        let recommended = |text: &str| {
            prometheus::sum(
                text,
                "rpc_server_call_duration_seconds_count",
                &[
                    "rpc_method=\"bookstore.recommendations.v1.RecommendationsService/Recommend\"",
                    "rpc_response_status_code=\"OK\"",
                ],
            )
        };
        let web_before = self.scrape(web_admin).await?;
        let grpc_before = self.scrape(grpc_admin).await?;
        let before = usages(servers, self.ticks)?;
        let outcome = load::wrk(&http_load).await?;
        settle().await;
        let after = usages(servers, self.ticks)?;
        let web_after = self.scrape(web_admin).await?;
        let grpc_after = self.scrape(grpc_admin).await?;

        let name = servers
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(" + ");
        let counted = match (web_before, web_after, grpc_before, grpc_after) {
            (Some(wb), Some(wa), Some(gb), Some(ga)) => Some(PageCounts {
                ok: pages(&wa, Some("200")) - pages(&wb, Some("200")),
                all: pages(&wa, None) - pages(&wb, None),
                degraded: degraded(&wa) - degraded(&wb),
                recommended: recommended(&ga) - recommended(&gb),
            }),
            _ => None,
        };
        let served = checks::pages(&name, &outcome, connections, counted)?;
        let spans: Vec<(Usage, Usage)> = before.into_iter().zip(after).collect();
        for (server, span) in servers.iter().zip(&spans) {
            eprintln!(
                "bench:   {}: {:.1} µs CPU per page",
                server.name(),
                cpu_per_request(std::slice::from_ref(span), served)
            );
        }
        Ok(Figures {
            rate: outcome.rate,
            p50_us: outcome.latency.p50_us,
            p99_us: outcome.latency.p99_us,
            cpu_us: cpu_per_request(&spans, served),
            kernel_us: kernel_per_request(&spans, served),
        })
    }
}
