//! The results page, docs/benchmarks/siege.md.

use super::*;

impl Siege {
    pub fn report(&self) -> String {
        let mut text = String::from("# Siege: attacks and overload\n\n");
        let _ = writeln!(
            text,
            "Written by `target/release/siege{}` (`bench/src/bin/siege.rs`): the release binaries at \
             their production defaults, a fresh process per scenario, peak RSS is VmHWM. The attacks \
             and limits are described in [docs/limits.md](../limits.md).{}\n",
            if self.quick { " --quick" } else { "" },
            if self.quick {
                " A quick run: latency bounds are reported, not enforced."
            } else {
                ""
            }
        );
        text.push_str("## Overload\n\n");
        text.push_str(
            "| Service | Offered | Accepted/s | Refused/s | Probe: OK, OK p99 | Health probes: p99, slowest | Peak RSS |\n\
             | --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for o in &self.overloads {
            let rss: Vec<String> = o
                .peak_rss
                .iter()
                .map(|(name, peak)| format!("{name} {}", mib(*peak)))
                .collect();
            let health: Vec<String> = o
                .health
                .iter()
                .map(|(name, tally)| {
                    format!("{name} {}, {}", p99(tally), micros(tally.max_us() as f64))
                })
                .collect();
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} | {:.1} % of {}, {} | {} | {} |",
                o.service,
                o.offered,
                thousands(o.accepted / o.seconds),
                thousands(o.refused / o.seconds),
                o.probe.ok_ratio() * 100.0,
                o.probe.calls(),
                p99(&o.probe),
                health.join("; "),
                rss.join(", ")
            );
        }
        text.push_str(
            "\nThe probe is one client on a connection of its own making calls back to back; it is \
             shed like any other client when the service is full. The health probes ask every \
             10 ms, as kubernetes.yaml's probes do (readiness: gRPC `Health/Check` or `/readyz`; \
             liveness: the admin `/healthz`), and count as failed past the kubelet's 1 s timeout.\n\n",
        );
        text.push_str("## Bounds\n\n| Scenario | Bound | Held |\n| --- | --- | --- |\n");
        for check in &self.checks {
            let held = match (check.held, check.failed()) {
                (true, _) => "yes",
                (false, false) => "no (latency, not enforced on a quick run)",
                (false, true) => "**no**",
            };
            let _ = writeln!(text, "| {} | {} | {held} |", check.scenario, check.what);
        }
        text
    }
}
