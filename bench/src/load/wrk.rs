//! wrk: HTTP/1.1 pages for a fixed time, with its report parsed.

use std::time::Duration;

use anyhow::{Context, bail};

use super::Latency;
use crate::process::pinned;

/// HTTP load by wrk for a fixed time.
#[derive(Clone, Debug)]
pub struct HttpLoad {
    /// The page.
    pub url: String,
    /// How long to run.
    pub duration: Duration,
    /// Open connections.
    pub connections: u32,
    /// wrk threads.
    pub threads: u32,
    /// The CPUs wrk runs on (see [`crate::process::pinned`]).
    pub cpus: Option<String>,
}

/// What wrk saw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HttpOutcome {
    /// Responses per second.
    pub rate: f64,
    /// Responses received.
    pub requests: u64,
    /// From `--latency`.
    pub latency: Latency,
    /// Responses whose status was not 2xx or 3xx.
    pub non_2xx_3xx: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
}

/// Runs wrk; fails if it does not run or reports nothing.
pub async fn wrk(load: &HttpLoad) -> anyhow::Result<HttpOutcome> {
    let output = pinned("wrk", load.cpus.as_deref())
        .args(["-t", &load.threads.to_string()])
        .args(["-c", &load.connections.to_string()])
        .args(["-d", &format!("{}s", load.duration.as_secs().max(1))])
        .arg("--latency")
        .arg(&load.url)
        .output()
        .await
        .context("cannot run wrk; install it with `apt-get install wrk`")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk against {} failed ({}):\n{stdout}",
            load.url,
            output.status
        );
    }
    parse_wrk(&stdout)
        .with_context(|| format!("wrk against {} gave no summary:\n{stdout}", load.url))
}

/// Parses wrk's report, run with `--latency`.
pub fn parse_wrk(stdout: &str) -> Option<HttpOutcome> {
    let lines = || stdout.lines().map(str::trim);
    let percentile = |label: &str| {
        lines()
            .find_map(|line| line.strip_prefix(label))
            .and_then(|value| micros(value.trim()))
    };
    let requests = lines()
        .find(|line| line.contains(" requests in "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let rate = lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let non_2xx_3xx = match lines().find_map(|line| line.strip_prefix("Non-2xx or 3xx responses:"))
    {
        Some(count) => count.trim().parse().ok()?,
        None => 0,
    };
    // "Socket errors: connect 0, read 0, write 0, timeout 0", when any.
    let socket_errors = match lines().find_map(|line| line.strip_prefix("Socket errors:")) {
        Some(errors) => errors
            .split(',')
            .map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<Option<u64>>()?,
        None => 0,
    };
    Some(HttpOutcome {
        rate,
        requests,
        latency: Latency {
            p50_us: percentile("50%")?,
            p99_us: percentile("99%")?,
        },
        non_2xx_3xx,
        socket_errors,
    })
}

/// A wrk duration (`584.00us`, `2.13ms`, `1.02s`, `1.50m`) in microseconds.
fn micros(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        _ => return None,
    };
    Some(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "\
Running 10s test @ http://127.0.0.1:5000/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.31ms    1.07ms  20.06ms   75.96%
    Req/Sec    13.96k     1.02k   16.22k    71.50%
  Latency Distribution
     50%  584.00us
     75%    2.77ms
     90%    3.54ms
     99%    1.02s
  277895 requests in 10.01s, 862.13MB read
  Socket errors: connect 0, read 2, write 0, timeout 5
  Non-2xx or 3xx responses: 12
Requests/sec:  27763.19
Transfer/sec:     86.13MB
";

    #[test]
    fn wrk_report_is_parsed() {
        let outcome = parse_wrk(WRK).expect("a report");

        assert_eq!(
            outcome,
            HttpOutcome {
                rate: 27763.19,
                requests: 277895,
                latency: Latency {
                    p50_us: 584.0,
                    p99_us: 1.02e6
                },
                non_2xx_3xx: 12,
                socket_errors: 7,
            }
        );
    }

    #[test]
    fn a_clean_wrk_report_has_no_errors() {
        let clean: String = WRK
            .lines()
            .filter(|line| !line.contains("errors") && !line.contains("Non-2xx"))
            .map(|line| format!("{line}\n"))
            .collect();

        let outcome = parse_wrk(&clean).expect("a report");

        assert_eq!((outcome.non_2xx_3xx, outcome.socket_errors), (0, 0));
        assert_eq!(parse_wrk("unable to connect to 127.0.0.1:5000\n"), None);
    }
}
