//! The catalog being served, swapped whole by a reload: each call takes the
//! catalog current when it starts and keeps it to its end (a ListBooks
//! stream included), so no call sees two catalogs, and the old one is freed
//! when its last call ends.

use std::sync::{Arc, PoisonError, RwLock};

use super::Catalog;

/// The current catalog, shared by every call. Cloning shares it.
#[derive(Clone, Debug)]
pub struct LiveCatalog(Arc<RwLock<Arc<Catalog>>>);

impl LiveCatalog {
    /// Serves `catalog` until it is replaced.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self(Arc::new(RwLock::new(catalog)))
    }

    /// The catalog now.
    pub fn current(&self) -> Arc<Catalog> {
        // A poisoned lock only means a panic while swapping an Arc: the Arc
        // inside is still whole.
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Serves `catalog` from the next call on; calls in flight keep theirs.
    pub fn replace(&self, catalog: Catalog) {
        let old = std::mem::replace(
            &mut *self.0.write().unwrap_or_else(PoisonError::into_inner),
            Arc::new(catalog),
        );
        // Freed here, outside the lock, unless calls still hold it.
        drop(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::load_csv_for_tests;

    #[test]
    fn a_call_keeps_the_catalog_it_started_with() {
        let live = LiveCatalog::new(Arc::new(load_csv_for_tests(
            "id,title,author,category\n1,Old,A,mystery\n",
        )));
        let in_flight = live.current();

        live.replace(load_csv_for_tests(
            "id,title,author,category\n2,New,B,mystery\n3,Newer,C,mystery\n",
        ));

        assert_eq!(in_flight.len(), 1, "the call's own catalog");
        assert_eq!(live.current().len(), 2, "the next call's");
    }
}
