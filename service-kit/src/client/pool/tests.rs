//! The pool's picks, updates, ejections and probes.

use std::{collections::HashMap, time::Duration};

use tokio::time::Instant;

use crate::client::ChannelSettings;

use super::*;

pub(crate) fn pool() -> ReplicaPool<SocketAddr> {
    pool_of(64)
}

fn pool_of(max: usize) -> ReplicaPool<SocketAddr> {
    ReplicaPool::new(
        "test",
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
async fn with_every_replica_out_of_rotation_nothing_is_picked() {
    let pool = pool();
    pool.update(&addrs(&[1, 2]));
    for _ in 0..2 {
        let member = pool.pick(None).expect("a member");
        pool.eject(&member);
    }

    assert!(
        pool.pick(None).is_none(),
        "no fallback to a replica known out"
    );

    // Back by a health check: picked again.
    let back = pool.snapshot()[1].clone();
    back.down.store(false, Ordering::Relaxed);
    assert_eq!(pool.pick(None).expect("the one back").addr, back.addr);
    assert!(pool.pick(Some(back.addr)).is_none());
}

#[tokio::test]
async fn with_its_only_replica_on_probation_and_busy_the_pool_refuses_other_calls() {
    let pool = pool();
    pool.update(&addrs(&[1]));
    let member = pool.snapshot()[0].clone();
    member.on_probation.store(true, Ordering::Relaxed);

    let probation = pool.pick(None).expect("the probation call");
    assert!(pool.pick(None).is_none(), "half-open: one call at a time");
    assert!(pool.no_replica().message().contains("on probation"));
    drop(probation);
    assert!(pool.pick(None).is_some(), "its slot is free again");
}

#[tokio::test]
async fn updates_keep_known_replicas_and_their_state() {
    let pool = pool();
    pool.update(&addrs(&[1, 2]));
    let first = pool.snapshot()[0].clone();
    pool.eject(&first);

    pool.update(&addrs(&[1, 3]));

    assert_eq!(
        pool.addresses(),
        addrs(&[1, 3]).into_iter().collect::<Vec<_>>()
    );
    let kept = pool.snapshot()[0].clone();
    assert!(Arc::ptr_eq(&kept, &first) && kept.is_down());
}

/// A race the discovery test found: a call goes to a member, another
/// call's failure ejects it, and the probe round swaps it for a spare
/// while the call is in flight. When it answers, it comes back into the
/// pool, not only into rotation.
#[tokio::test]
async fn a_replica_that_answers_after_making_room_for_a_spare_comes_back() {
    let pool = pool_of(3);
    pool.update(&addrs(&(1..=10).collect::<Vec<_>>()));
    assert!(pool.snapshot().iter().all(|m| m.is_down()));
    pool.snapshot()[0].down.store(false, Ordering::Relaxed);
    let in_flight = pool.pick(None).expect("the member in rotation");
    pool.eject(&in_flight);

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
    let in_flight = pool.snapshot()[0].clone();
    pool.swap_down_for_spares();
    let rest: Vec<u16> = (1..=10).filter(|p| *p != in_flight.addr.port()).collect();
    pool.update(&addrs(&rest));

    pool.answered(&in_flight);

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
    let up = pool.snapshot()[0].clone();
    pool.answered(&up);
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

#[test]
fn serving_well_pays_back_each_ejection_for_as_long_as_it_lasted() {
    let ejection = Ejection {
        base: Duration::from_secs(2),
        max: Duration::from_secs(60),
    };
    let paid = |count, served| ejection.paid_back(count, Duration::from_secs(served));

    // Three ejections: 2 s, 4 s, 8 s; the last is paid back first.
    assert_eq!(paid(3, 7), 3);
    assert_eq!(paid(3, 8), 2);
    assert_eq!(paid(3, 12), 1);
    assert_eq!(paid(3, 14), 0);
    assert_eq!(
        paid(30, 59),
        30,
        "a maximum-length ejection is not paid yet"
    );
    assert_eq!(paid(30, 60), 0, "the maximum pays back all");
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

    // A call it then answers (sent before the ejection) brings it back.
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

/// A gRPC health server answering SERVING, on a free port.
async fn serving() -> SocketAddr {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    addr
}

#[tokio::test]
async fn with_none_in_rotation_replicas_are_probed_before_their_ejection_is_over() {
    let (a, b) = (serving().await, serving().await);
    let pool = pool();
    pool.update(&[a, b].into_iter().collect());
    let member = |addr| {
        pool.snapshot()
            .iter()
            .find(|m| m.addr == addr)
            .cloned()
            .expect("a member")
    };

    // One in rotation: the ejected one waits out its 2 s, healthy or not.
    pool.eject(&member(a));
    pool.probe_down(Duration::from_secs(1)).await;
    assert!(member(a).is_down());

    // None in rotation: every one answering a health check is back, on
    // probation, however long its ejection had to run.
    pool.eject(&member(b));
    pool.probe_down(Duration::from_secs(1)).await;
    for addr in [a, b] {
        assert!(!member(addr).is_down(), "{addr} back");
        assert!(member(addr).on_probation.load(Ordering::Relaxed));
    }
}

#[tokio::test]
async fn a_health_check_unanswered_closes_its_connection() {
    // Accepts and reads, never answers: a replica behind a partition.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("bound");
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    let pool = pool();
    pool.update(&[addr].into_iter().collect());
    let member = pool.snapshot()[0].clone();
    pool.eject(&member);

    pool.probe_down(Duration::from_millis(200)).await;

    assert!(member.is_down());
    assert!(
        !member.channel.is_connected(),
        "the next probe dials a new connection"
    );
    held.abort();
}
