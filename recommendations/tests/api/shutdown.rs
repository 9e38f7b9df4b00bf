//! The shutdown sequence: health flips first, calls in flight finish.

use protobufs::v1;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use service_kit::testing::numbered_catalog;

use crate::helpers::spawn_app_with_catalog;

#[tokio::test]
async fn a_call_in_flight_at_shutdown_completes_while_health_reports_not_serving() {
    // Arrange: a category far larger than the HTTP/2 flow-control window, so
    // the server cannot finish the stream until the client reads it (about
    // 7 MB; hyper's client window is 2 MB).
    let catalog = numbered_catalog(200_000, "mystery");
    let mut app = spawn_app_with_catalog(catalog.to_path_buf()).await;
    let mut watch = app
        .health()
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("OK")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("OK")
        .expect("an initial status");
    assert_eq!(first.status(), ServingStatus::Serving);
    let request = v1::ListBooksRequest {
        category: v1::Category::Mystery as i32,
    };
    let mut stream = app.v1().list_books(request).await.expect("OK").into_inner();
    let mut received = stream
        .message()
        .await
        .expect("OK")
        .expect("a first batch")
        .books
        .len();

    // Act: shutdown begins while the stream is in flight.
    app.begin_shutdown();

    // Assert: health says NOT_SERVING, and readiness too, while the call is
    // still in flight...
    let update = watch.message().await.expect("OK").expect("a status change");
    assert_eq!(update.status(), ServingStatus::NotServing);
    drop(watch);
    assert_eq!(
        app.admin_get("/readyz").await,
        (503, "shutting down\n".to_owned())
    );
    // ...and the call completes with every book and an OK status.
    while let Some(batch) = stream.message().await.expect("the stream ends OK") {
        received += batch.books.len();
    }
    assert_eq!(received, 200_000);
    app.stop().await.expect("a clean exit after the drain");
}

#[tokio::test]
async fn after_shutdown_the_listener_refuses_new_connections() {
    let catalog = numbered_catalog(3, "mystery");
    let app = spawn_app_with_catalog(catalog.to_path_buf()).await;
    let addr = app.addr;

    app.stop().await.expect("a clean exit");

    let result = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect()
        .await;
    assert!(result.is_err(), "connected to a stopped server");
}
