//! Taking a replica that fails calls out of rotation, with back-off, and
//! bringing it back: by a health check once its ejection is over, then on
//! probation until a call succeeds (see the pool's module docs).

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::time::Instant;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::{Member, ReplicaPool};

/// A replica's ejection history.
#[derive(Debug, Default)]
pub(super) struct Ejections {
    /// Consecutive ejections.
    pub(super) count: u32,
    /// Out of rotation until then, whatever health checks say.
    pub(super) until: Option<Instant>,
    /// When it last came back fully (a call succeeded after an ejection).
    pub(super) back_since: Option<Instant>,
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

    /// The consecutive ejections still counted, of `count`, after a replica
    /// served well for `served`: each is paid back by serving well for as
    /// long as it lasted, the latest first, and `max` pays back all. So a
    /// replica that fails now and then, between long spells of good
    /// service, is not held out for ever longer (as Envoy lowers its
    /// ejection multiplier while a host stays healthy), while one that
    /// fails each call it is given goes on doubling.
    pub fn paid_back(&self, mut count: u32, mut served: Duration) -> u32 {
        if served >= self.max {
            return 0;
        }
        while count > 0 && served >= self.length(count) {
            served -= self.length(count);
            count -= 1;
        }
        count
    }
}

impl<C> Member<C> {
    pub(super) fn ejections(&self) -> std::sync::MutexGuard<'_, Ejections> {
        // A poisoned lock only means a panic while updating plain numbers.
        self.ejections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<C> ReplicaPool<C> {
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
            if let Some(since) = ejections.back_since {
                ejections.count = self
                    .ejection
                    .paid_back(ejections.count, now.duration_since(since));
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
            "{} replica out of rotation", self.service
        );
    }

    /// Notes that a replica answered a call: one on probation is fully
    /// back, and one out of rotation (ejected while the call was in flight,
    /// by another call's failure) is put back, into the pool too if a probe
    /// round swapped it for a spare meanwhile.
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
            tracing::info!(endpoint = %member.addr, "{} replica back in rotation: it answered a call", self.service);
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
        tracing::info!(endpoint = %member.addr, "{} replica back in the pool: it answered a call after making room for a spare", self.service);
        self.replace_members(members);
    }

    /// Swaps the replicas out of rotation for spares, if any, then
    /// health-checks every replica out of rotation whose ejection is over,
    /// all at once, and puts back those that answer SERVING within
    /// `timeout` (on probation if they were ejected); a check not answered
    /// in time closes its connection (see [`crate::client::H2Channel::disconnect`]). When no replica is in
    /// rotation, every one is checked, its ejection over or not: ejection
    /// prefers the replicas that serve well, and there are none, so one
    /// that answers is worth a probation call (one at a time) rather than
    /// pages waiting out a back-off that earlier faults made long. Returns
    /// the addresses that left the pool.
    pub async fn probe_down(&self, timeout: Duration) -> Vec<SocketAddr> {
        let left = self.swap_down_for_spares();
        let members = self.snapshot();
        let now = Instant::now();
        let none_in_rotation = members.iter().all(|member| member.is_down());
        let due = |member: &&Arc<Member<C>>| {
            member.is_down()
                && (none_in_rotation || member.ejections().until.is_none_or(|until| until <= now))
        };
        let checks = members.iter().filter(due).map(|member| async move {
            let mut health = HealthClient::new(member.channel.clone());
            let check = health.check(HealthCheckRequest {
                service: String::new(),
            });
            let answer = tokio::time::timeout(timeout, check).await;
            if answer.is_err() {
                // Unanswered, as a keep-alive ping can be: the connection
                // is believed dead, and the next probe dials a new one.
                member.channel.disconnect();
            }
            if let Ok(Ok(response)) = answer
                && response.into_inner().status() == ServingStatus::Serving
            {
                // After an ejection, one call at a time until one succeeds.
                let ejected = member.ejections().count > 0;
                member.on_probation.store(ejected, Ordering::Relaxed);
                member.down.store(false, Ordering::Relaxed);
                tracing::info!(endpoint = %member.addr, on_probation = ejected, "{} replica back in rotation", self.service);
            }
        });
        futures_util::future::join_all(checks).await;
        left
    }
}
