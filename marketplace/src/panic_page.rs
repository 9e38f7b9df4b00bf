//! A panicking handler becomes the 500 page, in the site's look.

use std::any::Any;

use axum::{body::Body, http::StatusCode, response::Response};
use service_kit::panic::{Answers, CatchPanicLayer};

use crate::error::ErrorPage;

/// The innermost layer of the web app: service-kit's
/// [`CatchPanic`](service_kit::panic::CatchPanic) with [`PanicPage`], which
/// keeps axum's body type (tower-http's `CatchPanic` would box every page's
/// body, and axum box it again).
pub fn catch_panic() -> CatchPanicLayer<PanicPage> {
    CatchPanicLayer::new(PanicPage)
}

/// The web app's answer to a panicking handler: the 500 page.
#[derive(Clone, Copy, Debug, Default)]
pub struct PanicPage;

impl Answers<Body> for PanicPage {
    fn panicked(&self, panic: Box<dyn Any + Send>) -> Response {
        panic_page(panic)
    }
}

/// Logs the panic once and answers with the 500 page; the server lives on.
pub fn panic_page(panic: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!(
        panic = service_kit::panic::message(&*panic),
        "a page handler panicked; answering 500"
    );
    ErrorPage::internal().into_response_with(StatusCode::INTERNAL_SERVER_ERROR)
}

#[cfg(test)]
mod tests {
    use axum::{Router, routing::get};
    use http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_gets_the_500_page_and_the_router_lives_on() {
        async fn boom() -> &'static str {
            panic!("handler bug")
        }
        let router = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(catch_panic());

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
