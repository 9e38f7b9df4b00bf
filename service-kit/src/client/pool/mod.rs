//! Spreading calls over every replica of a service.
//!
//! A gRPC channel is one long-lived HTTP/2 connection, so one channel to a
//! Service name would send every call to whichever replica it connected to.
//! The [`ReplicaPool`] instead holds one lazily connected channel per replica
//! address that [`super::discovery`] finds, gives each call the less busy of
//! the next two in round-robin order ([`pick`]), and takes a replica that
//! failed out of rotation until it answers a health check again. A call that fails for its replica's sake runs once more on
//! another, if it may run twice and the retry budget allows ([`super::retry`]).
//!
//! Taking a replica out is outlier ejection with back-off, as Envoy does
//! it: a replica that fails a call (refuses it, breaks the connection, or
//! misses the deadline) is out for [`Ejection::base`], doubled with each
//! consecutive ejection up to [`Ejection::max`], however well it answers
//! health checks meanwhile. When the time is up and a health check passes,
//! it is back on probation: one call at a time until one succeeds. So a
//! replica that answers health at once but is slow where it matters costs
//! one page per ejection, ever rarer, instead of every page it is given
//! for a deadline each time a probe lets it back in.
//!
//! When no replica is in rotation, a call fails at once with UNAVAILABLE
//! instead of going to one out of rotation ([`unsent`]): a circuit breaker
//! open for the whole service, as Finagle's failure accrual and
//! resilience4j do it, and unlike Envoy's panic mode, which routes to every
//! host then and so costs each page the deadline while a partition lasts.
//! The health probes keep running meanwhile, on every replica whatever its
//! ejection has left to run, and the first that answers one is back on
//! probation (the half-open state).
//!
//! The pool holds at most `max_replicas` members. When a name stands for
//! more addresses, the rest wait as spares, and members join out of
//! rotation, put in by a health check: each probe round replaces the
//! members out of rotation with spares, so that a name with thousands of
//! addresses, most of them dead, still finds the live ones while channels,
//! connections and health checks stay bounded, and pages go only to
//! replicas that answered.

mod ejection;
mod pick;
#[cfg(test)]
pub(crate) mod tests;
mod unsent;

pub use ejection::Ejection;
use ejection::Ejections;
pub use pick::Picked;
use unsent::Unsent;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    num::NonZeroUsize,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use super::channel::H2Channel;

/// One replica: its address, its channel, and whether it is in rotation.
#[derive(Debug)]
pub struct Member<C> {
    /// The replica's address.
    pub addr: SocketAddr,
    /// The client over this replica's channel (with the client layers).
    pub client: C,
    /// The bare channel, for health checks that should not count as calls.
    channel: H2Channel,
    /// Out of rotation.
    down: AtomicBool,
    /// Back in rotation after an ejection, until a call succeeds.
    on_probation: AtomicBool,
    /// A probation call is in flight (one at a time).
    probing: AtomicBool,
    /// Calls in flight to it (see [`pick`]).
    in_flight: AtomicUsize,
    ejections: Mutex<Ejections>,
}

impl<C> Member<C> {
    /// Whether the replica is out of rotation.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
}

/// How many replicas are in each state, as the replicas gauge
/// ([`super::ReplicaStates`]) reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Members taking calls (those on probation included).
    pub in_rotation: usize,
    /// Members out of rotation: ejected, or failing health checks.
    pub out_of_rotation: usize,
    /// Addresses listed beyond the cap, waiting to replace a member.
    pub spare: usize,
}

/// Makes the channel and client of a newly found replica.
pub type Connect<C> = Box<dyn Fn(SocketAddr) -> (H2Channel, C) + Send + Sync>;

/// The current replicas: an immutable list swapped whole on each update, so
/// that a pick only clones an `Arc`.
type Members<C> = Arc<RwLock<Arc<[Arc<Member<C>>]>>>;

/// The replicas, shared by every request. Cloning shares the pool.
pub struct ReplicaPool<C> {
    /// The service the replicas serve, as the logs name it.
    service: &'static str,
    members: Members<C>,
    next: Arc<AtomicUsize>,
    connect: Arc<Connect<C>>,
    max_members: NonZeroUsize,
    /// Addresses listed by discovery that are not members, over the cap.
    spares: Arc<RwLock<Vec<SocketAddr>>>,
    ejection: Ejection,
    /// Calls that found no replica to take them.
    unsent: Arc<Unsent>,
}

impl<C> Clone for ReplicaPool<C> {
    fn clone(&self) -> Self {
        Self {
            service: self.service,
            members: self.members.clone(),
            next: self.next.clone(),
            connect: self.connect.clone(),
            max_members: self.max_members,
            spares: self.spares.clone(),
            ejection: self.ejection,
            unsent: self.unsent.clone(),
        }
    }
}

impl<C> std::fmt::Debug for ReplicaPool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaPool")
            .field("members", &self.addresses())
            .finish_non_exhaustive()
    }
}

impl<C> ReplicaPool<C> {
    /// An empty pool of at most `max_members` replicas of `service`,
    /// ejecting replicas that fail for as long as `ejection` says; `connect`
    /// builds the channel of each replica found.
    pub fn new(
        service: &'static str,
        connect: Connect<C>,
        max_members: NonZeroUsize,
        ejection: Ejection,
    ) -> Self {
        Self {
            service,
            members: Arc::new(RwLock::new(Arc::from(Vec::new()))),
            next: Arc::new(AtomicUsize::new(0)),
            connect: Arc::new(connect),
            max_members,
            spares: Arc::default(),
            ejection,
            unsent: Arc::default(),
        }
    }

    fn join(&self, addr: SocketAddr, down: bool) -> Arc<Member<C>> {
        let (channel, client) = (self.connect)(addr);
        Arc::new(Member {
            addr,
            client,
            channel,
            down: AtomicBool::new(down),
            on_probation: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            ejections: Mutex::default(),
        })
    }

    fn replace_members(&self, members: Vec<Arc<Member<C>>>) {
        *self
            .members
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::from(members);
    }

    pub(crate) fn snapshot(&self) -> Arc<[Arc<Member<C>>]> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc:
        // the Arc inside is still whole.
        self.members
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The service the replicas serve.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The replicas' addresses.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.snapshot().iter().map(|m| m.addr).collect()
    }

    /// How many replicas are in rotation, out of it, and spare.
    pub fn census(&self) -> Census {
        let members = self.snapshot();
        let out_of_rotation = members.iter().filter(|m| m.is_down()).count();
        Census {
            in_rotation: members.len() - out_of_rotation,
            out_of_rotation,
            spare: self
                .spares
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .len(),
        }
    }

    /// Makes the pool hold `addresses`, at most `max_members` of them:
    /// replicas still listed keep their channel (and connection), those in
    /// rotation first; new ones join in rotation; the rest of the list
    /// waits as spares. Returns the addresses that left the pool.
    pub fn update(&self, addresses: &BTreeSet<SocketAddr>) -> Vec<SocketAddr> {
        let current = self.snapshot();
        let cap = self.max_members.get();
        let listed = |m: &&Arc<Member<C>>| addresses.contains(&m.addr);
        let up = current.iter().filter(listed).filter(|m| !m.is_down());
        let down = current.iter().filter(listed).filter(|m| m.is_down());
        let mut members: Vec<Arc<Member<C>>> = up.chain(down).take(cap).cloned().collect();
        let kept: BTreeSet<SocketAddr> = members.iter().map(|m| m.addr).collect();
        // The spares keep their order (the next to try last), so that
        // each address is tried in turn; newly listed ones come first, in
        // random order, so that replicas behind a name that lists more
        // than the cap share the load over time.
        let mut spares = self
            .spares
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let old_spares: BTreeSet<SocketAddr> = spares.iter().copied().collect();
        spares.retain(|addr| addresses.contains(addr) && !kept.contains(addr));
        let mut new: Vec<SocketAddr> = addresses
            .iter()
            .filter(|addr| !kept.contains(addr) && !old_spares.contains(addr))
            .copied()
            .collect();
        shuffle(&mut new);
        spares.extend(new);
        let room = (cap - members.len()).min(spares.len());
        let first_joining = spares.len() - room;
        let joining = spares.split_off(first_joining);
        // When the name lists more than the pool holds, anything may be
        // behind it (thousands of dead addresses): newcomers then join out
        // of rotation and are put in by a health check. Otherwise they take
        // calls at once, as a replica added by scaling up should.
        let on_probation = !spares.is_empty();
        for addr in joining {
            tracing::info!(endpoint = %addr, on_probation, "{} replica joins the pool", self.service);
            members.push(self.join(addr, on_probation));
        }
        members.sort_by_key(|m| m.addr);
        let left: Vec<SocketAddr> = current
            .iter()
            .filter(|m| !members.iter().any(|kept| kept.addr == m.addr))
            .map(|m| m.addr)
            .collect();
        for gone in &left {
            tracing::info!(endpoint = %gone, "{} replica leaves the pool", self.service);
        }
        drop(spares);
        let changed = !left.is_empty()
            || members.len() != current.len()
            || members
                .iter()
                .zip(current.iter())
                .any(|(a, b)| a.addr != b.addr);
        if changed {
            self.replace_members(members);
        }
        left
    }

    /// Swaps each member out of rotation for a spare, if there are spares;
    /// the spare joins out of rotation, to be put in by a health check.
    /// Returns the addresses that left the pool.
    fn swap_down_for_spares(&self) -> Vec<SocketAddr> {
        let mut spares = self
            .spares
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if spares.is_empty() {
            return Vec::new();
        }
        let current = self.snapshot();
        let mut left = Vec::new();
        let members: Vec<Arc<Member<C>>> = current
            .iter()
            .map(|member| match member.is_down().then(|| spares.pop()).flatten() {
                Some(spare) => {
                    tracing::debug!(endpoint = %member.addr, spare = %spare, "a replica out of rotation makes room for a spare");
                    // The one swapped out goes to the back of the spares.
                    spares.insert(0, member.addr);
                    left.push(member.addr);
                    self.join(spare, true)
                }
                None => member.clone(),
            })
            .collect();
        drop(spares);
        if !left.is_empty() {
            self.replace_members(members);
        }
        left
    }
}

/// Fisher-Yates, with the thread's RNG.
fn shuffle<T>(items: &mut [T]) {
    use rand::seq::SliceRandom as _;
    items.shuffle(&mut rand::rng());
}
