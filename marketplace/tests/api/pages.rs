//! Handler tests: the router called in process (`oneshot`), wired to a real
//! recommendations server on port 0. No mock of the gRPC layer.

use std::{collections::HashSet, time::Duration};

use axum::body::Body;
use http::{Request, StatusCode};
use marketplace::routes::{CONTENT_SECURITY_POLICY, PAGE_CAPACITY};
use tower::ServiceExt as _;

use crate::helpers::{Upstream, book_titles, get, marketplace};

const DEADLINE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn homepage_lists_three_distinct_mystery_books() {
    let upstream = Upstream::start(None).await;
    let (router, _) = marketplace(upstream.addr, DEADLINE).await;

    let (response, html) = get(&router, "/").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        html.contains("<title>Online Books For You</title>"),
        "{html}"
    );
    assert!(
        html.contains("<h1>Mystery books you may like</h1>"),
        "{html}"
    );
    assert_eq!(html.matches("<li>").count(), 3, "{html}");
    assert_eq!(
        html.matches("<li").count() - html.matches("<link").count(),
        3,
        "no other list items"
    );
    let titles: HashSet<&str> = book_titles(&html).into_iter().collect();
    assert_eq!(titles.len(), 3, "{html}");
    let mystery = recommendations::Catalog::builtin().expect("valid");
    let mystery: HashSet<&str> = mystery
        .books(recommendations::Category::Mystery)
        .iter()
        .map(recommendations::Book::title)
        .collect();
    assert!(titles.is_subset(&mystery), "{titles:?}");
}

#[tokio::test]
async fn a_category_page_recommends_books_of_that_category() {
    let upstream = Upstream::start(None).await;
    let (router, _) = marketplace(upstream.addr, DEADLINE).await;

    let (response, html) = get(&router, "/category/science-fiction").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        html.contains("<h1>Science fiction books you may like</h1>"),
        "{html}"
    );
    assert!(
        html.contains(r#"<a href="/category/science-fiction" aria-current="page">"#),
        "{html}"
    );
    assert_eq!(book_titles(&html).len(), 6, "{html}");
}

#[tokio::test]
async fn an_unknown_category_is_a_404_page() {
    let upstream = Upstream::start(None).await;
    let (router, _) = marketplace(upstream.addr, DEADLINE).await;

    let (response, html) = get(&router, "/category/romance").await;
    let (other, _) = get(&router, "/no/such/page").await;

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(html.contains("<h1>Page not found</h1>"), "{html}");
    assert!(html.contains(r#"<link rel="stylesheet" href="/static/style.css">"#));
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_browse_page_lists_the_whole_category() {
    let upstream = Upstream::start(None).await;
    let (router, _) = marketplace(upstream.addr, DEADLINE).await;
    let catalog = recommendations::Catalog::builtin().expect("valid");
    let expected: Vec<&str> = catalog
        .books(recommendations::Category::SelfHelp)
        .iter()
        .map(recommendations::Book::title)
        .collect();

    let (response, html) = get(&router, "/category/self-help/books").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(html.contains("<h1>All self-help books</h1>"), "{html}");
    let listed: Vec<&str> = html
        .split(r#"<span class="book-title">"#)
        .skip(1)
        .filter_map(|rest| rest.split("</span>").next())
        .collect();
    let expected: Vec<String> = expected.iter().map(|t| t.replace('\'', "&#39;")).collect();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn titles_are_escaped_not_executed() {
    let file = service_kit::testing::csv_catalog([
        r#"1,"<script>alert('owned')</script>",A & B <i>Author</i>,mystery"#,
    ]);
    let upstream = Upstream::start(Some(file.to_path_buf())).await;
    let (router, _) = marketplace(upstream.addr, DEADLINE).await;

    for path in ["/", "/category/mystery/books"] {
        let (_, html) = get(&router, path).await;

        assert!(!html.contains("<script>"), "{path}: {html}");
        assert!(
            html.contains("&#60;script&#62;alert(&#39;owned&#39;)&#60;/script&#62;"),
            "{path}: {html}"
        );
        assert!(
            html.contains("A &#38; B &#60;i&#62;Author&#60;/i&#62;"),
            "{path}: {html}"
        );
    }
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let upstream = Upstream::start(None).await;
    let (router, _) = marketplace(upstream.addr, DEADLINE).await;

    for path in [
        "/",
        "/category/mystery",
        "/category/mystery/books",
        "/static/style.css",
        "/nope",
    ] {
        let (response, _) = get(&router, path).await;
        let headers = response.headers();

        let csp = headers
            .get("content-security-policy")
            .expect("a CSP")
            .to_str()
            .expect("ASCII");
        assert_eq!(csp, CONTENT_SECURITY_POLICY, "{path}");
        assert!(!csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(
            headers.get("x-content-type-options").map(|v| v.as_bytes()),
            Some(&b"nosniff"[..])
        );
        assert!(headers.contains_key("referrer-policy"), "{path}");
    }
}

#[tokio::test]
async fn pages_are_html_of_their_length() {
    let upstream = Upstream::start(None).await;
    let (router, _) = marketplace(upstream.addr, DEADLINE).await;

    for path in ["/", "/category/mystery", "/category/mystery/books", "/nope"] {
        let (response, html) = get(&router, path).await;
        let headers = response.headers();

        assert_eq!(
            headers.get("content-type").map(|v| v.as_bytes()),
            Some(&b"text/html; charset=utf-8"[..]),
            "{path}"
        );
        assert_eq!(
            headers.get("content-length").map(|v| v.as_bytes()),
            Some(html.len().to_string().as_bytes()),
            "{path}"
        );
        assert!(headers.contains_key("x-request-id"), "{path}");
    }
}

/// Pages are rendered into one allocation of `PAGE_CAPACITY`; one that
/// outgrew it would grow and copy itself on every request.
#[tokio::test]
async fn the_built_in_catalogs_pages_fit_the_room_they_are_rendered_into() {
    let upstream = Upstream::start(None).await;
    let (router, _) = marketplace(upstream.addr, DEADLINE).await;

    for category in ["mystery", "science-fiction", "self-help"] {
        for path in [
            "/".to_owned(),
            format!("/category/{category}"),
            format!("/category/{category}/books"),
        ] {
            let (response, html) = get(&router, &path).await;

            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert!(html.contains("class=\"book-title\""), "{path}: {html}");
            assert!(html.len() <= PAGE_CAPACITY, "{path}: {} bytes", html.len());
        }
    }
}

#[tokio::test]
async fn the_stylesheet_is_served_by_the_app() {
    let upstream = Upstream::start(None).await;
    let (router, _) = marketplace(upstream.addr, DEADLINE).await;

    let (response, css) = get(&router, "/static/style.css").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/css; charset=utf-8"
    );
    assert!(css.contains(".book"), "{css}");
}

#[tokio::test]
async fn requests_are_counted_by_matched_route_and_status() {
    let upstream = Upstream::start(None).await;
    let (router, admin) = marketplace(upstream.addr, DEADLINE).await;

    get(&router, "/category/mystery").await;
    get(&router, "/category/romance").await;

    let metrics = crate::helpers::admin_get(admin, "/metrics").await;
    assert!(
        metrics.contains(
            r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/category/{slug}",http_response_status_code="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/category/{slug}",http_response_status_code="404"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"rpc_client_call_duration_seconds_count{rpc_system_name="grpc",rpc_method="bookstore.recommendations.v1.RecommendationsService/Recommend",rpc_response_status_code="OK"} 1"#), "{metrics}");
}

#[tokio::test]
async fn made_up_methods_share_one_metric_series() {
    let upstream = Upstream::start(None).await;
    let (router, admin) = marketplace(upstream.addr, DEADLINE).await;

    for method in ["BREW", "WHEN", "PROPFIND"] {
        let request = Request::builder()
            .method(method)
            .uri("/")
            .body(Body::empty())
            .expect("a valid request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), 405, "{method}");
    }

    let metrics = crate::helpers::admin_get(admin, "/metrics").await;
    assert!(
        metrics.contains(r#"http_server_request_duration_seconds_count{http_request_method="_OTHER",http_route="/",http_response_status_code="405"} 3"#),
        "{metrics}"
    );
    assert!(!metrics.contains("BREW"), "{metrics}");
}
