//! Picking the replica for a call: the less busy, in calls in flight, of
//! the next two in round-robin order.
//!
//! Round-robin alone gives a replica that answers slowly but in time
//! (starved of CPU, on a throttled link, swapping) its whole share of the
//! calls, and since a page waits for its recommendations, every caller
//! waits on it in turn: the chaos run measured one replica of three at 5 %
//! of a CPU cutting the site's page rate to a fifth. Calls pile up on such
//! a replica, so comparing two replicas' calls in flight steers calls away
//! from it before any deadline is missed ("the power of two choices", as
//! Envoy's LEAST_REQUEST and Finagle's and linkerd's balancers do it). A
//! replica cut off silently is steered away from the same way while its
//! calls wait for the deadline that ejects it.
//!
//! The two are neighbours in round-robin order rather than drawn at
//! random, so that while no replica is busier than another (light load,
//! every call answered at once) the picks are exactly round-robin. A
//! replica on probation takes its one call whenever it comes first; it is
//! never the second choice, since its one call slot must not be claimed
//! for a call that then goes elsewhere.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use super::{Member, ReplicaPool};

/// A replica picked for a call. A probation call holds the replica's only
/// probation slot until this is dropped.
#[derive(Debug)]
pub struct Picked<C> {
    /// The replica.
    pub member: Arc<Member<C>>,
    pub(super) probation: bool,
}

impl<C> std::ops::Deref for Picked<C> {
    type Target = Member<C>;

    fn deref(&self) -> &Member<C> {
        &self.member
    }
}

impl<C> Drop for Picked<C> {
    fn drop(&mut self) {
        if self.probation {
            self.member.probing.store(false, Ordering::Release);
        }
    }
}

/// A call in flight to a replica, counted until dropped (answered, failed
/// or cancelled).
#[derive(Debug)]
pub(in crate::client) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<C> Member<C> {
    /// Counts a call to this replica until the guard is dropped.
    pub(in crate::client) fn call_starts(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    /// Calls in flight to this replica.
    pub fn calls_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn regular(&self) -> bool {
        !self.on_probation.load(Ordering::Relaxed)
    }
}

impl<C> ReplicaPool<C> {
    /// The replica for the next call, other than `avoid`: the next in
    /// rotation, or the one after it if that has fewer calls in flight; one
    /// on probation only if no probation call is in flight to it. None when
    /// no replica can take the call: the caller fails it at once (see
    /// [`super::unsent`]).
    pub fn pick(&self, avoid: Option<SocketAddr>) -> Option<Picked<C>> {
        let members = self.snapshot();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut candidates = (0..members.len())
            .map(|i| &members[(start + i) % members.len()])
            .filter(|m| Some(m.addr) != avoid && !m.is_down());
        let first = candidates.find_map(claim)?;
        if first.probation {
            return Some(first);
        }
        match candidates.find(|m| m.regular()) {
            Some(second) if second.calls_in_flight() < first.calls_in_flight() => Some(Picked {
                member: second.clone(),
                probation: false,
            }),
            _ => Some(first),
        }
    }
}

/// `member` for a call: at once if it is in rotation, or if it is on
/// probation and its one probation slot is free (then taken).
fn claim<C>(member: &Arc<Member<C>>) -> Option<Picked<C>> {
    let probation = !member.regular();
    let free = !probation
        || member
            .probing
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
    free.then(|| Picked {
        member: member.clone(),
        probation,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::client::pool::tests::{addrs, pool};

    /// Replicas picked in `picks` picks, and how often each.
    fn counts(pool: &ReplicaPool<SocketAddr>, picks: usize) -> HashMap<SocketAddr, usize> {
        let mut counts = HashMap::new();
        for _ in 0..picks {
            *counts
                .entry(pool.pick(None).expect("a member").addr)
                .or_default() += 1;
        }
        counts
    }

    #[tokio::test]
    async fn a_replica_with_calls_in_flight_is_passed_over_for_an_idle_one() {
        let pool = pool();
        pool.update(&addrs(&[1, 2, 3]));
        let members = pool.snapshot();
        let busy = &members[0];

        let call = busy.call_starts();
        let while_busy = counts(&pool, 300);
        assert_eq!(while_busy.get(&busy.addr), None, "{while_busy:?}");
        assert_eq!(while_busy.values().sum::<usize>(), 300);

        drop(call);
        assert_eq!(busy.calls_in_flight(), 0);
        let idle = counts(&pool, 300);
        assert_eq!(
            idle.get(&busy.addr),
            Some(&100),
            "round-robin again: {idle:?}"
        );
    }

    #[tokio::test]
    async fn the_busier_of_two_still_takes_calls_when_the_other_is_busier_yet() {
        let pool = pool();
        pool.update(&addrs(&[1, 2]));
        let members = pool.snapshot();
        let _one = members[0].call_starts();
        let _two = [members[1].call_starts(), members[1].call_starts()];

        let counts = counts(&pool, 100);
        assert_eq!(counts.get(&members[0].addr), Some(&100), "{counts:?}");
    }

    #[tokio::test]
    async fn a_replica_on_probation_takes_its_one_call_however_busy_the_next() {
        let pool = pool();
        pool.update(&addrs(&[1, 2]));
        let members = pool.snapshot();
        members[0].on_probation.store(true, Ordering::Relaxed);
        let _busy = [members[0].call_starts(), members[1].call_starts()];

        let probation = (0..2)
            .find_map(|_| pool.pick(None).filter(|picked| picked.probation))
            .expect("the probation call goes out");
        assert_eq!(probation.addr, members[0].addr);
        for _ in 0..10 {
            let picked = pool.pick(None).expect("the other is in rotation");
            assert_eq!(picked.addr, members[1].addr, "one probation call at a time");
        }
    }
}
