//! What the marketplace's calls look like on the wire, read frame by frame
//! by a replica that records them.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::AsyncWriteExt as _,
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

use crate::helpers::{
    get,
    h2_frames::{self, DATA, END_STREAM, GOAWAY, frame},
    marketplace,
};

/// The DATA frames of the first stream to end: (payload length, flags).
type DataFrames = Vec<(usize, u8)>;

/// Reads one connection until a stream ends, reports that stream's DATA
/// frames, and closes the connection.
async fn record(mut socket: TcpStream, report: oneshot::Sender<DataFrames>) -> std::io::Result<()> {
    h2_frames::accept(&mut socket).await?;
    let mut frames: Vec<(u32, usize, u8)> = Vec::new();
    loop {
        let received = h2_frames::next(&mut socket).await?;
        if received.kind != DATA {
            continue;
        }
        frames.push((received.stream, received.payload.len(), received.flags));
        if received.flags & END_STREAM != 0 {
            let stream = received.stream;
            let _ = report.send(
                frames
                    .into_iter()
                    .filter(|(s, _, _)| *s == stream)
                    .map(|(_, length, flags)| (length, flags))
                    .collect(),
            );
            socket.write_all(&frame(GOAWAY, 0, &[0; 8])).await?;
            return socket.shutdown().await;
        }
    }
}

#[tokio::test]
async fn a_calls_message_ends_its_stream_in_one_data_frame() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr: SocketAddr = listener.local_addr().expect("bound");
    let (report, recorded) = oneshot::channel();
    tokio::spawn(async move {
        if let Ok((socket, _)) = listener.accept().await {
            let _ = record(socket, report).await;
        }
    });
    let (router, _) = marketplace(addr, Duration::from_secs(2)).await;

    // The call fails (the recorder never answers): the page renders anyway.
    let (response, _) = get(&router, "/").await;
    assert_eq!(response.status(), 200);

    let frames = tokio::time::timeout(Duration::from_secs(5), recorded)
        .await
        .expect("a stream ended in time")
        .expect("the recorder saw a stream end");
    assert_eq!(
        frames.len(),
        1,
        "one DATA frame, not an empty one after it: {frames:?}"
    );
    let (length, flags) = frames[0];
    assert!(length > 0, "the frame carries the message");
    assert_eq!(flags & END_STREAM, END_STREAM, "and ends the stream");
}
