//! Hostile clients over real sockets, for the siege (`src/bin/siege.rs`):
//! connections that trickle, stall, idle or send half a message. Each
//! reports what the server did to it; the siege judges. The HTTP/2 frame
//! attacks use [`service_kit::testing::raw_h2`].

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bytes::Bytes;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    task::JoinSet,
};

/// The HTTP/2 client preface and an empty SETTINGS frame: what a gRPC
/// client sends first.
pub const H2_PREFACE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// The header of a TLS handshake record announcing a 512-byte ClientHello
/// that never comes.
pub const TLS_RECORD_HEADER: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00];

/// How connections that the server should close fared.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Closures {
    /// Connections attempted.
    pub attempted: usize,
    /// Connections the server closed (or refused) before the patience ran out.
    pub closed: usize,
    /// How long the longest-lived of those stayed open.
    pub longest: Duration,
}

/// Opens `count` connections to `addr`, each sending `opening` and then
/// `trickle` every `every` (nothing when `trickle` is empty), and waits up to
/// `patience` for the server to close each. Slowloris is a request line and
/// a header byte a second; a stalled handshake sends a record header and
/// nothing more.
pub async fn hold_open(
    addr: SocketAddr,
    count: usize,
    opening: &'static [u8],
    trickle: &'static [u8],
    every: Duration,
    patience: Duration,
) -> Closures {
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        let started = Instant::now();
        // A connection the kernel refuses counts as closed at once.
        let Ok(stream) = TcpStream::connect(addr).await else {
            tasks.spawn(async { Some(Duration::ZERO) });
            continue;
        };
        tasks.spawn(async move {
            let mut stream = stream;
            if stream.write_all(opening).await.is_err() {
                return Some(started.elapsed());
            }
            let mut buf = [0u8; 1024];
            let deadline = tokio::time::Instant::now() + patience;
            loop {
                tokio::select! {
                    read = stream.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return Some(started.elapsed()),
                        Ok(_) => {}
                    },
                    () = tokio::time::sleep(every), if !trickle.is_empty() => {
                        if stream.write_all(trickle).await.is_err() {
                            return Some(started.elapsed());
                        }
                    }
                    () = tokio::time::sleep_until(deadline) => return None,
                }
            }
        });
    }
    let mut closures = Closures {
        attempted: count,
        ..Closures::default()
    };
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Some(lasted)) = joined {
            closures.closed += 1;
            closures.longest = closures.longest.max(lasted);
        }
    }
    closures
}

/// Opens `count` connections to `addr` that each send `opening` and then
/// nothing, and returns those the kernel accepted. With `answer`, each waits
/// for the first bytes of a response (up to 10 s) before the next opens, so
/// that an HTTP/1 connection is idle after a served request.
pub async fn idle(
    addr: SocketAddr,
    count: usize,
    opening: &[u8],
    answer: bool,
) -> anyhow::Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(count);
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..count {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            continue;
        };
        if stream.write_all(opening).await.is_err() {
            continue;
        }
        if answer {
            match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
                Ok(Ok(read)) if read > 0 => {}
                // Closed or refused: a connection over the cap.
                Ok(_) => continue,
                Err(_) => anyhow::bail!("no answer from {addr} within 10 s"),
            }
        }
        streams.push(stream);
    }
    Ok(streams)
}

/// How many of `streams` the server has not closed: reads what is waiting
/// on each without blocking.
pub fn still_open(streams: &[TcpStream]) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    streams
        .iter()
        .filter(|stream| {
            loop {
                match stream.try_read(&mut buf) {
                    Ok(0) => break false,
                    Ok(_) => continue,
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break true,
                    Err(_) => break false,
                }
            }
        })
        .count()
}

/// Attack 3: on `connections` connections at once, starts a gRPC call to
/// `path` whose message declares `declared` bytes, sends `sent` of them and
/// stops. Returns the `grpc-status` of each call (None: no answer within
/// 10 s, or none in the response).
pub async fn half_sent_messages(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    declared: u32,
    sent: usize,
) -> anyhow::Result<Vec<Option<String>>> {
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let (client, connection) = h2::client::handshake(tcp)
            .await
            .context("an HTTP/2 handshake")?;
        tokio::spawn(connection);
        let request = http::Request::post(format!("http://{addr}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .context("a request")?;
        tasks.spawn(async move {
            let mut client = client.ready().await.ok()?;
            let (response, mut body) = client.send_request(request, false).ok()?;
            let mut message = vec![0u8];
            message.extend_from_slice(&declared.to_be_bytes());
            message.resize(5 + sent, 0);
            body.send_data(Bytes::from(message), false).ok()?;
            let response = tokio::time::timeout(Duration::from_secs(10), response)
                .await
                .ok()?
                .ok()?;
            let status = |headers: &http::HeaderMap| {
                headers
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
            };
            if let Some(code) = status(response.headers()) {
                return Some(code);
            }
            let mut response = response.into_body();
            while response.data().await.is_some() {}
            let trailers = response.trailers().await.ok()??;
            // Keep the request stream open until the answer is read.
            drop(body);
            status(&trailers)
        });
    }
    Ok(tasks.join_all().await)
}
