//! Certificates rotated under both running binaries, under load, the way a
//! CA is rotated: both sides trust the old and the new CA, the leaves move
//! to the new CA, then both trust the new CA alone. Recommendations sees
//! its files change on disk (the kubelet's `..data` swap); the marketplace
//! reloads on SIGHUP. Connections live one second, so new handshakes keep
//! coming with whatever material is current. No page degrades.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use service_kit::testing::{Pki, Process, ProjectedDir, Purpose, tls_probe::serial_of};

use crate::{end_to_end::recommendations_binary, helpers::metric_value};

const UNAVAILABLE: &str = "Recommendations are unavailable right now.";

/// The files of one side, as a kubelet-mounted Secret: `tls.crt`,
/// `tls.key`, and the CA bundle `ca.crt`.
fn secret(leaf: &(String, String), cas: &[&Pki]) -> Vec<(&'static str, String)> {
    let bundle: String = cas.iter().map(|ca| ca.ca_pem()).collect();
    vec![
        ("tls.crt", leaf.0.clone()),
        ("tls.key", leaf.1.clone()),
        ("ca.crt", bundle),
    ]
}

fn update(dir: &mut ProjectedDir, files: &[(&'static str, String)]) {
    let files: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    dir.update(&files);
}

fn path(dir: &ProjectedDir, name: &str) -> String {
    dir.path(name).display().to_string()
}

async fn metrics(admin: &str) -> String {
    service_kit::testing::http_get(format!("http://{admin}/metrics"))
        .await
        .expect("answers")
        .text()
        .await
        .expect("a body")
}

/// Waits, for at most 10 s, until `admin`'s /metrics satisfies `ready`.
async fn until(admin: &str, ready: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    for _ in 0..200 {
        text = metrics(admin).await;
        if ready(&text) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    text
}

/// Pages fetched by 8 loops until `stop`: (pages, pages not full).
fn load(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, Vec<String>)> {
    tokio::spawn(async move {
        let pages = Arc::new(AtomicU64::new(0));
        let loops = (0..8).map(|_| {
            let (url, stop, pages) = (url.clone(), stop.clone(), pages.clone());
            tokio::spawn(async move {
                let client = service_kit::tls::http_client().expect("an HTTP client");
                let mut bad = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(response) if response.status() == 200 => {
                            let html = response.text().await.unwrap_or_default();
                            if html.contains(UNAVAILABLE) || html.matches("<li>").count() != 3 {
                                bad.push("a degraded page".to_owned());
                            }
                        }
                        Ok(response) => bad.push(format!("status {}", response.status())),
                        Err(err) => bad.push(err.to_string()),
                    }
                    pages.fetch_add(1, Ordering::Relaxed);
                }
                bad
            })
        });
        let mut bad = Vec::new();
        for one in loops.collect::<Vec<_>>() {
            bad.extend(one.await.expect("no panic"));
        }
        (pages.load(Ordering::Relaxed), bad)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rotation_under_load_fails_no_page() {
    let (old, new) = (Pki::new(), Pki::new());
    let server_leaf = |ca: &Pki| ca.issue("recommendations", &[Purpose::ServerAuth]);
    let client_leaf = |ca: &Pki| ca.issue("marketplace", &[Purpose::ClientAuth]);
    let (old_server, old_client) = (server_leaf(&old), client_leaf(&old));
    let mut server_dir = ProjectedDir::new(&[]);
    update(&mut server_dir, &secret(&old_server, &[&old]));
    let mut client_dir = ProjectedDir::new(&[]);
    update(&mut client_dir, &secret(&old_client, &[&old]));

    let pair = Pair::start(&server_dir, &client_dir);
    let (marketplace, recommendations) = (pair.marketplace, pair.recommendations);
    let (url, server_admin, client_admin) = (pair.url, pair.server_admin, pair.client_admin);
    let stop = Arc::new(AtomicBool::new(false));
    let pages = load(url, stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1. Both sides trust the old and the new CA.
    update(&mut server_dir, &secret(&old_server, &[&old, &new]));
    update(&mut client_dir, &secret(&old_client, &[&old, &new]));
    marketplace.hangup();
    let new_ca = serial_of(&new.ca_pem());
    let text = until(&server_admin, |text| text.contains(&new_ca)).await;
    assert!(
        text.contains(&new_ca),
        "the server trusts the new CA: {text}"
    );
    let text = until(&client_admin, |text| text.contains(&new_ca)).await;
    assert!(
        text.contains(&new_ca),
        "the client trusts the new CA: {text}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 2. The leaves move to the new CA.
    let (new_server, new_client) = (server_leaf(&new), client_leaf(&new));
    update(&mut server_dir, &secret(&new_server, &[&old, &new]));
    update(&mut client_dir, &secret(&new_client, &[&old, &new]));
    marketplace.hangup();
    let serial = serial_of(&new_server.0);
    assert!(
        until(&server_admin, |text| text.contains(&serial))
            .await
            .contains(&serial)
    );
    let serial = serial_of(&new_client.0);
    assert!(
        until(&client_admin, |text| text.contains(&serial))
            .await
            .contains(&serial)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 3. Both sides trust the new CA alone.
    update(&mut server_dir, &secret(&new_server, &[&new]));
    update(&mut client_dir, &secret(&new_client, &[&new]));
    marketplace.hangup();
    let old_ca = serial_of(&old.ca_pem());
    assert!(
        !until(&server_admin, |text| !text.contains(&old_ca))
            .await
            .contains(&old_ca)
    );
    assert!(
        !until(&client_admin, |text| !text.contains(&old_ca))
            .await
            .contains(&old_ca)
    );
    // Long enough for every connection made before to reach its age.
    tokio::time::sleep(Duration::from_secs(3)).await;

    stop.store(true, Ordering::Relaxed);
    let (count, bad) = pages.await.expect("no panic");
    assert!(count > 100, "the load ran: {count} pages");
    assert!(
        bad.is_empty(),
        "{} of {count} pages failed: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    // The marketplace's connections now are new ones, made with the new
    // client certificate, which is all the server now trusts.
    let server_text = metrics(&server_admin).await;
    let failures = r#"recommendations_reload_failures_total{source="tls"}"#;
    assert_eq!(metric_value(&server_text, failures), None, "{server_text}");
    let client_text = metrics(&client_admin).await;
    assert!(
        client_text.contains(r#"marketplace_last_reload_successful{source="tls"} 1"#),
        "{client_text}"
    );
    let refused = server_text
        .lines()
        .filter(|line| line.starts_with("recommendations_tls_handshake_refusals_total"))
        .collect::<Vec<_>>();
    assert!(refused.is_empty(), "no handshake refused: {refused:?}");
    stop_both(marketplace, recommendations).await;
}

/// Both binaries, recommendations on `server_dir`'s files (checked every
/// 100 ms, connections living 1 s), the marketplace on `client_dir`'s
/// (reloaded on SIGHUP only, unless it is told to check them).
struct Pair {
    recommendations: Process,
    marketplace: Process,
    url: String,
    server_admin: String,
    client_admin: String,
}

impl Pair {
    fn start(server_dir: &ProjectedDir, client_dir: &ProjectedDir) -> Self {
        Self::start_checking(server_dir, client_dir, "1h")
    }

    /// [`Pair::start`], the marketplace checking its files every `interval`.
    fn start_checking(
        server_dir: &ProjectedDir,
        client_dir: &ProjectedDir,
        interval: &str,
    ) -> Self {
        let mut recommendations = Process::start(
            &recommendations_binary(),
            &[
                "--listen=127.0.0.1:0",
                "--admin-listen=127.0.0.1:0",
                &format!("--tls-cert={}", path(server_dir, "tls.crt")),
                &format!("--tls-key={}", path(server_dir, "tls.key")),
                &format!("--tls-client-ca={}", path(server_dir, "ca.crt")),
                "--reload-interval=100ms",
                "--max-connection-age=1s",
                "--max-connection-age-grace=5s",
            ],
        );
        let serving = recommendations.serving();
        let grpc = Process::address(&serving, "grpc");
        let server_admin = Process::address(&serving, "admin");
        let (host, port) = grpc.rsplit_once(':').expect("host:port");
        let mut marketplace = Process::start(
            &PathBuf::from(env!("CARGO_BIN_EXE_marketplace")),
            &[
                "--listen=127.0.0.1:0",
                "--admin-listen=127.0.0.1:0",
                &format!("--recommendations-host={host}"),
                &format!("--recommendations-port={port}"),
                "--recommendations-tls-domain=recommendations",
                &format!("--recommendations-tls-ca={}", path(client_dir, "ca.crt")),
                &format!(
                    "--recommendations-tls-client-cert={}",
                    path(client_dir, "tls.crt")
                ),
                &format!(
                    "--recommendations-tls-client-key={}",
                    path(client_dir, "tls.key")
                ),
                &format!("--reload-interval={interval}"),
            ],
        );
        let serving = marketplace.serving();
        let url = format!("http://{}/", Process::address(&serving, "http"));
        let client_admin = Process::address(&serving, "admin");
        Self {
            recommendations,
            marketplace,
            url,
            server_admin,
            client_admin,
        }
    }
}

#[tokio::test]
async fn a_bad_client_certificate_change_keeps_what_the_marketplace_presents() {
    let pki = Pki::new();
    let server = pki.issue("recommendations", &[Purpose::ServerAuth]);
    let client = pki.issue("marketplace", &[Purpose::ClientAuth]);
    let mut server_dir = ProjectedDir::new(&[]);
    update(&mut server_dir, &secret(&server, &[&pki]));
    let mut client_dir = ProjectedDir::new(&[]);
    update(&mut client_dir, &secret(&client, &[&pki]));
    let pair = Pair::start(&server_dir, &client_dir);
    let gauge = "marketplace_tls_certificate_not_after_timestamp_seconds";
    let text = metrics(&pair.client_admin).await;
    for role in ["client", "ca"] {
        assert!(
            text.lines()
                .any(|line| line.starts_with(gauge) && line.contains(&format!("role=\"{role}\""))),
            "{role}: {text}"
        );
    }

    let other_key = pki.issue("marketplace", &[Purpose::ClientAuth]).1;
    update(
        &mut client_dir,
        &secret(&(client.0.clone(), other_key), &[&pki]),
    );
    pair.marketplace.hangup();

    let failed = r#"marketplace_reload_failures_total{source="tls"} 1"#;
    let text = until(&pair.client_admin, |text| text.contains(failed)).await;
    assert!(text.contains(failed), "{text}");
    let errors: Vec<String> = pair
        .marketplace
        .log()
        .iter()
        .filter(|event| event["level"] == "ERROR")
        .map(|event| event["cause"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("tls.crt") && errors[0].contains("do not go together"),
        "{errors:?}"
    );
    // Connections live a second: pages after two are on new handshakes,
    // made with the certificate kept.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..5 {
        assert_eq!(books_on_page(&pair.url).await, 3);
    }
    stop_both(pair.marketplace, pair.recommendations).await;
}

#[tokio::test]
async fn a_client_certificate_swapped_by_the_kubelet_is_presented_without_a_signal() {
    let pki = Pki::new();
    let server = pki.issue("recommendations", &[Purpose::ServerAuth]);
    let mut server_dir = ProjectedDir::new(&[]);
    update(&mut server_dir, &secret(&server, &[&pki]));
    let mut client_dir = ProjectedDir::new(&[]);
    update(
        &mut client_dir,
        &secret(&pki.issue("marketplace", &[Purpose::ClientAuth]), &[&pki]),
    );
    let pair = Pair::start_checking(&server_dir, &client_dir, "100ms");

    let renewed = pki.issue("marketplace", &[Purpose::ClientAuth]);
    update(&mut client_dir, &secret(&renewed, &[&pki]));

    let serial = serial_of(&renewed.0);
    let text = until(&pair.client_admin, |text| text.contains(&serial)).await;
    assert!(
        text.contains(&serial),
        "the renewed certificate is in use: {text}"
    );
    assert!(text.contains(r#"marketplace_last_reload_successful{source="tls"} 1"#));
    // Connections live a second: pages after two are on new handshakes,
    // which the server takes with the renewed certificate.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(books_on_page(&pair.url).await, 3);
    stop_both(pair.marketplace, pair.recommendations).await;
}

/// The books on the page at `url`.
async fn books_on_page(url: &str) -> usize {
    let html = service_kit::testing::http_get(url)
        .await
        .expect("answers")
        .text()
        .await
        .expect("HTML");
    html.matches("<li>").count()
}

async fn stop_both(marketplace: Process, recommendations: Process) {
    let stopped =
        tokio::task::spawn_blocking(move || (marketplace.terminate(), recommendations.terminate()));
    assert_eq!(stopped.await.expect("no panic"), (Some(0), Some(0)));
}
