//! Accepting connections within bounds: a cap on the connections open at
//! once, and an accept loop that backs off instead of spinning when the
//! process runs out of file descriptors (or memory).

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};

/// A TCP listener that holds at most `max_connections` accepted connections
/// at once. A connection over the cap is closed as soon as it is accepted:
/// its client sees the refusal at once and can retry elsewhere, instead of
/// waiting in the kernel's backlog.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    slots: Arc<Semaphore>,
    max_connections: usize,
    name: &'static str,
}

/// An accepted connection and its slot under the cap: the slot is given
/// back when the permit is dropped, which the connection's owner does when
/// the connection closes.
#[derive(Debug)]
pub struct Accepted {
    /// The connection, with TCP_NODELAY set (small messages must not wait).
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// The connection's slot under the cap.
    pub slot: OwnedSemaphorePermit,
}

/// The first and the longest pause after an accept error that is not about
/// one connection (EMFILE, ENFILE, ENOMEM, ...).
const BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

impl Listener {
    /// `tcp`, capped at `max_connections`; `name` says which listener in the
    /// log ("grpc", "http", "admin").
    pub fn new(tcp: TcpListener, max_connections: usize, name: &'static str) -> Self {
        Self {
            tcp,
            slots: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            name,
        }
    }

    /// Binds `addr` and caps it at `max_connections`; `name` says which
    /// listener in the log and in the error, with the `setting` that named
    /// the address ("cannot bind the grpc listener on 0.0.0.0:50051
    /// (--listen)").
    pub async fn bind(
        addr: SocketAddr,
        max_connections: usize,
        name: &'static str,
        setting: &str,
    ) -> anyhow::Result<Self> {
        let tcp = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind the {name} listener on {addr} ({setting})"))?;
        Ok(Self::new(tcp, max_connections, name))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.max_connections - self.slots.available_permits()
    }

    /// The next connection under the cap. Never fails: errors about one
    /// connection are skipped; others (out of file descriptors) are logged
    /// and retried after a pause that doubles up to a second, so that the
    /// loop neither spins nor gives up while the process recovers.
    pub async fn accept(&self) -> Accepted {
        let mut backoff = BACKOFF.0;
        loop {
            match self.tcp.accept().await {
                Ok((stream, peer)) => {
                    backoff = BACKOFF.0;
                    let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                        tracing::debug!(listener = self.name, %peer, "connection cap reached; closing a new connection");
                        drop(stream);
                        continue;
                    };
                    if let Err(err) = stream.set_nodelay(true) {
                        tracing::debug!(cause = %err, "cannot set TCP_NODELAY");
                    }
                    return Accepted { stream, peer, slot };
                }
                Err(err) if is_about_one_connection(&err) => {}
                Err(err) => {
                    tracing::warn!(listener = self.name, cause = %err, pause_ms = backoff.as_millis() as u64, "cannot accept connections; pausing");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
            }
        }
    }
}

/// Errors that end one connection attempt but say nothing about the
/// listener.
fn is_about_one_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::*;

    async fn listener(max: usize) -> Listener {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        Listener::new(tcp, max, "test")
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_at_once_and_slots_come_back() {
        let listener = listener(1).await;
        let addr = listener.local_addr().expect("bound");

        let _first = TcpStream::connect(addr).await.expect("connects");
        let held = listener.accept().await;
        let mut second = TcpStream::connect(addr).await.expect("connects");
        let accept_third = tokio::spawn(async move {
            let third = listener.accept().await;
            (listener, third)
        });
        // The second connection is over the cap: the listener closes it.
        let mut byte = [0u8; 1];
        let read = second.read(&mut byte).await;
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "closed, not served: {read:?}"
        );
        assert!(!accept_third.is_finished());

        drop(held);
        let _third = TcpStream::connect(addr).await.expect("connects");
        let (listener, third) = accept_third.await.expect("accepts once a slot is free");

        assert_eq!(listener.open_connections(), 1);
        drop(third);
        assert_eq!(listener.open_connections(), 0);
    }
}
