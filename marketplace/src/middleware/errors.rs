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
