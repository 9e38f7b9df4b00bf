//! Reading counters out of the Prometheus text format, to check what the
//! servers themselves counted during a run.

/// The sum of every sample of `name` whose labels include all of `labels`
/// (given as `key="value"` pairs). Zero when there is none.
pub fn sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_set) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let matches = metric == name
                && labels
                    .iter()
                    .all(|wanted| label_set.split(',').any(|label| label == *wanted));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP grpc_server_requests Calls.
# TYPE grpc_server_requests counter
grpc_server_requests_total{method="/a.B/Recommend",code="OK"} 100
grpc_server_requests_total{method="/a.B/Recommend",code="NOT_FOUND"} 2
grpc_server_requests_total{method="/a.B/List",code="OK"} 7
marketplace_degraded_pages_total{page="home"} 3
up 1
"#;

    #[test]
    fn sums_the_samples_whose_labels_match() {
        let ok = sum(TEXT, "grpc_server_requests_total", &[r#"code="OK""#]);
        let recommend = sum(
            TEXT,
            "grpc_server_requests_total",
            &[r#"method="/a.B/Recommend""#],
        );

        assert_eq!(ok, 107.0);
        assert_eq!(recommend, 102.0);
        assert_eq!(sum(TEXT, "up", &[]), 1.0);
    }

    #[test]
    fn a_missing_series_counts_zero() {
        assert_eq!(
            sum(TEXT, "grpc_server_requests_total", &[r#"code="INTERNAL""#]),
            0.0
        );
        assert_eq!(sum(TEXT, "grpc_server_requests", &[]), 0.0);
    }
}
