//! Spreading calls over every recommendations replica.
//!
//! A gRPC channel is one long-lived HTTP/2 connection, so one channel to a
//! Service name would send every call to whichever replica it connected to.
//! The [`Pool`] instead holds one lazily connected channel per replica
//! address that [`discovery`] finds, picks them round-robin, and takes a
//! replica that failed out of rotation until it answers a health check
//! again. The client retries an idempotent call that failed with
//! UNAVAILABLE once, on another replica (see `client`).

pub mod discovery;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// One replica: its address, its channel, and whether it is in rotation.
#[derive(Debug)]
pub struct Member<C> {
    /// The replica's address.
    pub addr: SocketAddr,
    /// The address as text, as metric labels want it (formatted once).
    pub endpoint: String,
    /// The client over this replica's channel (with the client layers).
    pub client: C,
    /// The bare channel, for health checks that should not count as calls.
    channel: Channel,
    down: AtomicBool,
}

impl<C> Member<C> {
    /// Whether the replica is out of rotation.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
}

/// Makes the channel and client of a newly found replica.
pub type Connect<C> = Box<dyn Fn(SocketAddr) -> (Channel, C) + Send + Sync>;

/// The current replicas: an immutable list swapped whole on each update, so
/// that a pick only clones an `Arc`.
type Members<C> = Arc<RwLock<Arc<[Arc<Member<C>>]>>>;

/// The replicas, shared by every request. Cloning shares the pool.
pub struct Pool<C> {
    members: Members<C>,
    next: Arc<AtomicUsize>,
    connect: Arc<Connect<C>>,
}

impl<C> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Self {
            members: self.members.clone(),
            next: self.next.clone(),
            connect: self.connect.clone(),
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
    /// An empty pool; `connect` builds the channel of each replica found.
    pub fn new(connect: Connect<C>) -> Self {
        Self {
            members: Arc::new(RwLock::new(Arc::from(Vec::new()))),
            next: Arc::new(AtomicUsize::new(0)),
            connect: Arc::new(connect),
        }
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

    /// Makes the pool hold exactly `addresses`: replicas still listed keep
    /// their channel (and connection); new ones join in rotation; others go.
    pub fn update(&self, addresses: &BTreeSet<SocketAddr>) {
        let current: BTreeMap<SocketAddr, Arc<Member<C>>> = self
            .snapshot()
            .iter()
            .map(|m| (m.addr, m.clone()))
            .collect();
        if current.keys().eq(addresses.iter()) {
            return;
        }
        let members: Vec<Arc<Member<C>>> = addresses
            .iter()
            .map(|addr| match current.get(addr) {
                Some(member) => member.clone(),
                None => {
                    tracing::info!(endpoint = %addr, "recommendations replica joins the pool");
                    let (channel, client) = (self.connect)(*addr);
                    Arc::new(Member {
                        addr: *addr,
                        endpoint: addr.to_string(),
                        client,
                        channel,
                        down: AtomicBool::new(false),
                    })
                }
            })
            .collect();
        for gone in current.keys().filter(|addr| !addresses.contains(addr)) {
            tracing::info!(endpoint = %gone, "recommendations replica leaves the pool");
        }
        *self
            .members
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::from(members);
    }

    /// The next replica in rotation, other than `avoid`. When every replica
    /// is out of rotation, the next one anyway: a call that may fail beats a
    /// page that surely does.
    pub fn pick(&self, avoid: Option<SocketAddr>) -> Option<Arc<Member<C>>> {
        let members = self.snapshot();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = (0..members.len())
            .map(|i| &members[(start + i) % members.len()])
            .filter(|m| Some(m.addr) != avoid);
        let mut fallback = None;
        for member in candidates {
            if !member.is_down() {
                return Some(member.clone());
            }
            fallback.get_or_insert(member);
        }
        fallback.cloned()
    }

    /// Takes a replica out of rotation until [`Pool::probe_down`] finds it
    /// serving again.
    pub fn mark_down(&self, member: &Member<C>) {
        if !member.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(endpoint = %member.addr, "recommendations replica out of rotation");
        }
    }

    /// Health-checks every replica out of rotation, and puts back those
    /// that answer SERVING.
    pub async fn probe_down(&self, timeout: Duration) {
        for member in self.snapshot().iter().filter(|m| m.is_down()) {
            let mut health = HealthClient::new(member.channel.clone());
            let check = health.check(HealthCheckRequest {
                service: String::new(),
            });
            if let Ok(Ok(response)) = tokio::time::timeout(timeout, check).await
                && response.into_inner().status() == ServingStatus::Serving
            {
                member.down.store(false, Ordering::Relaxed);
                tracing::info!(endpoint = %member.addr, "recommendations replica back in rotation");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tonic::transport::Endpoint;

    use super::*;

    fn pool() -> Pool<SocketAddr> {
        Pool::new(Box::new(|addr| {
            let channel = Endpoint::from_shared(format!("http://{addr}"))
                .map(|e| e.connect_lazy())
                .unwrap_or_else(|err| panic!("a valid URI: {err}"));
            (channel, addr)
        }))
    }

    fn addrs(ports: &[u16]) -> BTreeSet<SocketAddr> {
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
        let down = pool.pick(None).expect("a member");
        pool.mark_down(&down);

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
            pool.mark_down(&member);
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
        pool.mark_down(&first);

        pool.update(&addrs(&[1, 3]));

        assert_eq!(
            pool.addresses(),
            addrs(&[1, 3]).into_iter().collect::<Vec<_>>()
        );
        let kept = pool
            .pick(Some(SocketAddr::from(([127, 0, 0, 1], 3))))
            .expect("member 1");
        assert!(Arc::ptr_eq(&kept, &first) && kept.is_down());
    }
}
