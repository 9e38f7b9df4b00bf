//! The gRPC services. One [`Recommender`] value implements both
//! contracts, the tutorial's original one ([`legacy`]) and v1 ([`v1`]), over
//! one catalog, so they can never drift apart.

mod legacy;
mod v1;

use std::sync::Arc;

use crate::{
    catalog::{Book, Catalog, Category, LiveCatalog},
    error::Error,
};

/// The number of books v1 recommends when `max_results` is 0 (unset): the
/// tutorial homepage's three.
pub const DEFAULT_MAX_RESULTS: usize = 3;

/// The most books one Recommend call returns, on either contract. It bounds
/// the work of a call whatever the catalog size.
pub const MAX_RESULTS_CAP: usize = 100;

/// How many books each ListBooks message carries.
pub const LIST_BATCH: usize = 100;

/// The recommendations service, serving both contracts. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct Recommender {
    catalog: LiveCatalog,
}

impl Recommender {
    /// A service answering from `catalog`, for good.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self::live(LiveCatalog::new(catalog))
    }

    /// A service answering from whatever `catalog` holds at each call.
    pub fn live(catalog: LiveCatalog) -> Self {
        Self { catalog }
    }

    /// The shared core of both Recommend methods: up to `count` random,
    /// distinct books of `category`, at most [`MAX_RESULTS_CAP`], each as
    /// `message` makes it.
    fn pick_books<T>(
        &self,
        category: Category,
        count: i32,
        message: impl Fn(&Book) -> T,
    ) -> Result<Vec<T>, Error> {
        let count = usize::try_from(count).map_err(|_| Error::NegativeMaxResults(count))?;
        let catalog = self.catalog.current();
        let books = catalog.recommend(category, count.min(MAX_RESULTS_CAP), &mut rand::rng());
        Ok(books.map(message).collect())
    }
}
