//! Graceful shutdown: readiness flips first, requests in flight finish.

use std::time::Duration;

use marketplace::{Application, Settings};
use tokio::sync::oneshot;

use crate::helpers::{admin_get, silent_upstream};

#[tokio::test]
async fn a_request_in_flight_at_shutdown_completes_while_readiness_is_503() {
    // Arrange: recommendations accepts connections and never answers, so a
    // page stays in flight until the 2 s deadline.
    let upstream = silent_upstream().await;
    let settings = Settings {
        rpc_timeout: Duration::from_secs(2),
        ..Settings::for_tests(upstream)
    };
    let app = Application::build(settings).await.expect("builds");
    let (web, admin) = (app.local_addr(), app.admin_addr().expect("bound"));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let page = tokio::spawn(service_kit::testing::http_get(format!("http://{web}/")));
    for _ in 0..200 {
        if admin_get(admin, "/metrics")
            .await
            .contains("rpc_client_active_calls 1")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        admin_get(admin, "/metrics")
            .await
            .contains("rpc_client_active_calls 1")
    );

    // Act: shutdown begins while the page is in flight.
    let _ = stop.send(());

    // Assert: readiness is 503 at once, and the page still completes.
    let mut ready = String::new();
    for _ in 0..200 {
        ready = admin_get(admin, "/readyz").await;
        if ready == "shutting down\n" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(ready, "shutting down\n");
    let response = page.await.expect("no panic").expect("the page completes");
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .expect("HTML")
            .contains("Recommendations are unavailable")
    );
    server
        .await
        .expect("no panic")
        .expect("a clean exit after the drain");
}
