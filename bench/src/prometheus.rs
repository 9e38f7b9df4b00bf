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

    const TEXT: &str = r#"# HELP rpc_server_call_duration_seconds Calls.
# TYPE rpc_server_call_duration_seconds histogram
rpc_server_call_duration_seconds_count{rpc_method="a.B/Recommend",rpc_response_status_code="OK"} 100
rpc_server_call_duration_seconds_count{rpc_method="a.B/Recommend",rpc_response_status_code="NOT_FOUND"} 2
rpc_server_call_duration_seconds_count{rpc_method="a.B/List",rpc_response_status_code="OK"} 7
marketplace_degraded_pages_total{page="home"} 3
up 1
"#;

    #[test]
    fn sums_the_samples_whose_labels_match() {
        let ok = sum(
            TEXT,
            "rpc_server_call_duration_seconds_count",
            &[r#"rpc_response_status_code="OK""#],
        );
        let recommend = sum(
            TEXT,
            "rpc_server_call_duration_seconds_count",
            &[r#"rpc_method="a.B/Recommend""#],
        );

        assert_eq!(ok, 107.0);
        assert_eq!(recommend, 102.0);
        assert_eq!(sum(TEXT, "up", &[]), 1.0);
    }

    #[test]
    fn a_missing_series_counts_zero() {
        assert_eq!(
            sum(
                TEXT,
                "rpc_server_call_duration_seconds_count",
                &[r#"rpc_response_status_code="INTERNAL""#]
            ),
            0.0
        );
        assert_eq!(sum(TEXT, "rpc_server_call_duration_seconds", &[]), 0.0);
    }
}
