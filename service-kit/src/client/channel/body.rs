//! The two bodies of a call on the wire: the request's, handed to h2 as it
//! comes ([`Pipe`]), and the response's, read from h2 ([`H2Body`]).

use std::{
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use h2::{Reason, RecvStream, SendStream};
use http_body::{Body, Frame};
use tonic::Status;

use super::{EAGER_BYTES, status_of};

/// Hands a request's body to h2: each chunk at once while the request has
/// handed less than [`EAGER_BYTES`], then each after send capacity is
/// granted; the last chunk ends the stream.
pub(super) struct Pipe {
    body: tonic::body::Body,
    stream: SendStream<Bytes>,
    /// The chunk polled last, sent when the next frame says whether it ends
    /// the stream.
    held: Option<Bytes>,
    handed: usize,
}

impl Pipe {
    pub(super) fn new(body: tonic::body::Body, stream: SendStream<Bytes>) -> Self {
        Self {
            body,
            stream,
            held: None,
            handed: 0,
        }
    }

    pub(super) fn poll_pipe(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if let Some(held) = &self.held
                && self.handed + held.len() > EAGER_BYTES
            {
                self.stream.reserve_capacity(held.len());
                if self.stream.capacity() == 0 {
                    match ready!(self.stream.poll_capacity(cx)) {
                        Some(Ok(_)) => continue,
                        // Reset by the server, or the connection is gone:
                        // the response says how the call ended.
                        Some(Err(_)) | None => return Poll::Ready(()),
                    }
                }
            }
            let frame = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    // Stop waiting for a body whose stream the server ended.
                    if self.stream.poll_reset(cx).is_ready() {
                        return Poll::Ready(());
                    }
                    return Poll::Pending;
                }
            };
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if let Some(chunk) = self.held.replace(data)
                            && self.send(chunk, false).is_err()
                        {
                            return Poll::Ready(());
                        }
                    }
                    // Trailers end the request; other frames are skipped.
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            let held = self.held.take();
                            if held.is_none_or(|chunk| self.send(chunk, false).is_ok()) {
                                let _ = self.stream.send_trailers(trailers);
                            }
                            return Poll::Ready(());
                        }
                    }
                },
                Some(Err(err)) => {
                    tracing::debug!(error = %err, "request body failed: cancelling the call");
                    self.stream.send_reset(Reason::CANCEL);
                    return Poll::Ready(());
                }
                None => {
                    let last = self.held.take().unwrap_or_default();
                    // A failure here is the stream's: the response tells it.
                    let _ = self.send(last, true);
                    return Poll::Ready(());
                }
            }
        }
    }

    fn send(&mut self, chunk: Bytes, end: bool) -> Result<(), h2::Error> {
        self.handed += chunk.len();
        self.stream.send_data(chunk, end)
    }
}

/// A response body read from h2: its data frames, then its trailers, each
/// frame's bytes given back to the flow-control window as it is taken.
pub struct H2Body {
    recv: RecvStream,
    data_done: bool,
    server: SocketAddr,
}

impl H2Body {
    pub(super) fn new(recv: RecvStream, server: SocketAddr) -> Self {
        Self {
            recv,
            data_done: false,
            server,
        }
    }
}

impl std::fmt::Debug for H2Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Body")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Only fails for a stream already closed.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(err)) => return Poll::Ready(Some(Err(status_of(this.server, err)))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(err) => Poll::Ready(Some(Err(status_of(this.server, err)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}
