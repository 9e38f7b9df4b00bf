//! The one connection loop every listener runs, web, admin and gRPC alike:
//! take the next connection until the stop signal, serve each in a task of
//! its own, then stop taking connections (the listening socket closes, so
//! new clients are refused at once rather than left waiting), tell every
//! connection to close gracefully, and wait for them all.
//!
//! How a connection is served (HTTP/1 and HTTP/2 with idle timeouts, or
//! HTTP/2 with a maximum age) is the caller's; how long the wait at the end
//! may take is the lifecycle's ([`crate::shutdown::bounded_drain`]).

use std::{future::Future, pin::pin};

use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    graceful::Stopping,
    listener::{Accepted, Listener},
};

/// Where a loop's connections come from.
pub trait Incoming: Send {
    /// A connection ready to serve.
    type Connection: Send + 'static;

    /// The next connection, or `None` when there will be no more.
    fn next(&mut self) -> impl Future<Output = Option<Self::Connection>> + Send;
}

/// Accepted TCP connections, under the listener's cap.
impl Incoming for Listener {
    type Connection = Accepted;

    async fn next(&mut self) -> Option<Accepted> {
        Some(self.accept().await)
    }
}

/// Connections that something else accepted and prepared (a handshake).
impl<C: Send + 'static> Incoming for mpsc::Receiver<C> {
    type Connection = C;

    async fn next(&mut self) -> Option<C> {
        self.recv().await
    }
}

/// Serves each connection from `incoming` with `serve` until `stop`
/// resolves or `incoming` ends, then drains (see the module docs). Each
/// connection is given the [`Stopping`] signal it must close gracefully on.
/// Returns when every connection has closed: unbounded, the caller bounds
/// it.
pub async fn run_connections<I, F, Fut>(mut incoming: I, stop: impl Future<Output = ()>, serve: F)
where
    I: Incoming,
    F: Fn(I::Connection, Stopping) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let connections = TaskTracker::new();
    let stopping = CancellationToken::new();
    let mut stop = pin!(stop);
    loop {
        let connection = tokio::select! {
            () = &mut stop => break,
            connection = incoming.next() => match connection {
                Some(connection) => connection,
                None => break,
            },
        };
        connections.spawn(serve(connection, Stopping::new(stopping.clone())));
    }
    // Closes the listening socket: new clients are refused at once.
    drop(incoming);
    stopping.cancel();
    connections.close();
    connections.wait().await;
}
