//! The homepage over mutual TLS: recommendations requires a client
//! certificate signed by the CA, and the marketplace presents one.

use std::{path::PathBuf, time::Duration};

use marketplace::Settings;
use service_kit::testing::{Pki, Purpose};

use crate::helpers::{book_titles, get, marketplace_with};

async fn mutual_tls_upstream(pki: &Pki) -> recommendations::Application {
    let (cert, key) = pki.issue_files("recommendations", &[Purpose::ServerAuth]);
    let settings = recommendations::Settings {
        tls_cert: Some(cert),
        tls_key: Some(key),
        tls_client_ca: Some(pki.ca_file()),
        ..recommendations::Settings::for_tests()
    };
    recommendations::Application::build(settings)
        .await
        .expect("builds")
}

fn marketplace_settings(
    pki: &Pki,
    upstream: std::net::SocketAddr,
    client_certificate: bool,
) -> Settings {
    let identity =
        client_certificate.then(|| pki.issue_files("marketplace", &[Purpose::ClientAuth]));
    Settings {
        recommendations_tls_ca: Some(pki.ca_file()),
        recommendations_tls_domain: Some("recommendations".to_owned()),
        recommendations_tls_client_cert: identity.as_ref().map(|(cert, _)| cert.clone()),
        recommendations_tls_client_key: identity.map(|(_, key)| key),
        rpc_timeout: Duration::from_secs(5),
        ..Settings::for_tests(upstream)
    }
}

#[tokio::test]
async fn the_homepage_renders_over_mutual_tls() {
    let pki = Pki::new();
    let upstream = mutual_tls_upstream(&pki).await;
    let addr = upstream.local_addr();
    tokio::spawn(upstream.run_until_stopped(std::future::pending()));
    let (router, _) = marketplace_with(marketplace_settings(&pki, addr, true)).await;

    let (response, html) = get(&router, "/").await;

    assert_eq!(response.status(), 200);
    assert_eq!(book_titles(&html).len(), 3, "{html}");
}

#[tokio::test]
async fn without_a_client_certificate_the_page_degrades() {
    let pki = Pki::new();
    let upstream = mutual_tls_upstream(&pki).await;
    let addr = upstream.local_addr();
    tokio::spawn(upstream.run_until_stopped(std::future::pending()));
    let (router, _) = marketplace_with(marketplace_settings(&pki, addr, false)).await;

    let (response, html) = get(&router, "/").await;

    assert_eq!(response.status(), 200);
    assert!(
        html.contains("Recommendations are unavailable right now."),
        "{html}"
    );
}

#[tokio::test]
async fn an_unreadable_ca_file_stops_the_marketplace_at_start() {
    let settings = Settings {
        recommendations_tls_ca: Some(PathBuf::from("/no/such/ca.pem")),
        ..Settings::for_tests(std::net::SocketAddr::from(([127, 0, 0, 1], 1)))
    };

    let error = marketplace::Application::build(settings)
        .await
        .expect_err("refused");

    assert_eq!(
        format!("{error:#}").split(": No such file").next(),
        Some(
            "cannot set up TLS toward recommendations: cannot read the CA certificate file /no/such/ca.pem"
        )
    );
}
