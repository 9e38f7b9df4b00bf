//! The gRPC listener's connections, from accept to handing them to the
//! server ([`super::serve_grpc`]): a cap on connections open at once
//! ([`crate::server::listener`]), a time limit on the TLS handshake and on a
//! plaintext client's first bytes, and the hard end of each connection's
//! life ([`AgeLimited`]).
//!
//! Handshakes run in tasks of their own, so that a slow one never holds up
//! the others; only finished connections reach the server. (tonic's own
//! server has had a TLS handshake timeout since 0.14.0,
//! `ServerTlsConfig::timeout`; this one also bounds a plaintext client that
//! sends nothing, and runs for our connection loop, see [`super`].)

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use crate::{
    reload::Live,
    server::listener::{Accepted, Listener},
    tls::{HandshakeRefusals, Reason},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, mpsc},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tonic::transport::server::{Connected as _, TcpConnectInfo};

use super::connection_age::AgeLimited;

/// TLS as the gRPC listener serves it.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// The configuration each new handshake reads (reloads replace it).
    pub config: Live<rustls::ServerConfig>,
    /// Where refused handshakes are counted and logged.
    pub refusals: HandshakeRefusals,
}

/// How a connection is accepted.
#[derive(Clone)]
pub struct Handshake {
    /// TLS, when the server has a certificate.
    pub tls: Option<ServerTls>,
    /// Longest the TLS handshake, or a plaintext client's first bytes, may
    /// take.
    pub timeout: Duration,
    /// Connections are closed this long after they were accepted.
    pub lifetime: Duration,
}

/// The connections accepted by `listener`, ready to serve. Accepting stops,
/// and the listening socket closes, when the receiver is dropped.
pub fn incoming(
    listener: Listener,
    handshake: Handshake,
) -> mpsc::Receiver<AgeLimited<Connection>> {
    let (ready, incoming) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = ready.closed() => break,
                accepted = listener.accept() => accepted,
            };
            let ready = ready.clone();
            let handshake = handshake.clone();
            tokio::spawn(async move {
                let peer = accepted.peer;
                match tokio::time::timeout(handshake.timeout, handshake.complete(accepted)).await {
                    Ok(Ok(connection)) => {
                        let connection = AgeLimited::new(connection, handshake.lifetime);
                        let _ = ready.send(connection).await;
                    }
                    Ok(Err(err)) => match &handshake.tls {
                        Some(tls) => tls.refusals.refused(peer, Reason::of(&err), &err),
                        None => {
                            tracing::debug!(%peer, cause = %err, "connection closed before its first bytes")
                        }
                    },
                    Err(_) => match &handshake.tls {
                        Some(tls) => tls.refusals.refused(
                            peer,
                            Reason::timeout,
                            &format_args!("no handshake within {:?}", handshake.timeout),
                        ),
                        None => {
                            tracing::debug!(%peer, "connection closed: no first bytes within the time limit")
                        }
                    },
                }
            });
        }
    });
    incoming
}

impl Handshake {
    async fn complete(&self, accepted: Accepted) -> io::Result<Connection> {
        let Accepted { stream, slot, .. } = accepted;
        let info = stream.connect_info();
        let transport = match &self.tls {
            Some(tls) => {
                let acceptor = TlsAcceptor::from(tls.config.current());
                Transport::Tls(Box::new(acceptor.accept(stream).await?))
            }
            None => {
                // A client that connects and sends nothing holds a slot for
                // nothing: wait for its first bytes here, within the limit.
                // (`readable` can report a new socket ready before any byte
                // arrived; a peek waits for one.)
                if stream.peek(&mut [0u8; 1]).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Transport::Plain(stream)
            }
        };
        Ok(Connection {
            transport,
            info,
            _slot: slot,
        })
    }
}

/// An accepted connection, over TLS or not, holding its slot under the
/// connection cap until it is dropped.
pub struct Connection {
    transport: Transport,
    info: TcpConnectInfo,
    _slot: OwnedSemaphorePermit,
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection {
    /// The addresses at both ends, as tonic's handlers read them.
    pub fn connect_info(&self) -> &TcpConnectInfo {
        &self.info
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Transport::Tls(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().transport {
            Transport::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Transport::Tls(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().transport {
            Transport::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Transport::Tls(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.transport {
            Transport::Plain(io) => io.is_write_vectored(),
            Transport::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(io) => Pin::new(io).poll_flush(cx),
            Transport::Tls(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Transport::Tls(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}
