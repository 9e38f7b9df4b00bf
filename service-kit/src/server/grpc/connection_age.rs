//! The hard end of a connection's life: closed `max age + grace` after it
//! was accepted, whatever is still in flight on it.
//!
//! At `max age` the server sends GOAWAY ([`crate::server::graceful`]), so
//! clients open a new connection (and, behind a load balancer, may land on
//! another replica) while the calls in flight finish. This wrapper around
//! each accepted socket ends the grace period: once it has passed too,
//! reads and writes fail and the connection closes.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use crate::server::graceful::Alarm;
use pin_project_lite::pin_project;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

pin_project! {
    /// An accepted connection that stops working at its deadline.
    pub struct AgeLimited<IO> {
        #[pin]
        io: IO,
        deadline: Alarm,
    }
}

impl<IO> AgeLimited<IO> {
    /// `io`, usable for `lifetime` from now.
    pub fn new(io: IO, lifetime: Duration) -> Self {
        Self {
            io,
            deadline: Alarm::at(Instant::now() + lifetime),
        }
    }

    /// The connection itself.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }
}

fn expired() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "maximum connection age and grace period reached",
    )
}

// Checking the deadline costs an atomic load per read or write. Each read
// also makes sure that the timer wakes the task reading: a connection
// always has a read pending, so it is closed on time even when idle.
// Polling the timer on every read cost more (docs/benchmarks/history.md,
// "What the server's layers cost per call").

impl<IO: AsyncRead> AsyncRead for AgeLimited<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if this.deadline.poll_rung(cx) {
            return Poll::Ready(Err(expired()));
        }
        this.io.poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite> AsyncWrite for AgeLimited<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        if this.deadline.has_rung() {
            return Poll::Ready(Err(expired()));
        }
        this.io.poll_write(cx, buf)
    }

    // Forwarded so that hyper writes frame headers and bodies with one
    // writev instead of first copying them into one buffer.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        if this.deadline.has_rung() {
            return Poll::Ready(Err(expired()));
        }
        this.io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_connection_works_until_its_deadline_then_fails() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = Box::pin(AgeLimited::new(server, Duration::from_secs(10)));
        let mut client = client;
        let mut byte = [0u8; 1];

        client.write_all(b"a").await.expect("open");
        server
            .read_exact(&mut byte)
            .await
            .expect("before the deadline");
        tokio::time::sleep(Duration::from_secs(11)).await;
        let read = server.read(&mut byte).await;
        let write = server.write(b"b").await;

        assert_eq!(read.map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
        assert_eq!(write.map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_waiting_at_the_deadline_fails_then_whichever_task_waits() {
        let (_client, server) = tokio::io::duplex(64);
        let server = Box::pin(AgeLimited::new(server, Duration::from_secs(10)));
        // A first task waits to read and gives up, leaving its waker with
        // the timer.
        let mut server = tokio::spawn(async move {
            let mut server = server;
            let mut byte = [0u8; 1];
            let gave_up = tokio::time::timeout(Duration::from_secs(1), server.read(&mut byte));
            assert!(gave_up.await.is_err(), "nothing to read yet");
            server
        })
        .await
        .expect("the first reader");

        // Another task waits past the deadline: the timer must wake it (the
        // later timer, polled first, would otherwise end the wait).
        let mut byte = [0u8; 1];
        let read = tokio::select! {
            biased;
            () = tokio::time::sleep(Duration::from_secs(60)) => panic!("left waiting past the deadline"),
            read = server.read(&mut byte) => read,
        };

        assert_eq!(read.map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
    }

    #[tokio::test]
    async fn writes_stay_vectored_over_tcp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let client = tokio::net::TcpStream::connect(listener.local_addr().expect("bound"));
        let (accepted, _) = tokio::try_join!(listener.accept(), client).expect("connected");

        let wrapped = AgeLimited::new(accepted.0, Duration::from_secs(10));

        assert!(wrapped.is_write_vectored());
    }
}
