//! The tutorial's original contract: `/Recommendations/Recommend`, with the
//! tutorial's semantics (unknown category: NOT_FOUND "Category not found";
//! results: min(max_results, books in the category)).

use protobufs::legacy::{
    BookCategory, BookRecommendation, RecommendationRequest, RecommendationResponse,
    recommendations_server,
};
use tonic::{Request, Response, Status};

use super::Recommender;
use crate::{
    catalog::{Book, Category},
    error::Error,
};

fn category(number: i32) -> Result<Category, Error> {
    BookCategory::try_from(number)
        .map(Category::from_legacy)
        .map_err(|_| Error::CategoryNotFound)
}

fn recommendation(book: &Book) -> BookRecommendation {
    BookRecommendation {
        id: book.id,
        title: book.title().to_owned(),
    }
}

#[tonic::async_trait]
impl recommendations_server::Recommendations for Recommender {
    async fn recommend(
        &self,
        request: Request<RecommendationRequest>,
    ) -> Result<Response<RecommendationResponse>, Status> {
        let request = request.into_inner();
        let category = category(request.category)?;
        // The tutorial's 0 means "no books": unlike v1 there is no default.
        let recommendations = self.pick_books(category, request.max_results, recommendation)?;
        Ok(Response::new(RecommendationResponse { recommendations }))
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, sync::Arc};

    use protobufs::legacy::recommendations_server::Recommendations as _;
    use tonic::Code;

    use super::*;
    use crate::catalog::Catalog;

    fn service() -> Recommender {
        Recommender::new(Arc::new(
            Catalog::builtin().expect("the built-in catalog is valid"),
        ))
    }

    fn request(category: i32, max_results: i32) -> Request<RecommendationRequest> {
        Request::new(RecommendationRequest {
            user_id: 1,
            category,
            max_results,
        })
    }

    #[tokio::test]
    async fn mystery_recommendations_are_distinct_mystery_books() {
        let response = service()
            .recommend(request(BookCategory::Mystery as i32, 3))
            .await
            .expect("a valid request succeeds")
            .into_inner();

        let mystery: HashSet<i32> = service()
            .catalog
            .current()
            .books(Category::Mystery)
            .iter()
            .map(|b| b.id)
            .collect();
        let ids: HashSet<i32> = response.recommendations.iter().map(|b| b.id).collect();
        assert_eq!(ids.len(), 3);
        assert!(ids.is_subset(&mystery), "{ids:?}");
    }

    #[tokio::test]
    async fn the_tutorials_unit_test_passes() {
        let response = service()
            .recommend(request(BookCategory::Mystery as i32, 1))
            .await
            .expect("a valid request succeeds");

        assert_eq!(response.into_inner().recommendations.len(), 1);
    }

    #[tokio::test]
    async fn max_results_zero_returns_no_books_as_in_the_tutorial() {
        let response = service()
            .recommend(request(BookCategory::SelfHelp as i32, 0))
            .await
            .expect("a valid request succeeds");

        assert!(response.into_inner().recommendations.is_empty());
    }

    #[tokio::test]
    async fn more_than_the_category_holds_returns_the_whole_category() {
        let size = service()
            .catalog
            .current()
            .books(Category::ScienceFiction)
            .len();

        let response = service()
            .recommend(request(BookCategory::ScienceFiction as i32, 1000))
            .await
            .expect("a valid request succeeds");

        assert_eq!(response.into_inner().recommendations.len(), size);
    }

    #[tokio::test]
    async fn unknown_category_is_not_found_with_the_tutorials_message() {
        let status = service()
            .recommend(request(7, 3))
            .await
            .expect_err("category 7 does not exist");

        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "Category not found");
    }

    #[tokio::test]
    async fn negative_max_results_is_invalid() {
        let status = service()
            .recommend(request(BookCategory::Mystery as i32, -1))
            .await
            .expect_err("negative counts are refused");

        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "max_results must not be negative, got -1");
    }
}
