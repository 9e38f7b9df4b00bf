//! Running a call on the pool: the next replica, and when that replica
//! fails (not the request), its ejection and at most one more try on
//! another, if the call may run twice, the deadline leaves time for it and
//! the retry budget allows. A call the replica never processed (refused by
//! the GOAWAY of a connection reaching its maximum age) runs once more on
//! the same replica, as gRPC's transparent retry does.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::time::Instant;
use tonic::{Code, Status};

use super::{CallDeadline, Member, ReplicaPool, RetryBudget, channel::never_processed};
use crate::trace::ResendCount;

/// Whether a call may run again on another replica after a failure: the
/// first attempt may have reached its replica and done its work before the
/// connection broke or the deadline passed. Every RPC says which it is;
/// there is no default, so that a new one is a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// A read, or any call that does the same whether it runs once or
    /// twice: Recommend and ListBooks.
    Idempotent,
    /// Anything else (a write): at most one attempt.
    Never,
}

/// One attempt of a call: when it must end, and how many attempts came
/// before it (0 for the first, 1 for a retry on another replica).
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    /// The call's deadline, which the attempt must end itself at.
    pub deadline: Instant,
    /// Attempts made before this one.
    pub resends: u32,
}

impl Attempt {
    /// `message` as the request of this attempt: its deadline, and, for
    /// the span, how many attempts came before it if any (a first attempt
    /// carries none: an extension is an allocation).
    pub fn request<M>(self, message: M) -> tonic::Request<M> {
        let mut request = tonic::Request::new(message);
        request.extensions_mut().insert(CallDeadline(self.deadline));
        if self.resends > 0 {
            request.extensions_mut().insert(ResendCount(self.resends));
        }
        request
    }
}

/// How calls on a pool are retried: within `timeout` from their start, and
/// within `budget`.
#[derive(Debug)]
pub struct RetryPolicy {
    /// Every call's deadline, from its start, its retry included.
    pub timeout: Duration,
    /// The retries allowed, as a share of the calls.
    pub budget: RetryBudget,
}

/// The least share of the deadline worth a retry: with less left, another
/// replica could not answer in time anyway, and the page is better served
/// at once without recommendations.
const MIN_RETRY_SHARE: f64 = 0.1;

impl<C: Clone> ReplicaPool<C> {
    /// Runs `attempt` on the next replica (it is given the replica and the
    /// [`Attempt`]), or fails with UNAVAILABLE at once if no replica is in
    /// rotation. If it fails with a
    /// status that says "this replica, not this request" (see
    /// [`replica_failed`]), ejects that replica and, if the call is
    /// [`Retry::Idempotent`], the deadline leaves time for it and the retry
    /// budget allows, tries once more on another, within the same deadline.
    /// A replica that answers is noted (see [`ReplicaPool::answered`]).
    pub async fn call<T, F, Fut>(
        &self,
        policy: &RetryPolicy,
        retry: Retry,
        attempt: F,
    ) -> Result<T, Status>
    where
        F: Fn(&Member<C>, Attempt) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + policy.timeout;
        policy.budget.deposit();
        let attempts = async {
            // None in rotation: failed at once, not sent to one known to be
            // out (see the pool's module docs).
            let first = self.pick(None).ok_or_else(|| self.no_replica())?;
            self.found_replica();
            let first_attempt = Attempt {
                deadline,
                resends: 0,
            };
            let mut result = self.attempt(&first.member, &attempt, first_attempt).await;
            if matches!(&result, Err(status) if never_processed(status)) {
                // Refused unprocessed by the replica's graceful GOAWAY (a
                // connection at its maximum age): not the replica's failure.
                // Once more on its next connection, whatever `retry` says.
                tracing::debug!(replica = %first.addr, "the call never reached the replica: sent again");
                let again = Attempt {
                    deadline,
                    resends: 1,
                };
                result = self.attempt(&first.member, &attempt, again).await;
            }
            let status = match result {
                Err(status) if replica_failed(&status) => status,
                other => return other,
            };
            self.eject(&first);
            if retry == Retry::Never {
                return Err(status);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left < policy.timeout.mul_f64(MIN_RETRY_SHARE) {
                tracing::debug!(from = %first.addr, ?left, "not retried: too little of the deadline is left");
                return Err(status);
            }
            let Some(second) = self.pick(Some(first.addr)) else {
                return Err(status);
            };
            if !policy.budget.try_withdraw() {
                tracing::debug!(from = %first.addr, "not retried: the retry budget is spent");
                return Err(status);
            }
            tracing::info!(from = %first.addr, to = %second.addr, "retrying on another replica");
            let retry = Attempt {
                deadline,
                resends: 1,
            };
            let result = self.attempt(&second.member, &attempt, retry).await;
            if matches!(&result, Err(status) if replica_failed(status)) {
                self.eject(&second);
            }
            result
        };
        // No timer here: each attempt ends itself at the deadline it is
        // given, its answer's body included (the client's Deadline layer),
        // and is observed as DEADLINE_EXCEEDED.
        attempts.await
    }

    async fn attempt<T, F, Fut>(
        &self,
        member: &Arc<Member<C>>,
        attempt: &F,
        this: Attempt,
    ) -> Result<T, Status>
    where
        F: Fn(&Member<C>, Attempt) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let in_flight = member.call_starts();
        let result = attempt(member, this).await;
        drop(in_flight);
        if result.is_ok() {
            self.answered(member);
        }
        result
    }
}

/// Whether a failure is the replica's rather than the request's, so that
/// the replica is ejected and another may well succeed: UNAVAILABLE (it is
/// gone, refusing, or draining), DEADLINE_EXCEEDED (it is too slow: the
/// others answer in time), or any status made on this side from a broken
/// connection rather than sent by the replica. tonic keeps the transport
/// error as the status's source, and maps some of them to codes that look
/// final: a call refused by a replica's GOAWAY as it shuts down arrives as
/// INTERNAL ("h2 protocol error"), a reset connection as UNKNOWN. Whether
/// the call then runs again is [`Retry`]'s to say.
pub fn replica_failed(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
        || std::error::Error::source(status).is_some()
}

#[cfg(test)]
mod tests {
    use std::{
        net::SocketAddr,
        sync::{
            Mutex,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use super::*;
    use crate::client::pool::tests::{addrs, pool};

    fn policy(ratio: f64, min_per_second: u32) -> RetryPolicy {
        RetryPolicy {
            timeout: Duration::from_secs(1),
            budget: RetryBudget::new(ratio, min_per_second),
        }
    }

    /// Runs a call that fails like a refused connection on a pool of two
    /// replicas; returns the replicas tried, in order, with the attempts
    /// each was told came before it.
    async fn refused(policy: &RetryPolicy, retry: Retry) -> Vec<(SocketAddr, u32)> {
        let pool = pool();
        pool.update(&addrs(&[2, 3]));
        let tried = Mutex::new(Vec::new());
        let result: Result<(), Status> = pool
            .call(policy, retry, |member, attempt| {
                tried
                    .lock()
                    .expect("not poisoned")
                    .push((member.client, attempt.resends));
                async { Err(Status::unavailable("refused")) }
            })
            .await;
        assert_eq!(result.map_err(|s| s.code()), Err(Code::Unavailable));
        tried.into_inner().expect("not poisoned")
    }

    #[tokio::test]
    async fn only_an_idempotent_call_is_tried_on_another_replica() {
        let tried = refused(&policy(0.2, 10), Retry::Idempotent).await;
        assert_eq!(tried.len(), 2, "{tried:?}");
        assert_ne!(tried[0].0, tried[1].0, "the retry went to another replica");
        assert_eq!(
            (tried[0].1, tried[1].1),
            (0, 1),
            "the retry knows it is one"
        );

        assert_eq!(refused(&policy(0.2, 10), Retry::Never).await.len(), 1);
    }

    #[tokio::test]
    async fn a_spent_budget_allows_no_retry() {
        assert_eq!(refused(&policy(0.0, 0), Retry::Idempotent).await.len(), 1);
    }

    #[tokio::test]
    async fn a_replica_that_fails_is_ejected_and_one_that_refuses_a_request_is_not() {
        let pool = pool();
        pool.update(&addrs(&[2]));
        let policy = policy(0.2, 10);

        let invalid: Result<(), Status> = pool
            .call(&policy, Retry::Idempotent, |_, _| async {
                Err(Status::invalid_argument("no such category"))
            })
            .await;
        assert_eq!(invalid.map_err(|s| s.code()), Err(Code::InvalidArgument));
        assert!(!pool.snapshot()[0].is_down(), "the request's fault");

        let unavailable: Result<(), Status> = pool
            .call(&policy, Retry::Idempotent, |_, _| async {
                Err(Status::unavailable("draining"))
            })
            .await;
        assert_eq!(unavailable.map_err(|s| s.code()), Err(Code::Unavailable));
        assert!(pool.snapshot()[0].is_down(), "the replica's fault");
    }

    #[tokio::test]
    async fn a_call_the_replica_never_processed_runs_again_there_once_whatever_retry_says() {
        let pool = pool();
        pool.update(&addrs(&[2]));
        let tried = AtomicUsize::new(0);

        let result: Result<u32, Status> = pool
            .call(&policy(0.0, 0), Retry::Never, |_, attempt| {
                tried.fetch_add(1, Ordering::Relaxed);
                async move {
                    if attempt.resends == 0 {
                        let mut refused = Status::unavailable("refused unprocessed");
                        refused.set_source(Arc::new(h2::Error::from(h2::Reason::REFUSED_STREAM)));
                        Err(refused)
                    } else {
                        Ok(7)
                    }
                }
            })
            .await;

        assert_eq!(result.map_err(|s| s.code()), Ok(7));
        assert_eq!(tried.load(Ordering::Relaxed), 2);
        assert!(!pool.snapshot()[0].is_down(), "not the replica's failure");
    }

    #[tokio::test(start_paused = true)]
    async fn with_every_replica_out_a_call_fails_at_once_and_is_counted() {
        let pool = pool();
        let policy = policy(0.2, 10);
        let tried = AtomicUsize::new(0);
        let call = || {
            pool.call(&policy, Retry::Idempotent, |_, _| {
                tried.fetch_add(1, Ordering::Relaxed);
                async { Ok(()) }
            })
        };
        let message = |result: Result<(), Status>| {
            let status = result.expect_err("no replica to call");
            assert_eq!(status.code(), Code::Unavailable);
            status.message().to_owned()
        };

        assert_eq!(message(call().await), "no test replica is known yet");
        pool.update(&addrs(&[2, 3]));
        for member in pool.snapshot().iter() {
            pool.eject(member);
        }
        let started = Instant::now();
        let unavailable = message(call().await);

        assert!(
            unavailable.starts_with("every test replica is out of rotation"),
            "{unavailable}"
        );
        assert_eq!(started.elapsed(), Duration::ZERO, "no deadline waited");
        assert_eq!(tried.load(Ordering::Relaxed), 0, "nothing sent");
        assert_eq!(pool.unsent_calls().get(), 2);

        // One is back (as a call in flight answering would put it): calls
        // go out again.
        pool.answered(&pool.snapshot()[1]);
        call().await.expect("sent to the one back");
        assert_eq!(tried.load(Ordering::Relaxed), 1);
        assert_eq!(pool.unsent_calls().get(), 2);
    }

    #[tokio::test]
    async fn a_deadline_miss_is_not_retried_for_want_of_time() {
        let pool = pool();
        pool.update(&addrs(&[2, 3]));
        let count = AtomicUsize::new(0);

        let result: Result<(), Status> = pool
            .call(&policy(0.2, 10), Retry::Idempotent, |_, attempt| {
                count.fetch_add(1, Ordering::Relaxed);
                async move {
                    tokio::time::sleep_until(attempt.deadline).await;
                    Err(Status::deadline_exceeded("too slow"))
                }
            })
            .await;

        assert_eq!(result.map_err(|s| s.code()), Err(Code::DeadlineExceeded));
        assert_eq!(count.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn every_attempt_is_given_the_calls_one_deadline() {
        let pool = pool();
        pool.update(&addrs(&[2, 3]));
        let started = Instant::now();
        let deadlines = Mutex::new(Vec::new());

        let result: Result<(), Status> = pool
            .call(&policy(0.2, 10), Retry::Idempotent, |_, attempt| {
                deadlines
                    .lock()
                    .expect("not poisoned")
                    .push(attempt.deadline);
                async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Err(Status::unavailable("refused"))
                }
            })
            .await;

        assert_eq!(result.map_err(|s| s.code()), Err(Code::Unavailable));
        let deadline = started + Duration::from_secs(1);
        assert_eq!(
            deadlines.into_inner().expect("not poisoned"),
            [deadline, deadline],
            "the retry is within the first attempt's deadline"
        );
    }
}
