//! TLS and mutual TLS over real sockets, with certificates made here (rcgen)
//! and never committed.

use std::time::Duration;

use protobufs::v1::{self, recommendations_service_client::RecommendationsServiceClient};
use recommendations::{Application, Settings};
use service_kit::testing::{Pki, Purpose};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::helpers::{TestApp, spawn_app_with};

/// Settings serving TLS with a server certificate for localhost, and with
/// mutual TLS against the CA when `mutual` (allowing the default client
/// name, `marketplace`).
fn server_settings(pki: &Pki, mutual: bool) -> Settings {
    let (cert, key) = pki.issue_files("localhost", &[Purpose::ServerAuth]);
    Settings {
        tls_cert: Some(cert),
        tls_key: Some(key),
        tls_client_ca: mutual.then(|| pki.ca_file()),
        ..Settings::for_tests()
    }
}

fn client_identity(pki: &Pki) -> Identity {
    let (cert, key) = pki.issue("marketplace", &[Purpose::ClientAuth]);
    Identity::from_pem(cert, key)
}

/// A v1 call over TLS to `app`, trusting `ca`, presenting `identity`.
async fn call(app: &TestApp, ca: &str, identity: Option<Identity>) -> Result<usize, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    let endpoint = Endpoint::from_shared(format!("https://{}", app.addr))
        .and_then(|e| e.tls_config(tls))
        .map_err(|e| e.to_string())?
        .timeout(Duration::from_secs(10));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let request = v1::RecommendRequest {
        user_id: 1,
        category: v1::Category::Mystery as i32,
        max_results: 3,
    };
    RecommendationsServiceClient::new(channel)
        .recommend(request)
        .await
        .map(|r| r.into_inner().books.len())
        .map_err(|status| format!("{status:?}"))
}

#[tokio::test]
async fn a_client_trusting_the_ca_gets_books_over_tls() {
    let pki = Pki::new();
    let app = spawn_app_with(server_settings(&pki, false)).await;

    assert_eq!(call(&app, &pki.ca_pem(), None).await, Ok(3));
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_rejected() {
    let pki = Pki::new();
    let app = spawn_app_with(server_settings(&pki, false)).await;

    let result = call(&app, &Pki::new().ca_pem(), None).await;

    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn a_plaintext_client_against_the_tls_server_fails_cleanly() {
    let pki = Pki::new();
    let app = spawn_app_with(server_settings(&pki, false)).await;

    let request = v1::RecommendRequest {
        user_id: 1,
        category: 1,
        max_results: 3,
    };
    let result = tokio::time::timeout(Duration::from_secs(30), app.v1().recommend(request))
        .await
        .expect("the call ends instead of hanging");

    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn with_mutual_tls_a_client_without_a_certificate_is_rejected() {
    let pki = Pki::new();
    let app = spawn_app_with(server_settings(&pki, true)).await;

    let result = call(&app, &pki.ca_pem(), None).await;

    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn with_mutual_tls_a_certificate_from_another_ca_is_rejected() {
    let pki = Pki::new();
    let app = spawn_app_with(server_settings(&pki, true)).await;

    let result = call(&app, &pki.ca_pem(), Some(client_identity(&Pki::new()))).await;

    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn with_mutual_tls_a_client_certificate_from_the_ca_is_accepted() {
    let pki = Pki::new();
    let app = spawn_app_with(server_settings(&pki, true)).await;

    assert_eq!(
        call(&app, &pki.ca_pem(), Some(client_identity(&pki))).await,
        Ok(3)
    );
}

/// Issue 14: a certificate the CA signed is not enough. The server's own
/// (meant for servers only) and a client certificate with a name not
/// allowed are refused. Issue 37: one with no stated purpose is valid for
/// any, as RFC 5280 reads it (and Go, gRPC core and Kubernetes).
#[tokio::test]
async fn with_mutual_tls_only_client_certificates_with_an_allowed_name_get_in() {
    let pki = Pki::new();
    let app = spawn_app_with(server_settings(&pki, true)).await;
    let identity = |name: &str, purposes: &[Purpose]| {
        let (cert, key) = pki.issue(name, purposes);
        Some(Identity::from_pem(cert, key))
    };

    let servers_own = call(
        &app,
        &pki.ca_pem(),
        identity("localhost", &[Purpose::ServerAuth]),
    )
    .await;
    let no_purpose = call(&app, &pki.ca_pem(), identity("marketplace", &[])).await;
    let server_purpose = call(
        &app,
        &pki.ca_pem(),
        identity("marketplace", &[Purpose::ServerAuth]),
    )
    .await;
    let other_name = call(
        &app,
        &pki.ca_pem(),
        identity("reporting", &[Purpose::ClientAuth]),
    )
    .await;
    let allowed = call(
        &app,
        &pki.ca_pem(),
        identity("marketplace", &[Purpose::ClientAuth]),
    )
    .await;

    assert!(servers_own.is_err(), "{servers_own:?}");
    assert_eq!(no_purpose, Ok(3), "no extended key usage: any purpose");
    assert!(server_purpose.is_err(), "{server_purpose:?}");
    assert!(other_name.is_err(), "{other_name:?}");
    assert_eq!(allowed, Ok(3));
}

#[tokio::test]
async fn the_allowed_client_names_are_a_setting() {
    let pki = Pki::new();
    let app = spawn_app_with(Settings {
        tls_client_names: vec!["reporting".to_owned(), "marketplace".to_owned()],
        ..server_settings(&pki, true)
    })
    .await;
    let (cert, key) = pki.issue("reporting", &[Purpose::ClientAuth]);

    let result = call(&app, &pki.ca_pem(), Some(Identity::from_pem(cert, key))).await;

    assert_eq!(result, Ok(3));
}

#[tokio::test]
async fn a_client_name_that_is_not_a_dns_name_stops_the_server_at_start() {
    let pki = Pki::new();
    let settings = Settings {
        tls_client_names: vec!["not a name".to_owned()],
        ..server_settings(&pki, true)
    };

    let error = Application::build(settings).await.expect_err("refused");

    assert!(
        format!("{error:#}").contains("\"not a name\" is not a DNS name"),
        "{error:#}"
    );
}

#[tokio::test]
async fn a_key_that_does_not_match_its_certificate_stops_the_server_at_start() {
    let pki = Pki::new();
    let mut settings = server_settings(&pki, false);
    let (_, other_key) = pki.issue("localhost", &[Purpose::ServerAuth]);
    settings.tls_key = Some(pki.write("other.key", &other_key));

    let error = Application::build(settings).await.expect_err("refused");

    let message = format!("{error:#}");
    assert!(
        message.starts_with("cannot set up TLS: the TLS certificate "),
        "{message}"
    );
    assert!(
        message.contains("localhost.pem") && message.contains("other.key"),
        "{message}"
    );
}

#[tokio::test]
async fn the_healthcheck_passes_over_tls_and_over_mutual_tls() {
    for mutual in [false, true] {
        let pki = Pki::new();
        let settings = server_settings(&pki, mutual);
        let app = spawn_app_with(settings.clone()).await;

        let mut settings = Settings {
            listen: app.addr,
            ..settings
        };
        settings.service.admin_listen = app.admin_addr;
        let result =
            recommendations::healthcheck::check_local(&settings, Duration::from_secs(10)).await;

        assert!(result.is_ok(), "mutual TLS {mutual}: {result:?}");
    }
}

#[tokio::test]
async fn the_healthcheck_refuses_a_server_with_another_certificate() {
    let pki = Pki::new();
    let app = spawn_app_with(server_settings(&pki, false)).await;
    // The same settings, but another certificate (and key) on file.
    let imposter = server_settings(&Pki::new(), false);

    let result = recommendations::healthcheck::check_local(
        &Settings {
            listen: app.addr,
            ..imposter
        },
        Duration::from_secs(10),
    )
    .await;

    assert!(result.is_err(), "{result:?}");
}

/// Attack 6: connections that start a TLS handshake and never finish it are
/// closed at the handshake timeout, while TLS clients are served.
#[tokio::test]
async fn stalled_tls_handshakes_are_closed_at_the_handshake_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let pki = Pki::new();
    let mut settings = server_settings(&pki, false);
    settings.limits.handshake_timeout = Duration::from_millis(300);
    let app = spawn_app_with(settings).await;
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(app.addr)
            .await
            .expect("connects");
        // The start of a TLS record (handshake, TLS 1.0 record version),
        // and nothing more.
        stream.write_all(&[0x16, 0x03, 0x01]).await.expect("sent");
        stalled.push(stream);
    }

    let mut closed = 0;
    let mut byte = [0u8; 1];
    for stream in &mut stalled {
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    let served = call(&app, &pki.ca_pem(), None).await;

    assert_eq!(closed, 50);
    assert_eq!(served, Ok(3));
}

/// Issue 37: the tutorial's client certificate, `openssl req -subj
/// /CN=marketplace` signed with no extensions, gets in on its common name;
/// a common name not allowed does not, nor does an allowed common name on
/// a certificate whose subject alternative names say otherwise.
#[tokio::test]
async fn with_mutual_tls_the_tutorials_common_name_certificate_gets_in() {
    let pki = Pki::new();
    let app = spawn_app_with(server_settings(&pki, true)).await;
    let common_name = |name: &str, alt_names: &[&str]| {
        let (cert, key) = pki.issue_common_name(name, alt_names);
        Some(Identity::from_pem(cert, key))
    };

    let tutorials = call(&app, &pki.ca_pem(), common_name("marketplace", &[])).await;
    let other = call(&app, &pki.ca_pem(), common_name("reporting", &[])).await;
    let named_otherwise = call(
        &app,
        &pki.ca_pem(),
        common_name("marketplace", &["reporting"]),
    )
    .await;

    assert_eq!(tutorials, Ok(3));
    assert!(other.is_err(), "{other:?}");
    assert!(named_otherwise.is_err(), "{named_otherwise:?}");
}
