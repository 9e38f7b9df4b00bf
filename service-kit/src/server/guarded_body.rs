//! A response body that holds something until the body is dropped: a slot
//! of a cap on calls in flight (gRPC admission), or a request's place in its
//! connection's count of requests in flight (the web server's idle timeout).
//! Either must last as long as the response is being sent, not just until
//! its headers are ready.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// `inner`, holding `guard` (if any) until dropped.
    pub struct GuardedBody<B, G> {
        #[pin]
        inner: B,
        guard: Option<G>,
    }
}

impl<B, G> GuardedBody<B, G> {
    /// `inner`, holding `guard` until dropped.
    pub fn new(inner: B, guard: Option<G>) -> Self {
        Self { inner, guard }
    }
}

/// An answer that holds nothing (a status made above the layer).
impl<B: Default, G> Default for GuardedBody<B, G> {
    fn default() -> Self {
        Self::new(B::default(), None)
    }
}

impl<B: Body, G> Body for GuardedBody<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
