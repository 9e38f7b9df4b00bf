//! The attacks of docs/limits.md, one scenario each: held calls, a zero
//! flow-control window, oversized messages, a reset flood, slowloris,
//! stalled TLS handshakes and idle connections.

use super::*;

impl Siege {
    /// Attack 1: one connection opens 1,040 calls and never sends their
    /// messages, to take every call slot.
    pub async fn held_calls(&mut self) -> anyhow::Result<()> {
        self.one_connection_floods(
            "1. one connection holds 1,040 calls open",
            "held-calls",
            1040,
            Flood::HoldMessages,
        )
        .await
    }

    /// Attack 2: one connection opens 20,000 calls with a zero flow-control
    /// window, so that no response can be sent. Past its share of streams
    /// they are refused, and past GrpcLimits::MAX_LOCAL_ERROR_RESETS
    /// refusals the connection is closed.
    pub async fn zero_window(&mut self) -> anyhow::Result<()> {
        self.one_connection_floods(
            "2. one connection opens 20,000 calls and reads nothing",
            "zero-window",
            20_000,
            Flood::ReadNothing,
        )
        .await
    }

    /// One connection opens `calls` Recommend calls at once, as `flood`
    /// says; all but the stream share must be refused (or, for a flood that
    /// goes on past the bound on refusals, the connection closed with
    /// ENHANCE_YOUR_CALM), and a client on another connection served.
    async fn one_connection_floods(
        &mut self,
        scenario: &'static str,
        name: &str,
        calls: usize,
        flood: Flood,
    ) -> anyhow::Result<()> {
        let target = self.start_recommendations(name, None).await?;
        let mut attacker = match flood {
            Flood::HoldMessages => RawH2::connect(target.grpc, &[]).await?,
            Flood::ReadNothing => RawH2::connect_with_zero_window(target.grpc).await?,
        };
        for _ in 0..calls {
            let stream = attacker.open_call(RECOMMEND);
            if flood == Flood::ReadNothing {
                attacker.send_message(stream, MESSAGE.len() as u32, &MESSAGE, true);
            }
        }
        let refused = calls - MAX_CONCURRENT_STREAMS;
        match flood {
            Flood::HoldMessages => {
                attacker.flush().await?;
                let seen = attacker
                    .read_until(Duration::from_secs(10), |seen| {
                        seen.resets_with(REFUSED_STREAM) >= refused
                    })
                    .await;
                self.check(
                    scenario,
                    seen.resets_with(REFUSED_STREAM) == refused,
                    format!(
                        "{} of {calls} streams refused (REFUSED_STREAM), {MAX_CONCURRENT_STREAMS} admitted",
                        seen.resets_with(REFUSED_STREAM)
                    ),
                );
            }
            Flood::ReadNothing => {
                // The server closes the connection before it has read it all.
                let _ = attacker.flush().await;
                let seen = attacker
                    .read_until(Duration::from_secs(10), |seen| seen.closed)
                    .await;
                self.check(
                    scenario,
                    seen.goaway == Some(ENHANCE_YOUR_CALM),
                    format!(
                        "closed with GOAWAY {:?} (ENHANCE_YOUR_CALM is 11) after {} streams refused (REFUSED_STREAM)",
                        seen.goaway,
                        seen.resets_with(REFUSED_STREAM)
                    ),
                );
            }
        }
        let (probe, health) = well_behaved_grpc(target.grpc).await;
        self.check_fairness(scenario, &probe, &health);
        self.check_memory(scenario, &target.server)?;
        drop(attacker);
        target.server.stop().await
    }

    /// Attack 3: 24 health calls whose messages declare 4 MiB, half sent.
    pub async fn oversized_messages(&mut self) -> anyhow::Result<()> {
        const SCENARIO: &str = "3. 24 health messages declared 4 MiB, half sent";
        const CALLS: usize = 24;
        let target = self.start_recommendations("oversized", None).await?;
        let (statuses, (calls, health)) = tokio::join!(
            attack::half_sent_messages(target.grpc, HEALTH_CHECK, CALLS, 4 << 20, 60 * 1024),
            well_behaved_grpc(target.grpc),
        );
        let statuses = statuses?;
        // RESOURCE_EXHAUSTED is 8.
        let refused = statuses
            .iter()
            .filter(|s| s.as_deref() == Some("8"))
            .count();
        self.check(
            SCENARIO,
            refused == CALLS,
            format!("{refused} of {CALLS} ended RESOURCE_EXHAUSTED from the prefix"),
        );
        self.check_fairness(SCENARIO, &calls, &health);
        self.check_memory(SCENARIO, &target.server)?;
        target.server.stop().await
    }

    /// Rapid Reset (CVE-2023-44487): 1,000 × HEADERS + RST_STREAM.
    pub async fn reset_flood(&mut self) -> anyhow::Result<()> {
        const SCENARIO: &str = "Rapid Reset: 1,000 streams opened and reset";
        let target = self.start_recommendations("reset-flood", None).await?;
        let mut attacker = RawH2::connect(target.grpc, &[]).await?;
        for _ in 0..1000 {
            let stream = attacker.open_call(RECOMMEND);
            attacker.reset(stream);
        }
        attacker.flush().await?;
        let seen = attacker
            .read_until(Duration::from_secs(10), |seen| seen.goaway.is_some())
            .await;
        let (calls, health) = well_behaved_grpc(target.grpc).await;
        self.check(
            SCENARIO,
            seen.goaway == Some(ENHANCE_YOUR_CALM),
            format!("GOAWAY {:?} (ENHANCE_YOUR_CALM is 11)", seen.goaway),
        );
        self.check_fairness(SCENARIO, &calls, &health);
        self.check_memory(SCENARIO, &target.server)?;
        target.server.stop().await
    }

    /// Attack 5: 1,000 slowloris connections on each HTTP listener.
    pub async fn slowloris(&mut self) -> anyhow::Result<()> {
        const SCENARIO: &str = "5. slowloris: 1,000 connections per HTTP listener";
        const CONNECTIONS: usize = 1000;
        let upstream = self
            .start_recommendations("slowloris-upstream", None)
            .await?;
        let market = self.start_marketplace("slowloris", upstream.grpc).await?;
        let hold = |addr, timeout: Duration| {
            attack::hold_open(
                addr,
                CONNECTIONS,
                b"GET / HTTP/1.1\r\nHo",
                b"s",
                Duration::from_secs(1),
                timeout + SLACK,
            )
        };
        let (web, market_admin, upstream_admin, pages) = tokio::join!(
            hold(market.web, HEADER_READ_TIMEOUT),
            hold(market.admin, ADMIN_HEADER_READ_TIMEOUT),
            hold(upstream.admin, ADMIN_HEADER_READ_TIMEOUT),
            well_behaved_pages(market.web, 200),
        );
        for (listener, closures, timeout) in [
            ("marketplace web", web, HEADER_READ_TIMEOUT),
            ("marketplace admin", market_admin, ADMIN_HEADER_READ_TIMEOUT),
            (
                "recommendations admin",
                upstream_admin,
                ADMIN_HEADER_READ_TIMEOUT,
            ),
        ] {
            self.check_closures(SCENARIO, listener, closures, timeout);
        }
        self.check(
            SCENARIO,
            pages.ok_ratio() >= MIN_FAIR_SHARE,
            format!(
                "pages meanwhile: {} of {} OK, p99 {}",
                pages.ok.len(),
                pages.calls(),
                p99(&pages)
            ),
        );
        self.check_memory(SCENARIO, &market.server)?;
        self.check_memory(SCENARIO, &upstream.server)?;
        market.server.stop().await?;
        upstream.server.stop().await
    }

    /// Attack 6: 2,000 TLS handshakes that stall after a record header.
    pub async fn stalled_handshakes(&mut self) -> anyhow::Result<()> {
        const SCENARIO: &str = "6. 2,000 stalled TLS handshakes";
        const CONNECTIONS: usize = 2000;
        let pki = Pki::new();
        let target = self
            .start_recommendations("stalled-tls", Some(&pki))
            .await?;
        let files_before = target.server.open_files()?;
        let closures = attack::hold_open(
            target.grpc,
            CONNECTIONS,
            TLS_RECORD_HEADER,
            b"",
            Duration::from_secs(1),
            HANDSHAKE_TIMEOUT + SLACK,
        )
        .await;
        self.check_closures(
            SCENARIO,
            "recommendations gRPC (TLS)",
            closures,
            HANDSHAKE_TIMEOUT,
        );
        let files_after = target.server.open_files()?;
        self.check(
            SCENARIO,
            files_after <= files_before + 4,
            format!("open files {files_before} before, {files_after} after"),
        );
        self.check_memory(SCENARIO, &target.server)?;
        target.server.stop().await
    }

    /// Attack 7: 10,000 idle connections to each service.
    pub async fn idle_connections(&mut self) -> anyhow::Result<()> {
        const SCENARIO: &str = "7. 10,000 idle connections to each service";
        const CONNECTIONS: usize = 10_000;
        let upstream = self.start_recommendations("idle-upstream", None).await?;
        let market = self.start_marketplace("idle", upstream.grpc).await?;

        let pages = attack::idle(market.web, CONNECTIONS, HOMEPAGE_REQUEST, true).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let open = attack::still_open(&pages);
        self.check(
            SCENARIO,
            open <= HTTP_MAX_CONNECTIONS,
            format!(
                "marketplace: {open} of {CONNECTIONS} idle connections held (cap {HTTP_MAX_CONNECTIONS}), the rest closed at once"
            ),
        );
        drop(pages);

        let calls = attack::idle(upstream.grpc, CONNECTIONS, H2_PREFACE, false).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let open = attack::still_open(&calls);
        self.check(
            SCENARIO,
            open <= GRPC_MAX_CONNECTIONS,
            format!(
                "recommendations: {open} of {CONNECTIONS} idle connections held (cap {GRPC_MAX_CONNECTIONS}), the rest closed at once"
            ),
        );
        drop(calls);

        self.check_memory(SCENARIO, &market.server)?;
        self.check_memory(SCENARIO, &upstream.server)?;
        market.server.stop().await?;
        upstream.server.stop().await
    }
}
