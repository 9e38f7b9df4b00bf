//! The web app's routes and the layer stack around them.
//!
//! | Route | Page |
//! | --- | --- |
//! | `/` | the homepage: three mystery books you may like |
//! | `/category/{slug}` | recommendations of one category (`mystery`, `science-fiction`, `self-help`) |
//! | `/category/{slug}/books` | every book of one category |
//! | `/static/style.css`, `/static/favicon.svg` | the site's assets |

mod assets;
mod pages;

use axum::{
    Router,
    http::{HeaderValue, Response},
    routing::get,
};
use http::header;
use service_kit::{metrics::HttpMetrics, server::http::HttpObserveLayer};
use tower::ServiceBuilder;

pub use pages::{AppState, PAGE_CAPACITY};

use crate::panic_page;

/// No scripts at all, styles and images only from this site, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The whole web app: pages, assets and the layers around them.
pub fn router(state: AppState, metrics: HttpMetrics) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/category/{slug}", get(pages::category))
        .route("/category/{slug}/books", get(pages::browse))
        .route("/static/style.css", get(assets::stylesheet))
        .route("/static/favicon.svg", get(assets::favicon))
        .route("/favicon.ico", get(assets::favicon))
        .fallback(pages::not_found)
        .with_state(state)
        // Router::layer applies after routing, so the layers see the matched
        // route. ServiceBuilder order: the first layer is the outermost.
        .layer(
            ServiceBuilder::new()
                // Outermost: every response, error pages included, carries
                // the security headers.
                .map_response(security_headers)
                // One log event and the metrics of each request, with the
                // final status, 500s from panics included.
                .layer(HttpObserveLayer::new(metrics))
                // Innermost: a panicking handler becomes the 500 page.
                .layer(panic_page::catch_panic()),
        )
}

/// Sets the security headers on a response (one step for all four, rather
/// than a layer each).
fn security_headers<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
