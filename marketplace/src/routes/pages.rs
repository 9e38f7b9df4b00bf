//! The pages. Each asks recommendations for what it shows; when that fails
//! the page still renders, with a notice in place of the books.

use std::sync::Arc;

use askama::Template;
use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use protobufs::v1::Book;

use protobufs::Category;

use crate::{client::RecommendationsClient, error::PageError};

/// Books on the homepage, as in the tutorial.
const HOME_BOOKS: i32 = 3;
/// Books on a category page.
const CATEGORY_BOOKS: i32 = 6;

/// A rendered page, served as HTML. Its header map is made with room for
/// every header a page leaves with (its type and length, the four security
/// headers, the request id) rather than growing on the seventh
/// (docs/benchmarks/history.md, "A page's headers in one allocation").
pub struct Page(String);

/// The headers of a page's response (see [`Page`]).
const PAGE_HEADERS: usize = 8;

/// The room a page is rendered into. With the built-in catalog a homepage
/// is about 1.4 KB, a category page of six books 1.8 KB and the longest
/// browse page 3.8 KB; askama's own estimate (about 1.1 KB, from the
/// templates' text) made every page grow, and copy itself, once.
pub const PAGE_CAPACITY: usize = 4096;

impl Page {
    /// Renders `template` into one allocation of [`PAGE_CAPACITY`] (a
    /// larger page, a long browse list, grows as it needs).
    fn render(template: &impl Template) -> Result<Self, askama::Error> {
        let mut html = String::with_capacity(PAGE_CAPACITY);
        template.render_into(&mut html)?;
        Ok(Self(html))
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.0));
        let headers = response.headers_mut();
        *headers = HeaderMap::with_capacity(PAGE_HEADERS);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    }
}

/// What every request shares: the one recommendations client (and its one
/// channel per replica), and the count of pages served without
/// recommendations. axum clones the state for every request: one `Arc`.
#[derive(Clone, Debug)]
pub struct AppState {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    recommendations: RecommendationsClient,
    degraded: Family<PageLabels, Counter>,
}

/// Labels of a degraded page.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PageLabels {
    page: &'static str,
}

impl AppState {
    /// State over `recommendations`; degraded pages are counted in `degraded`.
    pub fn new(
        recommendations: RecommendationsClient,
        degraded: Family<PageLabels, Counter>,
    ) -> Self {
        // Every page's series exists from the start, at 0: a rate over it
        // is then 0, not absent, in dashboards and alerts.
        for page in ["home", "category", "browse"] {
            drop(degraded.get_or_create(&PageLabels { page }));
        }
        Self {
            shared: Arc::new(Shared {
                recommendations,
                degraded,
            }),
        }
    }

    /// Recommendations, or `None` when the service failed: the client layers
    /// have logged and counted the failed call; this counts the page.
    async fn recommend(
        &self,
        category: Category,
        count: i32,
        page: &'static str,
    ) -> Option<Vec<Book>> {
        let books = self
            .shared
            .recommendations
            .recommend(category, count)
            .await
            .ok();
        if books.is_none() {
            self.shared
                .degraded
                .get_or_create(&PageLabels { page })
                .inc();
        }
        books
    }
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    current: Option<Category>,
    books: Option<Vec<Book>>,
}

#[derive(Template)]
#[template(path = "category.html")]
struct CategoryPage {
    current: Option<Category>,
    category: Category,
    books: Option<Vec<Book>>,
}

#[derive(Template)]
#[template(path = "browse.html")]
struct BrowsePage {
    current: Option<Category>,
    category: Category,
    books: Option<Vec<Book>>,
    truncated: bool,
}

/// `/`: the tutorial's homepage, three mystery books you may like.
pub async fn home(State(state): State<AppState>) -> Result<Page, PageError> {
    let books = state.recommend(Category::Mystery, HOME_BOOKS, "home").await;
    Ok(Page::render(&HomePage {
        current: None,
        books,
    })?)
}

/// `/category/{slug}`: recommendations of one category.
pub async fn category(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Page, PageError> {
    let category = Category::from_slug(&slug).ok_or(PageError::NotFound)?;
    let books = state.recommend(category, CATEGORY_BOOKS, "category").await;
    Ok(Page::render(&CategoryPage {
        current: Some(category),
        category,
        books,
    })?)
}

/// `/category/{slug}/books`: every book of one category, from the
/// server-streaming ListBooks.
pub async fn browse(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Page, PageError> {
    let category = Category::from_slug(&slug).ok_or(PageError::NotFound)?;
    let (books, truncated) = match state.shared.recommendations.list_books(category).await {
        Ok((books, truncated)) => (Some(books), truncated),
        Err(_) => {
            state
                .shared
                .degraded
                .get_or_create(&PageLabels { page: "browse" })
                .inc();
            (None, false)
        }
    };
    let page = BrowsePage {
        current: Some(category),
        category,
        books,
        truncated,
    };
    Ok(Page::render(&page)?)
}

/// Any other address.
pub async fn not_found() -> PageError {
    PageError::NotFound
}
