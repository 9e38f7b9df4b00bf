//! A panicking handler becomes the 500 page, in the site's look.

use std::any::Any;

use axum::{http::StatusCode, response::Response};

use crate::error::ErrorPage;

/// Logs the panic once and answers with the 500 page; the server lives on.
pub fn panic_page(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic payload");
    tracing::error!(panic = message, "a page handler panicked; answering 500");
    ErrorPage::internal().into_response_with(StatusCode::INTERNAL_SERVER_ERROR)
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, routing::get};
    use http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    use tower_http::catch_panic::CatchPanicLayer;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_gets_the_500_page_and_the_router_lives_on() {
        async fn boom() -> &'static str {
            panic!("handler bug")
        }
        let router = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(CatchPanicLayer::custom(panic_page));

        let request = |path| Request::get(path).body(Body::empty()).expect("valid");
        let response = router
            .clone()
            .oneshot(request("/boom"))
            .await
            .expect("infallible");
        let next = router.oneshot(request("/fine")).await.expect("infallible");

        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        let html = String::from_utf8_lossy(&body);
        assert!(html.contains("<h1>Something went wrong</h1>"), "{html}");
        assert!(
            !html.contains("handler bug"),
            "the panic text must not leak"
        );
        assert_eq!(next.status(), StatusCode::OK);
    }
}
