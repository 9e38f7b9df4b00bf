//! Making a channel's connection (TCP, TLS, the HTTP/2 handshake) and
//! keeping it: the tasks that drive it and ping it, and what happens when it
//! ends.

use std::{net::SocketAddr, sync::Weak, time::Duration};

use bytes::Bytes;
use h2::{
    Ping, PingPong,
    client::{Builder, SendRequest},
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;
use tonic::Status;

use super::Inner;

/// A connection made: its number, the handle that opens streams on it, and
/// the task that drives it (aborting it closes the connection).
#[derive(Clone, Debug)]
pub(super) struct Connection {
    pub(super) generation: u64,
    pub(super) sender: SendRequest<Bytes>,
    pub(super) task: tokio::task::AbortHandle,
}

/// Makes connection `generation` of the channel: TCP, TLS, the HTTP/2
/// handshake, then the tasks that drive the connection and its keep-alive.
pub(super) async fn connect(shared: Weak<Inner>, generation: u64) -> Result<Connection, Status> {
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
                let stream = TlsConnector::from(tls.config.current())
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
    Ok(Connection {
        generation,
        sender,
        task: task.abort_handle(),
    })
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
