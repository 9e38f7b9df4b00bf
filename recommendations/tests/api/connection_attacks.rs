//! Hostile connections against the real server over real sockets: over the
//! cap, silent, oversized metadata, pings unanswered, random paths; each
//! test asserts the bound that holds and that others are still served.

use std::time::Duration;

use recommendations::Settings;
use service_kit::limits::GrpcLimits;
use tokio::{io::AsyncReadExt as _, net::TcpStream};

use service_kit::testing::raw_h2::RawH2;

use crate::helpers::{spawn_app, spawn_app_with};

use crate::attacks::*;

/// Attack 7: connections over the cap are closed at once, and the slots
/// of those that leave serve others.
#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let app = spawn_app_with(Settings {
        limits: GrpcLimits {
            max_connections: 8,
            // Long enough that only the cap can close a connection here.
            handshake_timeout: Duration::from_secs(600),
            ..Settings::for_tests().limits
        },
        ..Settings::for_tests()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect(app.addr).await.expect("connects");
        // A byte, so that the listener hands each to its handshake.
        tokio::io::AsyncWriteExt::write_all(&mut stream, b"P")
            .await
            .expect("sent");
        idle.push(stream);
    }
    let mut over = TcpStream::connect(app.addr)
        .await
        .expect("the kernel accepts");

    let mut byte = [0u8; 1];
    let refused = tokio::time::timeout(Duration::from_secs(10), over.read(&mut byte)).await;
    drop(idle);
    let ok = ok_calls(&well_behaved(&app), 10).await;

    assert!(matches!(refused, Ok(Ok(0) | Err(_))), "{refused:?}");
    assert_eq!(ok, 10);
}

/// Connections that never send a byte are closed at the handshake timeout.
#[tokio::test]
async fn silent_connections_are_closed_at_the_handshake_timeout() {
    let app = spawn_app_with(Settings {
        limits: GrpcLimits {
            handshake_timeout: Duration::from_millis(200),
            ..Settings::for_tests().limits
        },
        ..Settings::for_tests()
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(app.addr).await.expect("connects"));
    }

    let mut closed = 0;
    let mut byte = [0u8; 1];
    for stream in &mut silent {
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    let ok = ok_calls(&well_behaved(&app), 10).await;

    assert_eq!(closed, 50, "silent connections are closed");
    assert_eq!(ok, 10);
}

/// A call whose metadata is over the 16 KiB header list limit is refused
/// (HTTP 431, then the stream is reset) without harm to its connection.
#[tokio::test]
async fn metadata_over_the_header_list_limit_is_refused() {
    let app = spawn_app().await;
    let value = "v".repeat(100);
    let names: Vec<String> = (0..130).map(|i| format!("x-pad-{i:04}")).collect();
    // 130 headers: ~15 KiB encoded, within one HEADERS frame (16 KiB), and
    // ~18.7 KiB decoded (name + value + 32 each), over the 16 KiB limit.
    let metadata: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), value.as_str())).collect();
    let mut client = RawH2::connect(app.addr, &[]).await.expect("connects");

    let oversized = client.open_call_with_metadata(RECOMMEND, &metadata);
    client.flush().await.expect("sent");
    let refused = client
        .read_until(Duration::from_secs(10), |seen| !seen.resets.is_empty())
        .await;
    let next = client.open_call(RECOMMEND);
    client.send_message(next, MESSAGE.len() as u32, &MESSAGE, true);
    client.flush().await.expect("sent");
    // Response headers and trailers of the next call.
    let served = client
        .read_until(Duration::from_secs(10), |seen| seen.headers >= 2)
        .await;

    let reset_streams: Vec<u32> = refused.resets.iter().map(|(stream, _)| *stream).collect();
    assert_eq!(reset_streams, [oversized], "{refused:?}");
    assert_eq!(refused.headers, 1, "a 431 response: {refused:?}");
    assert_eq!(served.headers, 2, "{served:?}");
    assert!(
        served.resets.is_empty() && served.goaway.is_none(),
        "{served:?}"
    );
}

/// A peer that stops answering (a host that vanished behind a NAT, a
/// process that hangs) is found out by HTTP/2 keep-alive: the server PINGs
/// it, gets no acknowledgement, and closes the connection.
#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_closed_by_keep_alive() {
    let app = spawn_app_with(Settings {
        limits: GrpcLimits {
            keepalive_interval: Duration::from_millis(200),
            keepalive_timeout: Duration::from_millis(200),
            ..Settings::for_tests().limits
        },
        ..Settings::for_tests()
    })
    .await;
    let mut peer = TcpStream::connect(app.addr).await.expect("connects");
    // The client preface and an empty SETTINGS frame, then silence: no
    // SETTINGS acknowledgement, no PING acknowledgement, ever.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    tokio::io::AsyncWriteExt::write_all(&mut peer, &hello)
        .await
        .expect("sent");

    let received = tokio::time::timeout(Duration::from_secs(10), async {
        let mut received = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match peer.read(&mut chunk).await {
                Ok(0) | Err(_) => return received,
                Ok(read) => received.extend_from_slice(&chunk[..read]),
            }
        }
    })
    .await
    .expect("closed by the server, not by this test's timeout");

    // Frame types the server sent before closing: 6 is PING.
    let mut types = Vec::new();
    let mut rest = &received[..];
    while rest.len() >= 9 {
        let length = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        types.push(rest[3]);
        rest = rest.get(9 + length..).unwrap_or_default();
    }
    assert!(types.contains(&6), "no PING before the close: {types:?}");
    assert_eq!(ok_calls(&well_behaved(&app), 10).await, 10);
}

/// While every call slot is held, calls to random paths are refused before
/// they reach a service (RESOURCE_EXHAUSTED): they count under one `_OTHER`
/// label, not a label (and a series) per path the attacker chose.
#[tokio::test]
async fn refused_calls_to_random_paths_do_not_grow_the_metrics() {
    const HELD: u32 = 4;
    const PROBES: usize = 50;
    let app = spawn_app_with(Settings {
        limits: GrpcLimits {
            concurrency_limit: HELD,
            request_timeout: Duration::from_secs(30),
            ..Settings::for_tests().limits
        },
        ..Settings::for_tests()
    })
    .await;
    let mut holder = RawH2::connect(app.addr, &[]).await.expect("connects");
    for _ in 0..HELD {
        holder.open_call(RECOMMEND);
    }
    holder.flush().await.expect("sent");
    let held = format!("rpc_server_active_calls {HELD}");
    let mut waited = 0;
    while !app.admin_get("/metrics").await.1.contains(&held) {
        waited += 1;
        assert!(waited < 100, "the held calls were never all in flight");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut prober = RawH2::connect(app.addr, &[]).await.expect("connects");
    for probe in 0..PROBES {
        prober.open_call(&format!("/probe.Random{probe}/Method{probe}"));
    }
    prober.flush().await.expect("sent");
    let answered = prober
        .read_until(Duration::from_secs(10), |seen| seen.headers >= PROBES)
        .await;

    let (_, metrics) = app.admin_get("/metrics").await;
    assert_eq!(answered.headers, PROBES, "{answered:?}");
    assert!(
        metrics.contains(&format!(
            r#"rpc_method="_OTHER",rpc_response_status_code="RESOURCE_EXHAUSTED"}} {PROBES}"#
        )),
        "{metrics}"
    );
    assert!(!metrics.contains("probe.Random"), "{metrics}");
}
