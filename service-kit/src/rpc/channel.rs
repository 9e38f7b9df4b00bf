//! A gRPC client channel to one server, on the `h2` crate.
//!
//! [`H2Channel`] is what tonic's generated clients call through (it is a
//! tower `Service` of HTTP requests, as tonic's own `Channel` is): one
//! HTTP/2 connection to one address, made on the first call, shared by
//! every call, and made again on the next call after it is lost (closed by
//! the server, broken, or silent past its keep-alive). TCP and TLS (rustls,
//! ALPN `h2`) are its own, and so are the connect timeout and the
//! keep-alive pings.
//!
//! Why not tonic's `Channel`: each call there goes through a buffer task
//! and hyper's client, and hyper hands a request's message to h2 only once
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

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, Weak},
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt as _, Shared};
use h2::{
    Ping, PingPong, Reason, RecvStream, SendStream,
    client::{Builder, SendRequest},
};
use http::{HeaderValue, Request, Response, Uri, header::USER_AGENT, uri};
use http_body::{Body, Frame};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;
use tonic::{Code, Status};
use tower::Service;

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
    /// The rustls client configuration.
    pub config: Arc<rustls::ClientConfig>,
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

type Connecting = Shared<BoxFuture<'static, Result<(u64, SendRequest<Bytes>), Status>>>;

/// The channel's connection: ready, being made, or neither.
#[derive(Default)]
struct State {
    /// Numbers the connections, so that a lost one clears only itself.
    generation: u64,
    ready: Option<(u64, SendRequest<Bytes>)>,
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
    async fn sender(self: &Arc<Self>) -> Result<(u64, SendRequest<Bytes>), Status> {
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
        if state.ready.as_ref().is_some_and(|(g, _)| *g == generation) {
            state.ready = None;
        }
    }

    fn unavailable(&self, what: &str, err: impl std::fmt::Display) -> Status {
        Status::unavailable(format!("{what} {}: {err}", self.addr))
    }
}

/// Makes connection `generation` of the channel: TCP, TLS, the HTTP/2
/// handshake, then the tasks that drive the connection and its keep-alive.
async fn connect(
    shared: Weak<Inner>,
    generation: u64,
) -> Result<(u64, SendRequest<Bytes>), Status> {
    let Some(this) = shared.upgrade() else {
        return Err(Status::cancelled("the channel was dropped"));
    };
    let settings = &this.settings;
    let handshake = async {
        let tcp = TcpStream::connect(this.addr)
            .await
            .map_err(|err| this.unavailable("cannot connect to", err))?;
        tcp.set_nodelay(true)
            .map_err(|err| this.unavailable("cannot set TCP_NODELAY toward", err))?;
        let io = match &settings.tls {
            None => Either::Left(tcp),
            Some(tls) => {
                let stream = TlsConnector::from(tls.config.clone())
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|err| this.unavailable("TLS handshake failed with", err))?;
                if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err(this.unavailable(
                        "TLS without HTTP/2 from",
                        "the server did not agree to ALPN h2",
                    ));
                }
                Either::Right(stream)
            }
        };
        Builder::new()
            .enable_push(false)
            // Until the server's SETTINGS say how many streams it takes,
            // at most HTTP/2's recommended minimum (as hyper's client).
            .initial_max_send_streams(100)
            .initial_window_size(settings.stream_window)
            .initial_connection_window_size(settings.connection_window)
            .max_header_list_size(settings.max_header_list_size)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|err| this.unavailable("HTTP/2 handshake failed with", err))
    };
    let (sender, mut connection) = tokio::time::timeout(settings.connect_timeout, handshake)
        .await
        .map_err(|_| {
            this.unavailable(
                "cannot connect to",
                format_args!("no connection within {:?}", settings.connect_timeout),
            )
        })??;
    tracing::debug!(server = %this.addr, generation, "connected");

    // The keep-alive gets the connection task's abort handle once it is
    // spawned; the connection task stops the keep-alive when it ends.
    let ping = connection.ping_pong();
    let (interval, timeout) = (settings.keep_alive_interval, settings.keep_alive_timeout);
    let (abort_tx, abort_rx) = tokio::sync::oneshot::channel();
    let addr = this.addr;
    let keep_alive = tokio::spawn(async move {
        if let (Some(ping), Ok(connection)) = (ping, abort_rx.await) {
            keep_alive(ping, interval, timeout, addr, connection).await;
        }
    });
    let on_end = Ended {
        shared,
        generation,
        keep_alive: keep_alive.abort_handle(),
    };
    let task = tokio::spawn(async move {
        let _on_end = on_end;
        if let Err(err) = connection.await {
            tracing::debug!(server = %addr, generation, error = %err, "connection lost");
        }
    });
    // The receiver is gone only if the keep-alive task already ended.
    let _ = abort_tx.send(task.abort_handle());
    Ok((generation, sender))
}

/// Pings every `interval`; a ping unanswered within `timeout` aborts the
/// connection's task, which closes the connection. Ends with the
/// connection.
async fn keep_alive(
    mut ping: PingPong,
    interval: Duration,
    timeout: Duration,
    addr: SocketAddr,
    connection: tokio::task::AbortHandle,
) {
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(timeout, ping.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(_closed)) => return,
            Err(_) => {
                tracing::warn!(server = %addr, ?timeout, "no answer to a keep-alive ping: closing the connection");
                connection.abort();
                return;
            }
        }
    }
}

/// Runs when a connection's task ends, however it ends (the connection
/// closed, broke, or was aborted by its keep-alive): the channel forgets
/// the connection and the keep-alive stops.
struct Ended {
    shared: Weak<Inner>,
    generation: u64,
    keep_alive: tokio::task::AbortHandle,
}

impl Drop for Ended {
    fn drop(&mut self) {
        self.keep_alive.abort();
        if let Some(shared) = self.shared.upgrade() {
            shared.lost(self.generation);
        }
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
        let (generation, sender) = self.sender().await?;
        match sender.ready().await {
            Ok(ready) => Ok(ready),
            Err(err) => {
                tracing::debug!(server = %self.addr, error = %err, "connection gone: connecting again");
                self.lost(generation);
                let (_, sender) = self.sender().await?;
                sender
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
            let mut pipe = Pipe {
                body,
                stream,
                held: None,
                handed: 0,
            };
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
        Ok(Response::from_parts(
            parts,
            H2Body {
                recv,
                data_done: false,
                server: self.addr,
            },
        ))
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

/// Hands a request's body to h2: each chunk at once while the request has
/// handed less than [`EAGER_BYTES`], then each after send capacity is
/// granted; the last chunk ends the stream.
struct Pipe {
    body: tonic::body::Body,
    stream: SendStream<Bytes>,
    /// The chunk polled last, sent when the next frame says whether it ends
    /// the stream.
    held: Option<Bytes>,
    handed: usize,
}

impl Pipe {
    fn poll_pipe(&mut self, cx: &mut Context<'_>) -> Poll<()> {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt as _, Full};
    use tokio::{io::AsyncReadExt as _, net::TcpListener};

    use super::*;

    fn settings() -> ChannelSettings {
        ChannelSettings::new(
            Duration::from_secs(5),
            HeaderValue::from_static("channel-test"),
        )
    }

    fn request(message: &'static [u8]) -> Request<tonic::body::Body> {
        let mut request = Request::new(tonic::body::Body::new(Full::new(Bytes::from_static(
            message,
        ))));
        *request.uri_mut() = Uri::from_static("/test.Echo/Echo");
        request
    }

    /// Calls `channel` with `message`; the echoed body and the trailers'
    /// `grpc-status`.
    async fn call(
        channel: &mut H2Channel,
        message: &'static [u8],
    ) -> Result<(Bytes, String), Status> {
        let response = channel.call(request(message)).await?;
        let collected = response.into_body().collect().await?;
        let status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        Ok((collected.to_bytes(), status))
    }

    /// An HTTP/2 server (the `h2` crate's) that echoes each request's body
    /// with `grpc-status: 0`, allows `max_streams` at once, and sends
    /// GOAWAY after `calls_per_connection` calls. Counts its connections.
    async fn echo_server(
        max_streams: u32,
        calls_per_connection: usize,
    ) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut connection) = h2::server::Builder::new()
                        .max_concurrent_streams(max_streams)
                        .handshake::<_, Bytes>(socket)
                        .await
                    else {
                        return;
                    };
                    let mut served = 0;
                    while let Some(Ok((request, mut respond))) = connection.accept().await {
                        tokio::spawn(async move {
                            let mut body = request.into_body();
                            let mut message = Vec::new();
                            while let Some(Ok(data)) = body.data().await {
                                let _ = body.flow_control().release_capacity(data.len());
                                message.extend_from_slice(&data);
                            }
                            let response = Response::builder()
                                .header("content-type", "application/grpc")
                                .body(())
                                .expect("a valid response");
                            let Ok(mut stream) = respond.send_response(response, false) else {
                                return;
                            };
                            let _ = stream.send_data(message.into(), false);
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", HeaderValue::from_static("0"));
                            let _ = stream.send_trailers(trailers);
                        });
                        served += 1;
                        if served == calls_per_connection {
                            connection.graceful_shutdown();
                        }
                    }
                });
            }
        });
        (addr, connections)
    }

    #[tokio::test]
    async fn a_call_is_answered_over_one_shared_connection() {
        let (addr, connections) = echo_server(100, usize::MAX).await;
        let mut channel = H2Channel::lazy(addr, settings());
        assert!(!channel.is_connected(), "lazy: no connection before a call");

        let calls = (0..20).map(|_| {
            let mut channel = channel.clone();
            async move { call(&mut channel, b"hello").await }
        });
        let results = futures_util::future::join_all(calls).await;

        for result in results {
            assert_eq!(
                result.expect("answered"),
                (Bytes::from_static(b"hello"), "0".to_owned())
            );
        }
        assert_eq!(
            call(&mut channel, b"again").await.expect("answered").0,
            "again"
        );
        assert_eq!(
            connections.load(Ordering::SeqCst),
            1,
            "one connection for every call"
        );
        assert!(channel.is_connected());
    }

    #[tokio::test]
    async fn calls_beyond_the_servers_stream_limit_wait_for_a_stream() {
        let (addr, _) = echo_server(4, usize::MAX).await;
        let mut channel = H2Channel::lazy(addr, settings());
        // Connected, with the server's SETTINGS (4 streams) known.
        call(&mut channel, b"first").await.expect("answered");

        let calls = (0..200).map(|_| {
            let mut channel = channel.clone();
            async move { call(&mut channel, b"queued").await }
        });
        let results = futures_util::future::join_all(calls).await;

        let answered = results
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|(_, s)| s == "0"))
            .count();
        assert_eq!(answered, 200, "{:?}", results.iter().find(|r| r.is_err()));
    }

    #[tokio::test]
    async fn a_connection_the_server_closes_is_made_again_by_the_next_call() {
        let (addr, connections) = echo_server(100, 1).await;
        let mut channel = H2Channel::lazy(addr, settings());

        for round in 1..=3 {
            // The server says GOAWAY after each call; the next call meets
            // that connection gone or still closing, and makes a new one.
            let answered = call(&mut channel, b"one").await;
            assert_eq!(answered.expect("answered").1, "0", "round {round}");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn response_headers_over_the_limit_fail_the_call_not_the_channel() {
        // Answers each call with 32 KiB of headers (the limit is 16 KiB).
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("a connection");
            let mut connection = h2::server::handshake(socket).await.expect("a handshake");
            while let Some(Ok((_request, mut respond))) = connection.accept().await {
                let response = Response::builder()
                    .header("content-type", "application/grpc")
                    .header("x-huge", "x".repeat(32 << 10))
                    .body(())
                    .expect("a valid response");
                let _ = respond.send_response(response, true);
            }
        });
        let mut channel = H2Channel::lazy(addr, settings());

        let status = call(&mut channel, b"x")
            .await
            .expect_err("refused by the client");

        assert_eq!(status.code(), Code::Internal, "{status:?}");
        assert!(
            channel.is_connected(),
            "one call's headers do not take the connection down"
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_refused_connection_is_unavailable_and_names_the_server() {
        // A port just freed: nothing listens on it.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        let mut channel = H2Channel::lazy(addr, settings());

        let status = call(&mut channel, b"x").await.expect_err("nothing listens");

        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains(&addr.to_string()), "{status:?}");
        assert!(!channel.is_connected());
    }

    #[tokio::test]
    async fn a_handshake_that_never_ends_fails_at_the_connect_timeout() {
        // A TLS server that accepts and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let held = tokio::spawn(async move {
            let mut sockets = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                sockets.push(socket);
            }
        });
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let mut settings = settings();
        settings.connect_timeout = Duration::from_millis(200);
        settings.tls = Some(ClientTls {
            config: Arc::new(config),
            server_name: ServerName::try_from("localhost").expect("a name"),
        });
        let mut channel = H2Channel::lazy(addr, settings);

        let status = call(&mut channel, b"x").await.expect_err("never connects");

        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().contains("no connection within 200ms"),
            "{status:?}"
        );
        held.abort();
    }

    #[tokio::test]
    async fn a_server_that_stops_answering_pings_is_dropped_with_its_calls() {
        // Reads everything, answers nothing: not SETTINGS, not PING.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let silent = tokio::spawn(async move {
            if let Ok((mut socket, _)) = listener.accept().await {
                let mut sink = [0; 4096];
                while socket.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            }
        });
        let mut settings = settings();
        settings.keep_alive_interval = Duration::from_millis(100);
        settings.keep_alive_timeout = Duration::from_millis(100);
        let mut channel = H2Channel::lazy(addr, settings);

        let call = tokio::time::timeout(Duration::from_secs(10), call(&mut channel, b"x")).await;

        let status = call
            .expect("ended by the keep-alive")
            .expect_err("no answer");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(!channel.is_connected(), "the connection is forgotten");
        silent.abort();
    }

    #[tokio::test]
    async fn a_calls_headers_and_message_leave_in_one_write() {
        // Records, on a thread of its own (so that it reads each write as
        // it arrives, not after this runtime's tasks have all run), the
        // bytes of each read until the first stream ends; returns the read
        // that completed the call's HEADERS and the one that completed its
        // DATA with END_STREAM.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let recorder = std::thread::spawn(move || {
            use std::io::{Read as _, Write as _};
            let (mut socket, _) = listener.accept().expect("a connection");
            socket
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("a read timeout");
            socket
                .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
                .expect("SETTINGS sent");
            let (mut bytes, mut reads) = (Vec::new(), Vec::new());
            let mut buffer = [0; 4096];
            loop {
                let n = socket.read(&mut buffer).expect("readable");
                assert!(n > 0, "the stream ended before its DATA: {reads:?}");
                bytes.extend_from_slice(&buffer[..n]);
                reads.push(bytes.len());
                // The frames after the 24-byte preface: (type, flags, end).
                let mut frames = Vec::new();
                let mut at = 24;
                while at + 9 <= bytes.len() {
                    let length =
                        u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
                    if at + 9 + length > bytes.len() {
                        break;
                    }
                    frames.push((bytes[at + 3], bytes[at + 4], at + 9 + length));
                    at += 9 + length;
                }
                let data = frames
                    .iter()
                    .find(|(kind, flags, _)| *kind == 0 && flags & 1 == 1);
                if let Some(&(_, _, data_end)) = data {
                    let &(_, _, headers_end) = frames
                        .iter()
                        .find(|(kind, _, _)| *kind == 1)
                        .expect("HEADERS before DATA");
                    let read_of = |end: usize| reads.iter().position(|&r| r >= end);
                    return (read_of(headers_end), read_of(data_end));
                }
            }
        });
        let mut channel = H2Channel::lazy(addr, settings());
        let pending = tokio::spawn(async move { call(&mut channel, b"message").await });

        let recorded = tokio::task::spawn_blocking(move || recorder.join())
            .await
            .expect("joined");
        pending.abort();

        let (headers_read, data_read) = recorded.expect("the recorder saw the call");
        assert_eq!(
            headers_read, data_read,
            "HEADERS and DATA (END_STREAM) in the same read"
        );
    }
}
