//! The innermost layer of both services: a panicking handler becomes an
//! answer (INTERNAL, the 500 page), and the connection and the server live
//! on.
//!
//! Owned, in place of tower-http's `CatchPanic` (tower-http 0.6.11 checked),
//! which does this too, but boxes every response body to fit its own body
//! type, and the web app's router then boxes that box again.
//! [`CatchPanic`] keeps the inner service's body type, so an answer that does
//! not panic costs only the unwinding guard. Its [`Answers`] may also rewrite
//! every answer on its way out, in the same layer (each layer costs every
//! call a move of its future and a level of polling). The conformance test
//! `conformance_with_tower_https_catch_panic` runs the same cases through both.

use std::{
    any::Any,
    future::Future,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::Pin,
    task::{Context, Poll},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// What a service answers when its handler panics, and how it finishes
/// every other answer.
pub trait Answers<B>: Clone {
    /// The answer to a panic, given its payload. It logs the panic: this is
    /// the only place that sees it.
    fn panicked(&self, panic: Box<dyn Any + Send>) -> Response<B>;

    /// Every answer that is not a panic's, on its way out: unchanged unless
    /// a service says otherwise.
    fn answered(&self, response: Response<B>) -> Response<B> {
        response
    }
}

/// The text of a panic's payload, for its log line (never for a client).
pub fn message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic payload")
}

/// Wraps a service in [`CatchPanic`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CatchPanicLayer<A> {
    answers: A,
}

impl<A> CatchPanicLayer<A> {
    pub fn new(answers: A) -> Self {
        Self { answers }
    }
}

impl<S, A: Clone> Layer<S> for CatchPanicLayer<A> {
    type Service = CatchPanic<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        CatchPanic {
            inner,
            answers: self.answers.clone(),
        }
    }
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct CatchPanic<S, A> {
    inner: S,
    answers: A,
}

impl<S, A, R, B> Service<Request<R>> for CatchPanic<S, A>
where
    S: Service<Request<R>, Response = Response<B>>,
    A: Answers<B>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = CatchPanicFuture<S::Future, A, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<R>) -> Self::Future {
        // The inner service and its future are not used again after a
        // panic, so no broken state can be observed (hence the assertion).
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => CatchPanicFuture::Running {
                future,
                answers: self.answers.clone(),
            },
            Err(panic) => CatchPanicFuture::Panicked {
                response: Some(self.answers.panicked(panic)),
            },
        }
    }
}

pin_project! {
    /// The response future of [`CatchPanic`].
    #[project = State]
    pub enum CatchPanicFuture<F, A, B> {
        /// The handler is running.
        Running { #[pin] future: F, answers: A },
        /// The handler panicked in `call`: the answer, until taken.
        Panicked { response: Option<Response<B>> },
    }
}

impl<F, A, B, E> Future for CatchPanicFuture<F, A, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    A: Answers<B>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            State::Running { future, answers } => {
                match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(Poll::Ready(Ok(response))) => Poll::Ready(Ok(answers.answered(response))),
                    Ok(other) => other,
                    Err(panic) => Poll::Ready(Ok(answers.panicked(panic))),
                }
            }
            // Polled again after its answer: a caller bug, which the
            // Future contract lets us answer with Pending.
            State::Panicked { response } => response
                .take()
                .map_or(Poll::Pending, |r| Poll::Ready(Ok(r))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use tower::ServiceExt as _;

    use super::*;

    /// Answers a panic with 500 and its message as the body (for the test
    /// only: services never show it), and counts the other answers.
    #[derive(Clone, Default)]
    struct Recorded {
        answered: Arc<AtomicUsize>,
    }

    impl Answers<String> for Recorded {
        fn panicked(&self, panic: Box<dyn Any + Send>) -> Response<String> {
            let mut response = Response::new(message(&*panic).to_owned());
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            response
        }

        fn answered(&self, response: Response<String>) -> Response<String> {
            self.answered.fetch_add(1, Ordering::Relaxed);
            response
        }
    }

    #[tokio::test]
    async fn a_panic_while_handling_is_answered_and_the_service_lives_on() {
        let answers = Recorded::default();
        let service = CatchPanicLayer::new(answers.clone()).layer(tower::service_fn(
            |request: Request<&'static str>| async move {
                if *request.body() == "boom" {
                    panic!("in the handler");
                }
                Ok::<_, Infallible>(Response::new(String::from("fine")))
            },
        ));

        let panicked = service.clone().oneshot(Request::new("boom")).await;
        let next = service.oneshot(Request::new("hello")).await;

        let panicked = panicked.expect("an answer");
        assert_eq!(panicked.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(panicked.body(), "in the handler");
        assert_eq!(next.expect("an answer").body(), "fine");
        // The panic's answer is not also passed through `answered`.
        assert_eq!(answers.answered.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_panic_while_starting_the_call_is_answered() {
        let service = CatchPanicLayer::new(Recorded::default()).layer(tower::service_fn(
            |_: Request<()>| -> std::future::Ready<Result<Response<String>, Infallible>> {
                panic!("before any future exists: {}", 42)
            },
        ));

        let response = service.oneshot(Request::new(())).await.expect("an answer");

        assert_eq!(response.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.body(), "before any future exists: 42");
    }

    /// The same three cases through ours and through tower-http's
    /// `CatchPanic`: a panic in the future, a panic in `call`, and an answer.
    /// Both answer 500 to a panic and pass the answer through; the bodies
    /// differ by design (ours is the service's, tower-http's its own).
    #[tokio::test]
    async fn conformance_with_tower_https_catch_panic() {
        fn handler(
            request: Request<&'static str>,
        ) -> std::future::Ready<Result<Response<String>, Infallible>> {
            match *request.body() {
                "call" => panic!("in call"),
                body => std::future::ready(Ok(Response::new(body.to_owned()))),
            }
        }
        let in_future = |request: Request<&'static str>| async move {
            if *request.body() == "future" {
                panic!("in the future");
            }
            handler(request).await
        };
        let ours = CatchPanicLayer::new(Recorded::default()).layer(tower::service_fn(in_future));
        let theirs =
            tower_http::catch_panic::CatchPanicLayer::new().layer(tower::service_fn(in_future));

        for (input, status) in [
            ("future", http::StatusCode::INTERNAL_SERVER_ERROR),
            ("call", http::StatusCode::INTERNAL_SERVER_ERROR),
            ("fine", http::StatusCode::OK),
        ] {
            let our_answer = ours.clone().oneshot(Request::new(input)).await;
            let their_answer = theirs.oneshot(Request::new(input)).await;

            assert_eq!(
                our_answer.expect("an answer").status(),
                status,
                "ours: {input}"
            );
            assert_eq!(
                their_answer.expect("an answer").status(),
                status,
                "tower-http: {input}"
            );
        }
    }
}
