//! The versioned API, `bookstore.recommendations.v1.RecommendationsService`.

use std::pin::Pin;

use protobufs::v1::{
    self as pb, ListBooksRequest, ListBooksResponse, RecommendRequest, RecommendResponse,
    recommendations_service_server::RecommendationsService,
};
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use super::{DEFAULT_MAX_RESULTS, LIST_BATCH, Recommender};
use crate::{
    catalog::{Book, Category},
    error::Error,
};

fn category(number: i32) -> Result<Category, Error> {
    match pb::Category::try_from(number) {
        Ok(category) => Category::from_v1(category).ok_or(Error::MissingCategory),
        Err(_) => Err(Error::UnknownCategory(number)),
    }
}

fn category_number(category: Category) -> i32 {
    category.to_v1() as i32
}

fn book(book: &Book) -> pb::Book {
    pb::Book {
        id: book.id,
        title: book.title().to_owned(),
        author: book.author().to_owned(),
        category: category_number(book.category),
    }
}

#[tonic::async_trait]
impl RecommendationsService for Recommender {
    async fn recommend(
        &self,
        request: Request<RecommendRequest>,
    ) -> Result<Response<RecommendResponse>, Status> {
        let request = request.into_inner();
        let category = category(request.category)?;
        let count = match request.max_results {
            0 => DEFAULT_MAX_RESULTS as i32,
            count => count,
        };
        let books = self.pick_books(category, count, book)?;
        Ok(Response::new(RecommendResponse { books }))
    }

    type ListBooksStream = Pin<Box<dyn Stream<Item = Result<ListBooksResponse, Status>> + Send>>;

    async fn list_books(
        &self,
        request: Request<ListBooksRequest>,
    ) -> Result<Response<Self::ListBooksStream>, Status> {
        let category = category(request.into_inner().category)?;
        // The stream holds the shared catalog and builds each batch only
        // when the client is ready for it: memory stays at one batch
        // however long the category, and a slow reader slows only itself.
        let catalog = self.catalog.current();
        let count = catalog.books(category).len();
        let batches = tokio_stream::iter((0..count).step_by(LIST_BATCH)).map(move |start| {
            let books = catalog.books(category);
            let end = (start + LIST_BATCH).min(books.len());
            Ok(ListBooksResponse {
                books: books[start..end].iter().map(book).collect(),
            })
        });
        Ok(Response::new(Box::pin(batches)))
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, sync::Arc};

    use tonic::Code;

    use super::*;
    use crate::{api::MAX_RESULTS_CAP, catalog::Catalog};

    fn service() -> Recommender {
        Recommender::new(Arc::new(
            Catalog::builtin().expect("the built-in catalog is valid"),
        ))
    }

    fn request(category: pb::Category, max_results: i32) -> Request<RecommendRequest> {
        Request::new(RecommendRequest {
            user_id: 1,
            category: category as i32,
            max_results,
        })
    }

    async fn recommend(category: pb::Category, max_results: i32) -> Result<Vec<pb::Book>, Status> {
        service()
            .recommend(request(category, max_results))
            .await
            .map(|r| r.into_inner().books)
    }

    #[tokio::test]
    async fn recommended_books_are_distinct_and_of_the_category() {
        let books = recommend(pb::Category::ScienceFiction, 5)
            .await
            .expect("valid request");

        let ids: HashSet<i32> = books.iter().map(|b| b.id).collect();
        assert_eq!(ids.len(), 5);
        for book in &books {
            assert_eq!(book.category, pb::Category::ScienceFiction as i32);
            assert!(
                !book.title.is_empty() && !book.author.is_empty(),
                "{book:?}"
            );
        }
    }

    #[tokio::test]
    async fn max_results_zero_means_the_default() {
        let books = recommend(pb::Category::Mystery, 0)
            .await
            .expect("valid request");

        assert_eq!(books.len(), DEFAULT_MAX_RESULTS);
    }

    #[tokio::test]
    async fn max_results_is_capped() {
        let catalog = (1..=500)
            .map(|id| format!("{id},Book {id},Author,mystery\n"))
            .collect::<String>();
        let catalog =
            crate::catalog::load_csv_for_tests(&format!("id,title,author,category\n{catalog}"));
        let service = Recommender::new(Arc::new(catalog));

        let books = service
            .recommend(request(pb::Category::Mystery, i32::MAX))
            .await
            .expect("valid request")
            .into_inner()
            .books;

        assert_eq!(books.len(), MAX_RESULTS_CAP);
    }

    #[tokio::test]
    async fn negative_max_results_is_invalid() {
        let status = recommend(pb::Category::Mystery, -3)
            .await
            .expect_err("refused");

        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("must not be negative"),
            "{}",
            status.message()
        );
    }

    #[tokio::test]
    async fn unspecified_category_is_invalid_and_lists_the_valid_ones() {
        let status = recommend(pb::Category::Unspecified, 3)
            .await
            .expect_err("refused");

        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "category is required; valid categories: \
             CATEGORY_MYSTERY, CATEGORY_SCIENCE_FICTION, CATEGORY_SELF_HELP"
        );
    }

    #[tokio::test]
    async fn unknown_category_is_invalid_and_lists_the_valid_ones() {
        let status = service()
            .recommend(Request::new(RecommendRequest {
                user_id: 1,
                category: 42,
                max_results: 3,
            }))
            .await
            .expect_err("refused");

        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .starts_with("unknown category 42; valid categories: CATEGORY_MYSTERY")
        );
    }

    #[tokio::test]
    async fn list_books_streams_the_whole_category_in_order() {
        let service = service();
        let expected: Vec<i32> = service
            .catalog
            .current()
            .books(Category::SelfHelp)
            .iter()
            .map(|b| b.id)
            .collect();

        let mut stream = service
            .list_books(Request::new(ListBooksRequest {
                category: pb::Category::SelfHelp as i32,
            }))
            .await
            .expect("valid request")
            .into_inner();
        let mut ids = Vec::new();
        while let Some(batch) = stream.next().await {
            ids.extend(
                batch
                    .expect("no error mid-stream")
                    .books
                    .iter()
                    .map(|b| b.id),
            );
        }

        assert_eq!(ids, expected);
    }

    #[tokio::test]
    async fn list_books_rejects_the_unspecified_category() {
        let status = service()
            .list_books(Request::new(ListBooksRequest { category: 0 }))
            .await
            .map(|_| ())
            .expect_err("refused");

        assert_eq!(status.code(), Code::InvalidArgument);
    }
}
