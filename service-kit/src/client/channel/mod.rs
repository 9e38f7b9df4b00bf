//! A gRPC client channel to one server, on the `h2` crate.
//!
//! [`H2Channel`] is what tonic's generated clients call through (it is a
//! tower `Service` of HTTP requests, as tonic's own `Channel` is): one
//! HTTP/2 connection to one address, made on the first call, shared by
//! every call, and made again on the next call after it is lost (closed by
//! the server, broken, silent past its keep-alive, or closed by
//! [`H2Channel::disconnect`]). TCP and TLS (rustls,
//! ALPN `h2`) are its own, and so are the connect timeout and the
//! keep-alive pings.
//!
//! Owned, in place of tonic's `Channel` (tonic 0.14.9 checked); the
//! conformance tests (service-kit/tests/conformance/channel.rs) run the same
//! cases through both: statuses, trailers, deadlines, GOAWAY and reconnect,
//! flow control, cancellation. The gap: each call there goes through a
//! buffer task and hyper's client, and hyper hands a request's message to h2
//! only once
//! the stream has send capacity, which h2 gives a stream only after its
//! HEADERS have been written. So every call's HEADERS and its message left
//! in two writes, and the server woke twice per call (docs/benchmarks/
//! history.md, "A request's message goes out one write after its headers").
//! Here the caller's own task opens the stream and hands the message to h2
//! at once, ending the stream with it: HEADERS and DATA leave in one write.
//!
//! Bounds: a request may hand h2 up to [`EAGER_BYTES`] before it waits for
//! the server's flow-control window, at most one chunk past it after that;
//! responses are bounded by the stream and connection windows and the
//! header list size of [`ChannelSettings`]. Calls waiting for a stream
//! (past the server's `SETTINGS_MAX_CONCURRENT_STREAMS`) are bounded by
//! the callers: each waits for its own.

mod body;
mod connect;
#[cfg(test)]
mod tests;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt as _, Shared};
use h2::{Reason, client::SendRequest};
use http::{HeaderValue, Request, Response, Uri, header::USER_AGENT, uri};
use http_body::Body;
use rustls_pki_types::ServerName;
use tonic::{Code, Status};
use tower::Service;

pub use body::H2Body;
use body::Pipe;
use connect::{Connection, connect};

/// What a request hands h2 without waiting for send capacity: HTTP/2's
/// initial window, which covers any unary message the services take (their
/// limit is 64 KiB), so a call's message always leaves with its headers.
pub const EAGER_BYTES: usize = 65_535;

/// How a channel connects and keeps its connection.
#[derive(Clone, Debug)]
pub struct ChannelSettings {
    /// The longest a connection may take: TCP, TLS and the HTTP/2 preface.
    pub connect_timeout: Duration,
    /// A PING this long after the last one...
    pub keep_alive_interval: Duration,
    /// ...that is not answered within this closes the connection, and the
    /// calls on it fail with UNAVAILABLE.
    pub keep_alive_timeout: Duration,
    /// TLS toward the server; plain TCP (`http`) without it.
    pub tls: Option<ClientTls>,
    /// Sent as `user-agent` with every call.
    pub user_agent: HeaderValue,
    /// Response bytes a call may have in flight unread (its stream window).
    pub stream_window: u32,
    /// Response bytes the connection may have in flight unread.
    pub connection_window: u32,
    /// The largest response header block accepted.
    pub max_header_list_size: u32,
}

impl ChannelSettings {
    /// The settings with `timeout` to connect, keep-alive pings every 30 s
    /// answered within 10 s, 1 MiB per call and 2 MiB per connection of
    /// response data in flight, and 16 KiB of response headers.
    pub fn new(connect_timeout: Duration, user_agent: HeaderValue) -> Self {
        Self {
            connect_timeout,
            keep_alive_interval: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(10),
            tls: None,
            user_agent,
            stream_window: 1 << 20,
            connection_window: 2 << 20,
            max_header_list_size: 16 << 10,
        }
    }
}

/// The TLS client side: the rustls configuration (with ALPN `h2`) and the
/// name the server's certificate must carry.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// The rustls client configuration each new connection reads (reloads
    /// replace it).
    pub config: crate::reload::Live<rustls::ClientConfig>,
    /// The name verified in the server's certificate (and sent as SNI).
    pub server_name: ServerName<'static>,
}

/// A gRPC channel to one server address (see the module docs). Cloning
/// shares the channel and its connection.
#[derive(Clone, Debug)]
pub struct H2Channel {
    shared: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    addr: SocketAddr,
    scheme: uri::Scheme,
    authority: uri::Authority,
    settings: ChannelSettings,
    state: Mutex<State>,
}

type Connecting = Shared<BoxFuture<'static, Result<Connection, Status>>>;

/// The channel's connection: ready, being made, or neither.
#[derive(Default)]
struct State {
    /// Numbers the connections, so that a lost one clears only itself.
    generation: u64,
    ready: Option<Connection>,
    connecting: Option<Connecting>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("generation", &self.generation)
            .field("ready", &self.ready.is_some())
            .field("connecting", &self.connecting.is_some())
            .finish()
    }
}

impl H2Channel {
    /// A channel to `addr` that connects on its first call.
    pub fn lazy(addr: SocketAddr, settings: ChannelSettings) -> Self {
        let scheme = if settings.tls.is_some() {
            uri::Scheme::HTTPS
        } else {
            uri::Scheme::HTTP
        };
        let authority = uri::Authority::try_from(addr.to_string())
            .expect("a socket address is a valid authority");
        Self {
            shared: Arc::new(Inner {
                addr,
                scheme,
                authority,
                settings,
                state: Mutex::default(),
            }),
        }
    }

    /// Whether a connection is up (or believed to be: a dead peer is found
    /// by the next call or keep-alive ping).
    pub fn is_connected(&self) -> bool {
        self.shared.state().ready.is_some()
    }

    /// Closes the connection, if any; the next call makes a new one. For a
    /// connection believed dead before its keep-alive finds out (a health
    /// check unanswered): a new connection is dialled at once, where one
    /// through a partition that healed would wait out TCP's retransmission
    /// back-off. Calls in flight on it fail with UNAVAILABLE.
    pub fn disconnect(&self) {
        if let Some(connection) = self.shared.state().ready.take() {
            tracing::debug!(server = %self.shared.addr, generation = connection.generation, "connection closed: believed dead");
            connection.task.abort();
        }
    }
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic while swapping plain values.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The connection's sender, connecting first if there is none; calls
    /// that arrive while a connection is being made wait for that one.
    async fn sender(self: &Arc<Self>) -> Result<Connection, Status> {
        let connecting = {
            let mut state = self.state();
            if let Some(ready) = &state.ready {
                return Ok(ready.clone());
            }
            match &state.connecting {
                Some(connecting) => connecting.clone(),
                None => {
                    state.generation += 1;
                    let connecting = connect(Arc::downgrade(self), state.generation)
                        .boxed()
                        .shared();
                    state.connecting = Some(connecting.clone());
                    connecting
                }
            }
        };
        let result = connecting.clone().await;
        let mut state = self.state();
        if state
            .connecting
            .as_ref()
            .is_some_and(|current| current.ptr_eq(&connecting))
        {
            state.connecting = None;
            if let Ok(ready) = &result {
                state.ready = Some(ready.clone());
            }
        }
        result
    }

    /// Forgets connection `generation`, if it is still the current one.
    fn lost(&self, generation: u64) {
        let mut state = self.state();
        if state
            .ready
            .as_ref()
            .is_some_and(|ready| ready.generation == generation)
        {
            state.ready = None;
        }
    }

    fn unavailable(&self, what: &str, err: impl std::fmt::Display) -> Status {
        Status::unavailable(format!("{what} {}: {err}", self.addr))
    }
}

impl Service<Request<tonic::body::Body>> for H2Channel {
    type Response = Response<H2Body>;
    type Error = Status;
    type Future = BoxFuture<'static, Result<Response<H2Body>, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        // Connecting is part of the call, so that each call gets its own
        // error (and deadline) when the server cannot be reached.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.shared.clone().call(request))
    }
}

impl Inner {
    /// A sender ready for a new stream. A connection that is going away
    /// (GOAWAY, closed) fails `ready` before anything is sent: then once
    /// more on a new connection.
    async fn ready_sender(self: &Arc<Self>) -> Result<SendRequest<Bytes>, Status> {
        let Connection {
            generation, sender, ..
        } = self.sender().await?;
        match sender.ready().await {
            Ok(ready) => Ok(ready),
            Err(err) => {
                tracing::debug!(server = %self.addr, error = %err, "connection gone: connecting again");
                self.lost(generation);
                self.sender()
                    .await?
                    .sender
                    .ready()
                    .await
                    .map_err(|err| status_of(self.addr, err))
            }
        }
    }

    async fn call(
        self: Arc<Self>,
        request: Request<tonic::body::Body>,
    ) -> Result<Response<H2Body>, Status> {
        let (mut parts, body) = request.into_parts();
        let mut uri = uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri = Uri::from_parts(uri)
            .map_err(|err| Status::internal(format!("cannot make the request URI: {err}")))?;
        parts
            .headers
            .insert(USER_AGENT, self.settings.user_agent.clone());
        let request = Request::from_parts(parts, ());

        let mut sender = self.ready_sender().await?;
        let end_at_once = body.is_end_stream();
        let (response, stream) = sender
            .send_request(request, end_at_once)
            .map_err(|err| status_of(self.addr, err))?;
        if !end_at_once {
            let mut pipe = Pipe::new(body, stream);
            // A unary request's body is ready at once: its message goes to
            // h2 now, with the headers. A body still waiting (client
            // streaming) goes on in a task of its own.
            if std::future::poll_fn(|cx| Poll::Ready(pipe.poll_pipe(cx)))
                .await
                .is_pending()
            {
                tokio::spawn(std::future::poll_fn(move |cx| pipe.poll_pipe(cx)));
            }
        }
        let response = response.await.map_err(|err| status_of(self.addr, err))?;
        let (parts, recv) = response.into_parts();
        Ok(Response::from_parts(parts, H2Body::new(recv, self.addr)))
    }
}

/// Whether the call that ended with `status` never reached the server's
/// application, so that running it again is safe whatever it does (gRPC's
/// "transparent retry", gRFC A6): the server refused its stream unprocessed
/// (REFUSED_STREAM), or its graceful GOAWAY (a connection at its maximum
/// age, a drain) came before the stream, which h2 then fails with that
/// GOAWAY (a stream the server did take is answered, or fails otherwise).
pub fn never_processed(status: &Status) -> bool {
    let Some(err) = std::error::Error::source(status).and_then(|e| e.downcast_ref::<h2::Error>())
    else {
        return false;
    };
    match err.reason() {
        Some(Reason::REFUSED_STREAM) => true,
        Some(Reason::NO_ERROR) => err.is_go_away() && err.is_remote(),
        _ => false,
    }
}

/// The gRPC status of an HTTP/2 error, as gRPC's HTTP/2 mapping says:
/// a connection that broke or went away, or a stream refused, is
/// UNAVAILABLE (the replica's failure, not the request's).
fn status_of(server: SocketAddr, err: h2::Error) -> Status {
    let code = if err.is_io() || err.is_go_away() {
        Code::Unavailable
    } else {
        match err.reason() {
            Some(Reason::REFUSED_STREAM) => Code::Unavailable,
            Some(Reason::CANCEL) => Code::Cancelled,
            Some(Reason::ENHANCE_YOUR_CALM) => Code::ResourceExhausted,
            Some(Reason::INADEQUATE_SECURITY) => Code::PermissionDenied,
            _ => Code::Internal,
        }
    };
    let mut status = Status::new(code, format!("HTTP/2 with {server}: {err}"));
    status.set_source(Arc::new(err));
    status
}
