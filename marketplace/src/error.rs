//! The errors a page can end with, and the ONE place they become HTTP
//! responses: an HTML page in the site's look, never a stack trace.

use askama::Template;
use axum::{
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};

use protobufs::Category;

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// No such page (an unknown category, a mistyped address).
    #[error("page not found")]
    NotFound,
    /// A template failed to render: a bug.
    #[error("cannot render the page")]
    Render(#[from] askama::Error),
}

/// The error page, in the site's look.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// No category is current on an error page.
    pub current: Option<Category>,
    /// The page's heading, e.g. "Page not found".
    pub heading: &'static str,
    /// What a person can do about it.
    pub message: &'static str,
}

impl ErrorPage {
    /// The 404 page.
    pub fn not_found() -> Self {
        Self {
            current: None,
            heading: "Page not found",
            message: "We could not find that page. The bookstore's categories are listed above.",
        }
    }

    /// The 500 page.
    pub fn internal() -> Self {
        Self {
            current: None,
            heading: "Something went wrong",
            message: "The bookstore hit an unexpected error. Please try again in a moment.",
        }
    }

    /// Renders with `status`; if even that fails, a plain-text fallback.
    pub fn into_response_with(self, status: StatusCode) -> Response {
        match self.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(err) => {
                tracing::error!(cause = %err, "cannot render the error page");
                (status, self.heading).into_response()
            }
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::NotFound => ErrorPage::not_found().into_response_with(StatusCode::NOT_FOUND),
            PageError::Render(err) => {
                tracing::error!(cause = %err, "cannot render a page");
                ErrorPage::internal().into_response_with(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}
