//! Overloads: ten times what a replica can serve, offered to Recommend and
//! to the homepage, with probes and well-behaved clients measured meanwhile.

use super::*;

impl Siege {
    /// Attack 4 and the overload figures: h2load offers 64 connections ×
    /// 256 streams (16,384 calls at once; HTTP/2 lets it open 100 per
    /// connection) while probes measure what a well-behaved client, the
    /// readiness probe (gRPC health) and the liveness probe (`/healthz`) get.
    pub async fn overload_recommend(&mut self) -> anyhow::Result<()> {
        const SCENARIO: &str = "4. Recommend: 16,384 calls offered at once";
        let calls: u64 = if self.quick { 100_000 } else { 1_000_000 };
        let target = self.start_recommendations("overload", None).await?;
        let body = self.out.join("recommend-request.bin");
        let request = v1::RecommendRequest {
            user_id: 1,
            category: v1::Category::Mystery as i32,
            max_results: 3,
        };
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(request.encoded_len() as u32).to_be_bytes());
        request.encode(&mut framed)?;
        std::fs::write(&body, framed)
            .with_context(|| format!("cannot write {}", body.display()))?;
        let log = self.out.join("overload-h2load.log");
        let load = GrpcLoad {
            url: format!("http://{}{RECOMMEND}", target.grpc),
            body: &body,
            calls,
            connections: 64,
            streams: 256,
            log: &log,
            cpus: None,
        };

        let http = service_kit::tls::http_client()?;
        let (outcome, [probe, readiness, liveness], seconds) = during(
            load::h2load(&load),
            recommend_call(target.grpc),
            health_call(target.grpc),
            page_call(
                &http,
                format!("http://{}/healthz", target.admin),
                PROBE_TIMEOUT,
            ),
        )
        .await;
        let outcome = outcome?;
        let metrics = scrape(target.admin).await?;
        let counted = |code: &str| {
            prometheus::sum(
                &metrics,
                "rpc_server_call_duration_seconds_count",
                &[
                    &format!(r#"rpc_method="{}""#, RECOMMEND.trim_start_matches('/')),
                    &format!(r#"rpc_response_status_code="{code}""#),
                ],
            )
        };
        let ok = counted("OK") - probe.ok.len() as f64;
        let refused = counted("RESOURCE_EXHAUSTED") + outcome.summary.failed as f64;
        self.check(
            SCENARIO,
            outcome.summary.done == calls && ok + refused >= calls as f64,
            format!(
                "{calls} calls made: {ok:.0} OK, {refused:.0} refused (RESOURCE_EXHAUSTED or REFUSED_STREAM), none lost; p99 as h2load saw it {}",
                micros(outcome.latency.p99_us)
            ),
        );
        self.check_probes(
            SCENARIO,
            &[
                ("readiness (gRPC health)", &readiness),
                ("liveness (/healthz)", &liveness),
            ],
        );
        let peak = self.check_memory(SCENARIO, &target.server)?;
        self.overloads.push(Overload {
            service: "recommendations (Recommend)",
            offered: "h2load, 64 connections × 256 streams".to_owned(),
            seconds,
            accepted: ok,
            refused,
            probe,
            health: vec![("readiness", readiness), ("liveness", liveness)],
            peak_rss: vec![(target.server.name().to_owned(), peak)],
        });
        target.server.stop().await
    }

    /// Pages offered on 4,096 connections: four times the connection cap
    /// and eight times the requests allowed in flight.
    pub async fn overload_homepage(&mut self) -> anyhow::Result<()> {
        const SCENARIO: &str = "4. Homepage: 4,096 connections";
        let duration = Duration::from_secs(if self.quick { 3 } else { 10 });
        let upstream = self
            .start_recommendations("overload-pages-upstream", None)
            .await?;
        let market = self
            .start_marketplace("overload-pages", upstream.grpc)
            .await?;
        let load = HttpLoad {
            url: format!("http://{}/", market.web),
            duration,
            connections: 4096,
            threads: 1,
            cpus: None,
        };
        let http = service_kit::tls::http_client()?;
        let (outcome, [probe, readiness, liveness], seconds) = during(
            load::wrk(&load),
            page_call(
                &http,
                format!("http://{}/", market.web),
                Duration::from_secs(10),
            ),
            page_call(
                &http,
                format!("http://{}/readyz", market.admin),
                PROBE_TIMEOUT,
            ),
            page_call(
                &http,
                format!("http://{}/healthz", market.admin),
                PROBE_TIMEOUT,
            ),
        )
        .await;
        let outcome = outcome?;
        let metrics = scrape(market.admin).await?;
        let ok = prometheus::sum(
            &metrics,
            "http_server_request_duration_seconds_count",
            &[r#"http_route="/""#, r#"http_response_status_code="200""#],
        ) - probe.ok.len() as f64;
        let refused = outcome.non_2xx_3xx as f64;
        self.check(
            SCENARIO,
            refused > 0.0 && ok > 0.0,
            format!(
                "{ok:.0} pages OK, {refused:.0} refused with 503, {} socket errors (connections over the cap closed at once)",
                outcome.socket_errors
            ),
        );
        self.check_probes(
            SCENARIO,
            &[
                ("readiness (/readyz)", &readiness),
                ("liveness (/healthz)", &liveness),
            ],
        );
        let market_peak = self.check_memory(SCENARIO, &market.server)?;
        let upstream_peak = self.check_memory(SCENARIO, &upstream.server)?;
        self.overloads.push(Overload {
            service: "marketplace (homepage)",
            offered: "wrk, 4,096 connections".to_owned(),
            seconds,
            accepted: ok,
            refused,
            probe,
            health: vec![("readiness", readiness), ("liveness", liveness)],
            peak_rss: vec![
                (market.server.name().to_owned(), market_peak),
                (upstream.server.name().to_owned(), upstream_peak),
            ],
        });
        market.server.stop().await?;
        upstream.server.stop().await
    }
}
