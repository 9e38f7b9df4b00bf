//! Both contracts and the streaming RPC, over the network.

use std::collections::HashSet;

use protobufs::{legacy, v1};
use tonic::Code;

use crate::helpers::spawn_app;

#[tokio::test]
async fn legacy_contract_recommends_three_distinct_mystery_books() {
    let app = spawn_app().await;
    let request = legacy::RecommendationRequest {
        user_id: 1,
        category: legacy::BookCategory::Mystery as i32,
        max_results: 3,
    };

    let response = app
        .legacy()
        .recommend(request)
        .await
        .expect("OK")
        .into_inner();

    let ids: HashSet<i32> = response.recommendations.iter().map(|b| b.id).collect();
    assert_eq!(ids.len(), 3, "{response:?}");
    assert!(response.recommendations.iter().all(|b| !b.title.is_empty()));
}

#[tokio::test]
async fn legacy_contract_answers_unknown_categories_with_not_found() {
    let app = spawn_app().await;
    let request = legacy::RecommendationRequest {
        user_id: 1,
        category: 3,
        max_results: 3,
    };

    let status = app
        .legacy()
        .recommend(request)
        .await
        .expect_err("category 3 is unknown");

    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "Category not found");
}

#[tokio::test]
async fn v1_recommends_books_with_authors_and_categories() {
    let app = spawn_app().await;
    let request = v1::RecommendRequest {
        user_id: 7,
        category: v1::Category::SelfHelp as i32,
        max_results: 4,
    };

    let books = app
        .v1()
        .recommend(request)
        .await
        .expect("OK")
        .into_inner()
        .books;

    assert_eq!(books.iter().map(|b| b.id).collect::<HashSet<_>>().len(), 4);
    for book in &books {
        assert_eq!(book.category, v1::Category::SelfHelp as i32);
        assert!(!book.author.is_empty(), "{book:?}");
    }
}

#[tokio::test]
async fn v1_rejects_the_unspecified_category() {
    let app = spawn_app().await;
    let request = v1::RecommendRequest {
        user_id: 1,
        category: 0,
        max_results: 3,
    };

    let status = app.v1().recommend(request).await.expect_err("refused");

    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("CATEGORY_SCIENCE_FICTION"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn list_books_streams_every_book_of_a_large_category() {
    let catalog = service_kit::testing::numbered_catalog(1_050, "mystery");
    let app = crate::helpers::spawn_app_with_catalog(catalog.to_path_buf()).await;
    let request = v1::ListBooksRequest {
        category: v1::Category::Mystery as i32,
    };

    let mut stream = app.v1().list_books(request).await.expect("OK").into_inner();
    let mut ids = Vec::new();
    let mut batches = 0;
    while let Some(batch) = stream.message().await.expect("no error mid-stream") {
        batches += 1;
        ids.extend(batch.books.into_iter().map(|b| b.id));
    }

    assert_eq!(ids, (1..=1_050).collect::<Vec<i32>>());
    assert_eq!(batches, 11);
    // A stream ends with its status in the trailers: counted OK, once.
    let (_, metrics) = app.admin_get("/metrics").await;
    let counted = format!(
        r#"rpc_server_call_duration_seconds_count{{rpc_system_name="grpc",rpc_method="{}/ListBooks",rpc_response_status_code="OK"}} 1"#,
        v1::recommendations_service_server::SERVICE_NAME
    );
    assert!(metrics.contains(&counted), "{metrics}");
}

#[tokio::test]
async fn list_books_of_an_empty_category_ends_at_once() {
    let catalog = service_kit::testing::numbered_catalog(5, "mystery");
    let app = crate::helpers::spawn_app_with_catalog(catalog.to_path_buf()).await;
    let request = v1::ListBooksRequest {
        category: v1::Category::SelfHelp as i32,
    };

    let mut stream = app.v1().list_books(request).await.expect("OK").into_inner();

    assert!(stream.message().await.expect("OK").is_none());
}
