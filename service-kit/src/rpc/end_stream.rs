//! A client's request body that ends with its last message.
//!
//! tonic's request body says it has ended only once it has been polled
//! past its last message, so hyper sends a unary call's message in one
//! DATA frame and then an empty DATA frame to end the stream, which both
//! sides encode, decode and account for. [`EndStream`] polls the body one
//! frame ahead: when the message is its last frame, `is_end_stream` is true
//! as hyper takes it, and the message's own DATA frame carries END_STREAM.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tonic::Status;
use tower::{Layer, Service};

/// Wraps a client's service in [`EndStream`].
#[derive(Clone, Copy, Debug, Default)]
pub struct EndStreamLayer;

impl<S> Layer<S> for EndStreamLayer {
    type Service = EndStream<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EndStream { inner }
    }
}

/// Gives each request a body that reports its end with its last frame (see
/// the module docs).
#[derive(Clone, Debug)]
pub struct EndStream<S> {
    inner: S,
}

impl<S> Service<Request<tonic::body::Body>> for EndStream<S>
where
    S: Service<Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        self.inner
            .call(request.map(|body| tonic::body::Body::new(PeekedEnd::new(body))))
    }
}

type Polled = Option<Result<Frame<Bytes>, Status>>;

pin_project! {
    /// A body polled one frame ahead, so that it knows it has ended when it
    /// hands out its last frame.
    pub struct PeekedEnd<B> {
        #[pin]
        inner: B,
        // The frame polled ahead, or the end (`Some(None)`).
        ahead: Option<Polled>,
    }
}

impl<B> PeekedEnd<B> {
    /// `inner`, polled one frame ahead.
    pub fn new(inner: B) -> Self {
        Self { inner, ahead: None }
    }
}

impl<B: Body<Data = Bytes, Error = Status>> Body for PeekedEnd<B> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut this = self.project();
        let frame = match this.ahead.take() {
            Some(polled) => polled,
            None => ready!(this.inner.as_mut().poll_frame(cx)),
        };
        let Some(frame) = frame else {
            *this.ahead = Some(None);
            return Poll::Ready(None);
        };
        // After data, a body whose next poll is ready says so now; one that
        // would wait is asked again on the next poll (its waker is
        // registered). An error or trailers end the body: it is not polled
        // past them.
        if frame.as_ref().is_ok_and(Frame::is_data)
            && let Poll::Ready(next) = this.inner.poll_frame(cx)
        {
            *this.ahead = Some(next);
        }
        Poll::Ready(Some(frame))
    }

    fn is_end_stream(&self) -> bool {
        match &self.ahead {
            Some(None) => true,
            Some(Some(_)) => false,
            None => self.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.ahead {
            Some(None) => SizeHint::with_exact(0),
            Some(Some(_)) => SizeHint::default(),
            None => self.inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    fn frames(chunks: &[&'static str]) -> impl Body<Data = Bytes, Error = Status> + Unpin {
        let chunks: Vec<_> = chunks
            .iter()
            .map(|chunk| Ok::<_, Status>(Frame::data(Bytes::from_static(chunk.as_bytes()))))
            .collect();
        StreamBody::new(tokio_stream::iter(chunks))
    }

    #[tokio::test]
    async fn the_last_frame_comes_with_the_end() {
        let mut body = PeekedEnd::new(frames(&["message"]));
        assert!(!body.is_end_stream(), "nothing taken yet");

        let frame = body.frame().await.expect("a frame").expect("data");
        assert_eq!(frame.into_data().expect("data"), "message");
        assert!(body.is_end_stream(), "ended with its only frame");
        assert!(body.frame().await.is_none());
        assert!(
            body.frame().await.is_none(),
            "the inner body is not polled again"
        );
    }

    #[tokio::test]
    async fn every_frame_is_handed_out_in_order() {
        let mut body = PeekedEnd::new(frames(&["one", "two", "three"]));
        let mut seen = Vec::new();
        while let Some(frame) = body.frame().await {
            seen.push(frame.expect("data").into_data().expect("data"));
            assert_eq!(body.is_end_stream(), seen.len() == 3);
        }
        assert_eq!(seen, ["one", "two", "three"]);
    }

    #[tokio::test]
    async fn an_error_polled_ahead_is_handed_out_in_turn() {
        let chunks = vec![
            Ok(Frame::data(Bytes::from_static(b"message"))),
            Err(Status::internal("broken")),
        ];
        let mut body = PeekedEnd::new(StreamBody::new(tokio_stream::iter(chunks)));
        assert!(body.frame().await.expect("a frame").is_ok());
        assert!(!body.is_end_stream(), "an error is still to come");
        let err = body.frame().await.expect("a frame").expect_err("the error");
        assert_eq!(err.message(), "broken");
    }

    #[tokio::test]
    async fn a_body_is_not_polled_past_an_error() {
        let chunks = vec![
            Err(Status::internal("broken")),
            Ok(Frame::data(Bytes::from_static(b"after the error"))),
        ];
        let mut body = PeekedEnd::new(StreamBody::new(tokio_stream::iter(chunks)));
        assert!(body.frame().await.expect("a frame").is_err());
        assert!(body.ahead.is_none(), "nothing polled after the error");
    }

    #[tokio::test]
    async fn a_body_that_waits_is_not_said_to_have_ended() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Status>>(1);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut body = PeekedEnd::new(StreamBody::new(stream));
        tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
            .await
            .expect("sent");
        assert!(body.frame().await.expect("a frame").is_ok());
        assert!(!body.is_end_stream(), "the next frame is not known yet");
        drop(tx);
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }
}
