//! Spreading calls over every recommendations replica.
//!
//! A gRPC channel is one long-lived HTTP/2 connection, so one channel to a
//! Service name would send every call to whichever replica it connected to.
//! The [`Pool`] instead holds one lazily connected channel per replica
//! address that [`discovery`] finds, picks them round-robin, and takes a
//! replica that failed out of rotation until it answers a health check
//! again. A call that fails for its replica's sake runs once more on
//! another, if it may run twice and the retry budget allows ([`retry`]).
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
//! The pool holds at most `max_replicas` members. When a name stands for
//! more addresses, the rest wait as spares, and members join out of
//! rotation, put in by a health check: each probe round replaces the
//! members out of rotation with spares, so that a name with thousands of
//! addresses, most of them dead, still finds the live ones while channels,
//! connections and health checks stay bounded, and pages go only to
//! replicas that answered.

pub mod discovery;
pub mod retry;
pub mod retry_budget;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    num::NonZeroUsize,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use service_kit::rpc::H2Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

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
    ejections: Mutex<Ejections>,
}

/// A replica's ejection history.
#[derive(Debug, Default)]
struct Ejections {
    /// Consecutive ejections.
    count: u32,
    /// Out of rotation until then, whatever health checks say.
    until: Option<Instant>,
    /// When it last came back fully (a call succeeded after an ejection).
    back_since: Option<Instant>,
}

impl<C> Member<C> {
    /// Whether the replica is out of rotation.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    fn ejections(&self) -> std::sync::MutexGuard<'_, Ejections> {
        // A poisoned lock only means a panic while updating plain numbers.
        self.ejections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How long replicas that fail calls are out of rotation.
#[derive(Clone, Copy, Debug)]
pub struct Ejection {
    /// The first ejection's length, doubled with each consecutive one.
    pub base: Duration,
    /// The longest ejection. A replica that served well for this long
    /// starts again from `base`.
    pub max: Duration,
}

impl Ejection {
    /// The length of the `count`-th consecutive ejection (from 1).
    pub fn length(&self, count: u32) -> Duration {
        let doublings = count.saturating_sub(1).min(30);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }
}

/// How many replicas are in each state, as the `marketplace_replicas`
/// gauge reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Members taking calls (those on probation included).
    pub in_rotation: usize,
    /// Members out of rotation: ejected, or failing health checks.
    pub out_of_rotation: usize,
    /// Addresses listed beyond the cap, waiting to replace a member.
    pub spare: usize,
}

/// A replica picked for a call. A probation call holds the replica's only
/// probation slot until this is dropped.
#[derive(Debug)]
pub struct Picked<C> {
    /// The replica.
    pub member: Arc<Member<C>>,
    probation: bool,
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

/// Makes the channel and client of a newly found replica.
pub type Connect<C> = Box<dyn Fn(SocketAddr) -> (H2Channel, C) + Send + Sync>;

/// The current replicas: an immutable list swapped whole on each update, so
/// that a pick only clones an `Arc`.
type Members<C> = Arc<RwLock<Arc<[Arc<Member<C>>]>>>;

/// The replicas, shared by every request. Cloning shares the pool.
pub struct Pool<C> {
    members: Members<C>,
    next: Arc<AtomicUsize>,
    connect: Arc<Connect<C>>,
    max_members: NonZeroUsize,
    /// Addresses listed by discovery that are not members, over the cap.
    spares: Arc<RwLock<Vec<SocketAddr>>>,
    ejection: Ejection,
}

impl<C> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Self {
            members: self.members.clone(),
            next: self.next.clone(),
            connect: self.connect.clone(),
            max_members: self.max_members,
            spares: self.spares.clone(),
            ejection: self.ejection,
        }
    }
}

impl<C> std::fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("members", &self.addresses())
            .finish_non_exhaustive()
    }
}

impl<C> Pool<C> {
    /// An empty pool of at most `max_members`, ejecting replicas that fail
    /// for as long as `ejection` says; `connect` builds the channel of each
    /// replica found.
    pub fn new(connect: Connect<C>, max_members: NonZeroUsize, ejection: Ejection) -> Self {
        Self {
            members: Arc::new(RwLock::new(Arc::from(Vec::new()))),
            next: Arc::new(AtomicUsize::new(0)),
            connect: Arc::new(connect),
            max_members,
            spares: Arc::default(),
            ejection,
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
            ejections: Mutex::default(),
        })
    }

    fn replace_members(&self, members: Vec<Arc<Member<C>>>) {
        *self
            .members
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::from(members);
    }

    fn snapshot(&self) -> Arc<[Arc<Member<C>>]> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc:
        // the Arc inside is still whole.
        self.members
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
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
            tracing::info!(endpoint = %addr, on_probation, "recommendations replica joins the pool");
            members.push(self.join(addr, on_probation));
        }
        members.sort_by_key(|m| m.addr);
        let left: Vec<SocketAddr> = current
            .iter()
            .filter(|m| !members.iter().any(|kept| kept.addr == m.addr))
            .map(|m| m.addr)
            .collect();
        for gone in &left {
            tracing::info!(endpoint = %gone, "recommendations replica leaves the pool");
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

    /// The next replica in rotation, other than `avoid`; one on probation
    /// only if no probation call is in flight to it. When every replica is
    /// out of rotation, the next one anyway: a call that may fail beats a
    /// page that surely does.
    pub fn pick(&self, avoid: Option<SocketAddr>) -> Option<Picked<C>> {
        let members = self.snapshot();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = (0..members.len())
            .map(|i| &members[(start + i) % members.len()])
            .filter(|m| Some(m.addr) != avoid);
        let mut fallback = None;
        for member in candidates {
            if member.is_down() {
                fallback.get_or_insert(member);
                continue;
            }
            if !member.on_probation.load(Ordering::Relaxed) {
                return Some(Picked {
                    member: member.clone(),
                    probation: false,
                });
            }
            if member
                .probing
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Some(Picked {
                    member: member.clone(),
                    probation: true,
                });
            }
        }
        fallback.map(|member| Picked {
            member: member.clone(),
            probation: false,
        })
    }

    /// Ejects a replica that failed a call: out of rotation for the next
    /// ejection's length (see [`Ejection`]), until a health check then
    /// passes.
    pub fn eject(&self, member: &Member<C>) {
        let now = Instant::now();
        let length = {
            let mut ejections = member.ejections();
            if ejections.until.is_some_and(|until| until > now) {
                // Already out: another call in flight to it failed too.
                return;
            }
            if ejections
                .back_since
                .is_some_and(|since| now.duration_since(since) >= self.ejection.max)
            {
                ejections.count = 0;
            }
            ejections.count = ejections.count.saturating_add(1);
            let length = self.ejection.length(ejections.count);
            ejections.until = Some(now + length);
            ejections.back_since = None;
            length
        };
        member.on_probation.store(false, Ordering::Relaxed);
        member.down.store(true, Ordering::Relaxed);
        tracing::warn!(
            endpoint = %member.addr,
            out_for = ?length,
            "recommendations replica out of rotation"
        );
    }

    /// Notes that a replica answered a call: one on probation is fully
    /// back, and one out of rotation (tried because every replica was) is
    /// put back, into the pool too if a probe round swapped it for a spare
    /// while the call was in flight.
    pub fn answered(&self, member: &Arc<Member<C>>) {
        if !member.is_down() && !member.on_probation.load(Ordering::Relaxed) {
            return;
        }
        let was_down = member.down.swap(false, Ordering::Relaxed);
        let was_on_probation = member.on_probation.swap(false, Ordering::Relaxed);
        if was_down || was_on_probation {
            let mut ejections = member.ejections();
            ejections.until = None;
            ejections.back_since = Some(Instant::now());
            drop(ejections);
            tracing::info!(endpoint = %member.addr, "recommendations replica back in rotation: it answered a call");
            self.readmit(member);
        }
    }

    /// Puts `member` back in the pool if it was swapped out for a spare and
    /// discovery still lists it (it waits among the spares): in place of a
    /// member out of rotation, which becomes a spare, or in free room.
    /// Otherwise the replica that answered would wait behind every spare
    /// while pages go to members that never answer.
    fn readmit(&self, member: &Arc<Member<C>>) {
        let mut spares = self
            .spares
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.snapshot();
        if current.iter().any(|m| m.addr == member.addr) {
            return;
        }
        let Some(spare) = spares.iter().position(|addr| *addr == member.addr) else {
            // No longer listed: it has left for good.
            return;
        };
        let mut members = current.to_vec();
        match members.iter().position(|m| m.is_down()) {
            Some(slot) => {
                spares.remove(spare);
                // The one it replaces goes to the back of the spares.
                spares.insert(0, members[slot].addr);
                members[slot] = member.clone();
            }
            None if members.len() < self.max_members.get() => {
                spares.remove(spare);
                members.push(member.clone());
            }
            None => return,
        }
        members.sort_by_key(|m| m.addr);
        tracing::info!(endpoint = %member.addr, "recommendations replica back in the pool: it answered a call after making room for a spare");
        self.replace_members(members);
    }

    /// Swaps the replicas out of rotation for spares, if any, then
    /// health-checks every replica out of rotation whose ejection is over,
    /// all at once, and puts back those that answer SERVING within
    /// `timeout` (on probation if they were ejected). Returns the
    /// addresses that left the pool.
    pub async fn probe_down(&self, timeout: Duration) -> Vec<SocketAddr> {
        let left = self.swap_down_for_spares();
        let members = self.snapshot();
        let now = Instant::now();
        let due = |member: &&Arc<Member<C>>| {
            member.is_down() && member.ejections().until.is_none_or(|until| until <= now)
        };
        let checks = members.iter().filter(due).map(|member| async move {
            let mut health = HealthClient::new(member.channel.clone());
            let check = health.check(HealthCheckRequest {
                service: String::new(),
            });
            if let Ok(Ok(response)) = tokio::time::timeout(timeout, check).await
                && response.into_inner().status() == ServingStatus::Serving
            {
                // After an ejection, one call at a time until one succeeds.
                let ejected = member.ejections().count > 0;
                member.on_probation.store(ejected, Ordering::Relaxed);
                member.down.store(false, Ordering::Relaxed);
                tracing::info!(endpoint = %member.addr, on_probation = ejected, "recommendations replica back in rotation");
            }
        });
        futures_util::future::join_all(checks).await;
        left
    }
}

/// Fisher-Yates, with the thread's RNG.
fn shuffle<T>(items: &mut [T]) {
    use rand::seq::SliceRandom as _;
    items.shuffle(&mut rand::rng());
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use service_kit::rpc::ChannelSettings;

    use super::*;

    pub(crate) fn pool() -> Pool<SocketAddr> {
        pool_of(64)
    }

    fn pool_of(max: usize) -> Pool<SocketAddr> {
        Pool::new(
            Box::new(|addr| {
                let settings = ChannelSettings::new(
                    Duration::from_secs(1),
                    http::HeaderValue::from_static("test"),
                );
                (H2Channel::lazy(addr, settings), addr)
            }),
            NonZeroUsize::new(max).expect("not zero"),
            Ejection {
                base: Duration::from_secs(2),
                max: Duration::from_secs(300),
            },
        )
    }

    pub(crate) fn addrs(ports: &[u16]) -> BTreeSet<SocketAddr> {
        ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect()
    }

    #[tokio::test]
    async fn picks_go_round_robin_over_every_replica() {
        let pool = pool();
        pool.update(&addrs(&[1, 2, 3]));

        let mut counts: HashMap<SocketAddr, usize> = HashMap::new();
        for _ in 0..300 {
            *counts
                .entry(pool.pick(None).expect("a member").addr)
                .or_default() += 1;
        }

        assert_eq!(
            counts.values().copied().collect::<Vec<_>>(),
            [100, 100, 100]
        );
    }

    #[tokio::test]
    async fn a_replica_out_of_rotation_is_skipped_and_avoid_is_honoured() {
        let pool = pool();
        pool.update(&addrs(&[1, 2, 3]));
        let down = pool.pick(None).expect("a member").member.clone();
        pool.eject(&down);

        for _ in 0..30 {
            let picked = pool.pick(None).expect("a member");
            assert_ne!(picked.addr, down.addr);
            let other = pool.pick(Some(picked.addr)).expect("another member");
            assert_ne!(other.addr, picked.addr);
        }
    }

    #[tokio::test]
    async fn with_every_replica_down_a_pick_still_returns_one() {
        let pool = pool();
        pool.update(&addrs(&[1, 2]));
        for _ in 0..2 {
            let member = pool.pick(None).expect("a member");
            pool.eject(&member);
        }

        assert!(pool.pick(None).is_some());
        assert!(
            pool.pick(Some(SocketAddr::from(([127, 0, 0, 1], 1))))
                .is_some()
        );
    }

    #[tokio::test]
    async fn updates_keep_known_replicas_and_their_state() {
        let pool = pool();
        pool.update(&addrs(&[1, 2]));
        let first = pool
            .pick(Some(SocketAddr::from(([127, 0, 0, 1], 2))))
            .expect("member 1");
        pool.eject(&first);

        pool.update(&addrs(&[1, 3]));

        assert_eq!(
            pool.addresses(),
            addrs(&[1, 3]).into_iter().collect::<Vec<_>>()
        );
        let kept = pool
            .pick(Some(SocketAddr::from(([127, 0, 0, 1], 3))))
            .expect("member 1");
        assert!(Arc::ptr_eq(&kept.member, &first.member) && kept.is_down());
    }

    /// The race the discovery test found: every member is out of rotation,
    /// a page tries one anyway, and the probe round swaps that member for a
    /// spare while the call is in flight. When it answers, it comes back
    /// into the pool, not only into rotation.
    #[tokio::test]
    async fn a_replica_that_answers_after_making_room_for_a_spare_comes_back() {
        let pool = pool_of(3);
        pool.update(&addrs(&(1..=10).collect::<Vec<_>>()));
        assert!(pool.snapshot().iter().all(|m| m.is_down()));
        let in_flight = pool.pick(None).expect("a member out of rotation");

        let swapped = pool.swap_down_for_spares();
        assert!(swapped.contains(&in_flight.addr));
        assert!(!pool.addresses().contains(&in_flight.addr));

        pool.answered(&in_flight.member);

        let members = pool.snapshot();
        assert_eq!(members.len(), 3, "still at most the cap");
        let back = members
            .iter()
            .find(|m| m.addr == in_flight.addr)
            .expect("back in the pool");
        assert!(Arc::ptr_eq(back, &in_flight.member), "with its channel");
        assert!(!back.is_down());
        let spares = pool.spares.read().expect("not poisoned").clone();
        assert_eq!(spares.len(), 7);
        assert!(!spares.contains(&in_flight.addr));
        for _ in 0..6 {
            assert_eq!(pool.pick(None).expect("a member").addr, in_flight.addr);
        }
    }

    /// One that discovery no longer lists stays out.
    #[tokio::test]
    async fn a_replica_no_longer_listed_is_not_readmitted() {
        let pool = pool_of(3);
        pool.update(&addrs(&(1..=10).collect::<Vec<_>>()));
        let in_flight = pool.pick(None).expect("a member");
        pool.swap_down_for_spares();
        let rest: Vec<u16> = (1..=10).filter(|p| *p != in_flight.addr.port()).collect();
        pool.update(&addrs(&rest));

        pool.answered(&in_flight.member);

        assert!(!pool.addresses().contains(&in_flight.addr));
    }

    #[tokio::test]
    async fn the_pool_holds_at_most_its_cap_and_swaps_down_members_for_spares() {
        let pool = pool_of(3);
        let listed = addrs(&(1..=10).collect::<Vec<_>>());

        let left = pool.update(&listed);

        assert!(left.is_empty());
        let members = pool.addresses();
        assert_eq!(members.len(), 3);
        assert_eq!(pool.spares.read().expect("not poisoned").len(), 7);
        // With spares, members join out of rotation. One answers (and is
        // put in); the two others make room for spares.
        assert!(pool.snapshot().iter().all(|m| m.is_down()));
        let census = |in_rotation, out_of_rotation, spare| Census {
            in_rotation,
            out_of_rotation,
            spare,
        };
        assert_eq!(pool.census(), census(0, 3, 7));
        let up = pool.pick(None).expect("a member");
        pool.answered(&up.member);
        assert_eq!(pool.census(), census(1, 2, 7));
        let swapped = pool.swap_down_for_spares();
        assert_eq!(swapped.len(), 2);
        let now = pool.snapshot();
        assert_eq!(now.len(), 3);
        assert!(now.iter().any(|m| m.addr == up.addr && !m.is_down()));
        assert!(
            now.iter()
                .filter(|m| m.addr != up.addr)
                .all(|m| m.is_down())
        );
        assert!(
            swapped
                .iter()
                .all(|gone| now.iter().all(|m| m.addr != *gone))
        );
        // The two swapped out wait as spares, the two spares joined.
        assert_eq!(pool.census(), census(1, 2, 7));
        pool.eject(&up);
        assert_eq!(pool.census(), census(0, 3, 7));
        // The members in rotation are kept over others when the list shrinks.
        let left = pool.update(&listed);
        assert!(left.is_empty(), "{left:?}");
        assert!(pool.snapshot().iter().any(|m| m.addr == up.addr));
    }

    #[tokio::test]
    async fn an_update_reports_who_left() {
        let pool = pool();
        pool.update(&addrs(&[1, 2, 3]));

        let left = pool.update(&addrs(&[2, 3, 4]));

        assert_eq!(left, [SocketAddr::from(([127, 0, 0, 1], 1))]);
    }

    #[test]
    fn each_consecutive_ejection_is_twice_as_long_up_to_the_maximum() {
        let ejection = Ejection {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };

        let lengths: Vec<u64> = (1..=7).map(|n| ejection.length(n).as_secs()).collect();

        assert_eq!(lengths, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(ejection.length(u32::MAX), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn an_ejected_replica_is_not_probed_before_its_time_then_is_on_probation() {
        // Nothing listens: health checks fail, so state only changes by the
        // ejection clock and by calls.
        let pool = pool();
        pool.update(&addrs(&[1, 2]));
        let slow = pool.pick(None).expect("a member").member.clone();

        pool.eject(&slow);
        // Out for 2 s, whatever happens meanwhile; the other one takes calls.
        for _ in 0..10 {
            assert_ne!(pool.pick(None).expect("a member").addr, slow.addr);
        }
        assert!(slow.ejections().until.is_some());

        // Back (as a health check would put it) after the ejection: on
        // probation, one call at a time.
        tokio::time::advance(Duration::from_secs(3)).await;
        slow.on_probation.store(true, Ordering::Relaxed);
        slow.down.store(false, Ordering::Relaxed);
        let probation: Vec<Picked<SocketAddr>> = (0..6)
            .filter_map(|_| pool.pick(None))
            .filter(|picked| picked.addr == slow.addr)
            .collect();
        assert_eq!(probation.len(), 1, "one probation call at a time");
        assert!(probation[0].probation);

        // Its probation call fails: out again, for twice as long.
        pool.eject(&slow);
        drop(probation);
        let until = slow.ejections().until.expect("ejected");
        assert_eq!(until - Instant::now(), Duration::from_secs(4));

        // A call it then answers (every replica being out) brings it back.
        pool.answered(&slow);
        assert!(!slow.is_down());
        assert_eq!(slow.ejections().count, 2, "the history is kept");
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_that_served_well_for_the_maximum_starts_again_from_the_base() {
        let pool = pool();
        pool.update(&addrs(&[1]));
        let member = pool.pick(None).expect("a member").member.clone();
        for _ in 0..3 {
            pool.eject(&member);
            tokio::time::advance(Duration::from_secs(20)).await;
            pool.answered(&member);
        }
        assert_eq!(member.ejections().count, 3);

        tokio::time::advance(Duration::from_secs(300)).await;
        pool.eject(&member);

        assert_eq!(member.ejections().count, 1);
    }
}
