//! The channel against real HTTP/2 servers on loopback.

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
async fn call(channel: &mut H2Channel, message: &'static [u8]) -> Result<(Bytes, String), Status> {
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
        config: crate::reload::Live::new(Arc::new(config)),
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

#[tokio::test]
async fn a_connection_believed_dead_is_closed_and_the_next_call_dials_anew() {
    // Reads everything, answers nothing; says when its peer closed.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("bound");
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    let silent = tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let mut sink = [0; 4096];
        while socket.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        let _ = closed_tx.send(());
        // A second connection is the next call's: held open, unanswered.
        let _second = listener.accept().await;
        std::future::pending::<()>().await;
    });
    let mut channel = H2Channel::lazy(addr, settings());
    let unanswered =
        tokio::time::timeout(Duration::from_millis(200), call(&mut channel, b"x")).await;
    assert!(unanswered.is_err(), "the server never answers");
    assert!(channel.is_connected());

    channel.disconnect();

    assert!(!channel.is_connected());
    tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the server saw the connection close")
        .expect("reported");
    let next = tokio::time::timeout(Duration::from_millis(200), call(&mut channel, b"y")).await;
    assert!(next.is_err(), "still no answer, on a new connection");
    assert!(channel.is_connected());
    silent.abort();
}
