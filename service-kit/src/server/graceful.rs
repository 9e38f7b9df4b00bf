//! Closing served connections gracefully (HTTP/2 GOAWAY, or HTTP/1 closing
//! after the response in flight) when the service stops or a connection
//! reaches its maximum age, at a cost per poll of an atomic load.
//!
//! A connection's task is polled for every read, write and response, a few
//! times per call. `tokio::select!` over the connection, a shutdown signal
//! and a timer (as tonic's server does, and hyper_util's
//! `GracefulShutdown`) polls all three each time: a timer's poll registers
//! the task's waker with the runtime's timer, a channel's poll locks its
//! waiters, a visible share of a gRPC call of a few microseconds
//! (docs/benchmarks/history.md, "What each server layer costs in time, not
//! instructions").
//! Here each signal is polled (and the waker registered) only when the task
//! polling it is not the one it last registered, which for a connection
//! served by one task is once; every other poll reads an atomic.
//!
//! Owned, in place of hyper-util's `GracefulShutdown` (hyper-util 0.1.21
//! checked), for the poll cost above and for the maximum age, which it has
//! no notion of; it still drives hyper's own `GracefulConnection`. tonic's
//! server has a maximum age with a grace since 0.14.6, but not its cost per
//! poll. The conformance tests (service-kit/tests/conformance/server.rs)
//! run the maximum-age case against tonic's server.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use hyper_util::server::graceful::GracefulConnection;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Whether `waker` is already the one a signal last registered.
fn registered(last: Option<&Waker>, waker: &Waker) -> bool {
    last.is_some_and(|last| last.will_wake(waker))
}

/// A deadline checked cheaply on every poll (see the module docs).
#[derive(Debug)]
pub struct Alarm {
    // Boxed so that the alarm, and what holds it, stays Unpin.
    sleep: Pin<Box<Sleep>>,
    waker: Option<Waker>,
}

impl Alarm {
    /// An alarm that rings at `deadline`.
    pub fn at(deadline: Instant) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            waker: None,
        }
    }

    /// Whether the deadline has passed, making sure that the task polling
    /// is woken when it does.
    pub fn poll_rung(&mut self, cx: &mut Context<'_>) -> bool {
        if registered(self.waker.as_ref(), cx.waker()) {
            return self.sleep.is_elapsed();
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            return true;
        }
        self.waker = Some(cx.waker().clone());
        false
    }

    /// Whether the deadline has passed, as far as the runtime's timer has
    /// noticed, without registering anyone to wake.
    pub fn has_rung(&self) -> bool {
        self.sleep.is_elapsed()
    }

    /// Moves the deadline to `deadline`; the next poll registers again.
    pub fn reset(&mut self, deadline: Instant) {
        self.sleep.as_mut().reset(deadline);
        self.waker = None;
    }
}

/// The service's stop signal as one connection sees it, checked cheaply on
/// every poll (see the module docs). Made from a [`CancellationToken`] the
/// accept loop cancels when the service stops.
#[derive(Debug)]
pub struct Stopping {
    token: CancellationToken,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    waker: Option<Waker>,
}

impl Stopping {
    /// Watches `token`.
    pub fn new(token: CancellationToken) -> Self {
        Self {
            cancelled: Box::pin(token.clone().cancelled_owned()),
            token,
            waker: None,
        }
    }

    /// Whether the service is stopping, making sure that the task polling
    /// is woken when it does.
    pub fn poll_stopping(&mut self, cx: &mut Context<'_>) -> bool {
        if registered(self.waker.as_ref(), cx.waker()) {
            return self.token.is_cancelled();
        }
        if self.cancelled.as_mut().poll(cx).is_ready() {
            return true;
        }
        self.waker = Some(cx.waker().clone());
        false
    }
}

pin_project! {
    /// A served connection that starts closing gracefully when the service
    /// stops or at its maximum age, whichever comes first, and then
    /// finishes what is in flight. Its output is the connection's.
    pub struct Graceful<C> {
        #[pin]
        connection: C,
        stopping: Stopping,
        max_age: Option<Alarm>,
        closing: bool,
    }
}

impl<C> Graceful<C> {
    /// `connection`, closed when `stopping` says so or, if given, at
    /// `max_age`.
    pub fn new(connection: C, stopping: Stopping, max_age: Option<Instant>) -> Self {
        Self {
            connection,
            stopping,
            max_age: max_age.map(Alarm::at),
            closing: false,
        }
    }
}

impl<C: GracefulConnection> Future for Graceful<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if !*this.closing {
            // Both are polled, so that both register the waker.
            let stopping = this.stopping.poll_stopping(cx);
            let aged = this.max_age.as_mut().is_some_and(|age| age.poll_rung(cx));
            if stopping || aged {
                *this.closing = true;
                this.connection.as_mut().graceful_shutdown();
            }
        }
        this.connection.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::Wake,
        time::Duration,
    };

    use super::*;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_alarm_rings_at_its_deadline_and_wakes_the_task_registered() {
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut alarm = Alarm::at(Instant::now() + Duration::from_secs(10));

        let before = alarm.poll_rung(&mut cx);
        let again = alarm.poll_rung(&mut cx);
        tokio::time::sleep(Duration::from_secs(11)).await;

        assert!(!before && !again, "rang before its deadline");
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "the task was woken");
        assert!(alarm.has_rung());
        assert!(alarm.poll_rung(&mut cx));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_alarm_rings_at_its_new_deadline_only() {
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let start = Instant::now();
        let mut alarm = Alarm::at(start + Duration::from_secs(10));
        assert!(!alarm.poll_rung(&mut cx));

        alarm.reset(start + Duration::from_secs(20));
        assert!(!alarm.poll_rung(&mut cx));
        tokio::time::sleep(Duration::from_secs(11)).await;
        let at_the_old_deadline = alarm.poll_rung(&mut cx);
        tokio::time::sleep(Duration::from_secs(10)).await;

        assert!(!at_the_old_deadline);
        assert!(alarm.poll_rung(&mut cx));
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn stopping_wakes_the_task_registered_and_then_reads_true() {
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let token = CancellationToken::new();
        let mut stopping = Stopping::new(token.clone());

        let before = stopping.poll_stopping(&mut cx);
        token.cancel();

        assert!(!before);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "the task was woken");
        assert!(stopping.poll_stopping(&mut cx));
    }

    #[tokio::test]
    async fn stopping_registers_a_new_task_that_polls_it() {
        let first = Arc::new(Counter::default());
        let second = Arc::new(Counter::default());
        let (first_waker, second_waker) = (Waker::from(first.clone()), Waker::from(second.clone()));
        let token = CancellationToken::new();
        let mut stopping = Stopping::new(token.clone());

        assert!(!stopping.poll_stopping(&mut Context::from_waker(&first_waker)));
        assert!(!stopping.poll_stopping(&mut Context::from_waker(&second_waker)));
        token.cancel();

        assert_eq!(
            second.0.load(Ordering::SeqCst),
            1,
            "the last task to poll is woken"
        );
    }
}
