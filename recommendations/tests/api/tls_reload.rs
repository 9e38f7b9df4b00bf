//! Certificates changed under the running binary: the kubelet's `..data`
//! swap and SIGHUP put new material in new handshakes; a bad change keeps
//! what is served, named in one error and counted; refused handshakes are
//! logged at WARN (a bounded number a second) and counted by reason; every
//! certificate's not-after time is a gauge.

use std::{path::Path, time::Duration};

use crate::helpers::{admin_metrics, terminate};
use service_kit::testing::{
    Pki, Process, ProjectedDir, Purpose,
    tls_probe::{der_of, presented_certificate, serial_of as serial},
};

/// The server's files in the kubelet's layout: `tls.crt`, `tls.key` and
/// the client CA `ca.crt`.
fn secret(cert: &str, key: &str, ca: &str) -> [(&'static str, String); 3] {
    [
        ("tls.crt", cert.to_owned()),
        ("tls.key", key.to_owned()),
        ("ca.crt", ca.to_owned()),
    ]
}

fn update(dir: &mut ProjectedDir, files: &[(&'static str, String)]) {
    let files: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    dir.update(&files);
}

fn projected(files: &[(&'static str, String)]) -> ProjectedDir {
    let files: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    ProjectedDir::new(&files)
}

/// The server on `dir`'s files, mutual TLS allowing `marketplace`,
/// checking its files every `reload_interval`.
fn start(dir: &ProjectedDir, reload_interval: &str) -> Process {
    let path = |name| dir.path(name).display().to_string();
    let mut process = Process::start(
        Path::new(env!("CARGO_BIN_EXE_recommendations")),
        &[
            "--listen=127.0.0.1:0",
            "--admin-listen=127.0.0.1:0",
            &format!("--tls-cert={}", path("tls.crt")),
            &format!("--tls-key={}", path("tls.key")),
            &format!("--tls-client-ca={}", path("ca.crt")),
            &format!("--reload-interval={reload_interval}"),
        ],
    );
    process.serving();
    process
}

fn grpc_addr(process: &Process) -> std::net::SocketAddr {
    process.listener("grpc").parse().expect("an address")
}

/// Waits, for at most 10 s, until /metrics contains `series`.
async fn until_metric(process: &Process, series: &str) -> String {
    let mut text = String::new();
    for _ in 0..200 {
        text = admin_metrics(process).await;
        if text.contains(series) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    text
}

/// The log events at `level`.
fn events(process: &Process, level: &str) -> Vec<serde_json::Value> {
    let log = process.log();
    log.into_iter()
        .filter(|event| event["level"] == level)
        .collect()
}

#[tokio::test]
async fn a_certificate_swapped_by_the_kubelet_is_presented_to_new_handshakes() {
    let pki = Pki::new();
    let client = pki.issue("marketplace", &[Purpose::ClientAuth]);
    let identity = Some((client.0.as_str(), client.1.as_str()));
    let (first, first_key) = pki.issue("localhost", &[Purpose::ServerAuth]);
    let mut dir = projected(&secret(&first, &first_key, &pki.ca_pem()));
    let process = start(&dir, "100ms");
    let addr = grpc_addr(&process);
    let ca = pki.ca_pem();
    assert_eq!(
        presented_certificate(addr, "localhost", &ca, identity).await,
        Ok(der_of(&first))
    );

    let (second, second_key) = pki.issue("localhost", &[Purpose::ServerAuth]);
    update(&mut dir, &secret(&second, &second_key, &pki.ca_pem()));

    let mut presented = Ok(Vec::new());
    for _ in 0..100 {
        presented = presented_certificate(addr, "localhost", &ca, identity).await;
        if presented == Ok(der_of(&second)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        presented,
        Ok(der_of(&second)),
        "the new certificate, no SIGHUP"
    );
    let text = admin_metrics(&process).await;
    let gauge = "recommendations_tls_certificate_not_after_timestamp_seconds";
    assert!(
        text.contains("role=\"server\"") && text.contains(&serial(&second)),
        "{text}"
    );
    assert!(
        !text.contains(&serial(&first)),
        "the old one is gone: {text}"
    );
    assert!(
        text.lines()
            .any(|line| line.starts_with(gauge) && line.contains("role=\"client_ca\"")),
        "{text}"
    );
    assert!(text.contains(r#"recommendations_last_reload_successful{source="tls"} 1"#));
    assert_eq!(terminate(process).await, Some(0));
}

#[tokio::test]
async fn a_bad_certificate_change_keeps_what_is_served_and_says_which_file_and_why() {
    let pki = Pki::new();
    let client = pki.issue("marketplace", &[Purpose::ClientAuth]);
    let identity = Some((client.0.as_str(), client.1.as_str()));
    let (good, good_key) = pki.issue("localhost", &[Purpose::ServerAuth]);
    let ca = pki.ca_pem();
    let mut dir = projected(&secret(&good, &good_key, &ca));
    // Files are checked only hourly: each reload is SIGHUP's.
    let mut process = start(&dir, "1h");
    let addr = grpc_addr(&process);
    let (other, _) = pki.issue("localhost", &[Purpose::ServerAuth]);
    let (expired, expired_key) = pki.issue_expired("localhost", &[Purpose::ServerAuth]);
    let bad_changes = [
        (
            secret("not a certificate", &good_key, &ca),
            "holds no PEM certificate",
        ),
        (secret(&other, &good_key, &ca), "cannot be used together"),
        (secret(&expired, &expired_key, &ca), "expired at 2020-01-01"),
        (secret(&good, &good_key, "no CA here"), "client CA file"),
    ];

    for (count, (files, problem)) in bad_changes.iter().enumerate() {
        update(&mut dir, files);
        process.hangup();
        let failed = format!(
            "recommendations_reload_failures_total{{source=\"tls\"}} {}",
            count + 1
        );
        let text = until_metric(&process, &failed).await;
        assert!(text.contains(&failed), "{problem}: {text}");
        assert!(text.contains(r#"recommendations_last_reload_successful{source="tls"} 0"#));
        let errors = events(&process, "ERROR");
        let cause = errors[count]["cause"].as_str().unwrap_or_default();
        assert!(
            cause.contains(problem) && cause.contains(dir.path("").to_str().unwrap_or("?")),
            "names the file and the problem ({problem}): {cause}"
        );
        assert_eq!(
            presented_certificate(addr, "localhost", &ca, identity).await,
            Ok(der_of(&good)),
            "still served after {problem}"
        );
    }
    // An unreadable file: the key's link points nowhere.
    std::fs::remove_file(dir.path("tls.key")).expect("removed");
    std::os::unix::fs::symlink("..data/missing.key", dir.path("tls.key")).expect("linked");
    process.hangup();
    let text = until_metric(&process, r#"failures_total{source="tls"} 5"#).await;
    assert!(text.contains(r#"failures_total{source="tls"} 5"#), "{text}");
    let errors = events(&process, "ERROR");
    let cause = errors[4]["cause"].as_str().unwrap_or_default();
    assert!(
        cause.contains("cannot read the TLS private key file"),
        "{cause}"
    );

    assert_eq!(errors.len(), 5, "one error per bad change");
    assert!(process.is_running());
    assert_eq!(terminate(process).await, Some(0));
}

#[tokio::test]
async fn refused_handshakes_are_counted_by_reason_and_logged_a_bounded_number_of_times() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("localhost", &[Purpose::ServerAuth]);
    let dir = projected(&secret(&cert, &key, &pki.ca_pem()));
    let process = start(&dir, "1h");
    let addr = grpc_addr(&process);
    let ca = pki.ca_pem();
    let stranger = Pki::new().issue("marketplace", &[Purpose::ClientAuth]);
    let wrong_name = pki.issue("someone-else", &[Purpose::ClientAuth]);

    let unknown = presented_certificate(addr, "localhost", &ca, Some((&stranger.0, &stranger.1)));
    assert!(unknown.await.is_err(), "a client of another CA is refused");
    let named = presented_certificate(addr, "localhost", &ca, Some((&wrong_name.0, &wrong_name.1)));
    assert!(named.await.is_err(), "a name not allowed is refused");
    let anonymous = presented_certificate(addr, "localhost", &ca, None);
    assert!(anonymous.await.is_err(), "no certificate is refused");
    // A flood of refused clients.
    for _ in 0..30 {
        let refused =
            presented_certificate(addr, "localhost", &ca, Some((&stranger.0, &stranger.1)));
        assert!(refused.await.is_err());
    }

    let counted = r#"recommendations_tls_handshake_refusals_total{reason="unknown_ca"} 31"#;
    let text = until_metric(&process, counted).await;
    assert!(text.contains(counted), "{text}");
    assert!(
        text.contains(r#"refusals_total{reason="name_not_allowed"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"refusals_total{reason="no_client_certificate"} 1"#),
        "{text}"
    );
    // The 33 handshakes take well under a second; they may straddle two.
    let warnings = events(&process, "WARN");
    let budget = service_kit::tls::LOG_LINES_PER_SECOND as usize;
    assert!(
        (budget..=2 * budget).contains(&warnings.len()),
        "a flood is not logged whole: {warnings:?}"
    );
    let first = &warnings[0];
    assert_eq!(first["reason"], "unknown_ca", "{first}");
    assert!(
        first["peer"]
            .as_str()
            .is_some_and(|peer| peer.starts_with("127.0.0.1:")),
        "{first}"
    );
    assert_eq!(warnings[1]["reason"], "name_not_allowed");
    assert_eq!(terminate(process).await, Some(0));
}
