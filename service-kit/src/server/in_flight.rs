//! A bound on requests (or calls) in flight, shared by every connection of
//! a listener: a request takes a [`Slot`] when it arrives and gives it back
//! when dropped, which its response body does once sent
//! ([`super::guarded_body`]). Over the bound a request is refused at once,
//! never queued: both servers answer it themselves (503 on the web, gRPC's
//! RESOURCE_EXHAUSTED).
//!
//! A semaphore with no waiters: nothing queues here, so a counter does,
//! without the semaphore's lock on every release.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

/// A count of requests in flight under a bound.
#[derive(Debug)]
pub struct InFlightLimit {
    in_flight: AtomicUsize,
    limit: usize,
}

impl InFlightLimit {
    /// At most `limit` requests in flight.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            limit,
        })
    }

    /// A slot, unless `limit` requests hold one.
    pub fn try_take(self: &Arc<Self>) -> Option<Slot> {
        self.in_flight
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// One request's place under an [`InFlightLimit`], given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<InFlightLimit>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_taken_up_to_the_limit_and_given_back_when_dropped() {
        let limit = InFlightLimit::new(2);

        let first = limit.try_take().expect("one");
        let second = limit.try_take().expect("two");
        assert!(limit.try_take().is_none(), "the third is refused");
        assert_eq!(limit.in_flight(), 2);

        drop(first);
        assert!(limit.try_take().is_some(), "a slot came back");
        drop(second);
        assert_eq!(limit.in_flight(), 0);
    }
}
