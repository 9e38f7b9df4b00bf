//! A value a reload swaps whole: each user takes the value current when it
//! starts (a call, a handshake) and keeps it to its end, so that none sees
//! two, and the old one is freed when its last user ends.

use std::sync::{Arc, PoisonError, RwLock};

/// The current value, shared by every user. Cloning shares it.
#[derive(Debug)]
pub struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Live<T> {
    /// Serves `value` until it is replaced.
    pub fn new(value: Arc<T>) -> Self {
        Self(Arc::new(RwLock::new(value)))
    }

    /// The value now.
    pub fn current(&self) -> Arc<T> {
        // A poisoned lock only means a panic while swapping an Arc: the Arc
        // inside is still whole.
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Serves `value` from the next user on; users in flight keep theirs.
    pub fn replace(&self, value: Arc<T>) {
        let old = std::mem::replace(
            &mut *self.0.write().unwrap_or_else(PoisonError::into_inner),
            value,
        );
        // Freed here, outside the lock, unless users still hold it.
        drop(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_keeps_the_value_it_started_with() {
        let live = Live::new(Arc::new("old"));
        let in_flight = live.current();

        live.clone().replace(Arc::new("new"));

        assert_eq!(*in_flight, "old", "the user's own");
        assert_eq!(*live.current(), "new", "the next user's");
    }
}
