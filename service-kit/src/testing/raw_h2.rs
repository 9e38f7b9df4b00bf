//! An HTTP/2 client that writes frames by hand, for the attacks a
//! well-behaved client library refuses to make: more streams than the
//! server allows, a zero flow-control window, HEADERS + RST_STREAM floods.
//! It reads back only what the attacks are judged by (resets, responses and
//! GOAWAY). Used by the services' attack tests and by the siege harness.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const DATA: u8 = 0x0;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
/// SETTINGS_INITIAL_WINDOW_SIZE.
const INITIAL_WINDOW_SIZE: u16 = 0x4;

/// HTTP/2 error codes the tests look for.
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// What the server sent back, as far as the attacks care.
#[derive(Debug, Default)]
pub struct Seen {
    /// Streams reset by the server, with the error code.
    pub resets: Vec<(u32, u32)>,
    /// HEADERS frames received (responses, trailers).
    pub headers: usize,
    /// The error code of a GOAWAY, if one came.
    pub goaway: Option<u32>,
    /// Whether the server closed the connection.
    pub closed: bool,
}

impl Seen {
    /// Streams reset with `code`.
    pub fn resets_with(&self, code: u32) -> usize {
        self.resets.iter().filter(|(_, c)| *c == code).count()
    }
}

/// A raw HTTP/2 connection.
pub struct RawH2 {
    stream: TcpStream,
    authority: String,
    next_stream: u32,
    out: Vec<u8>,
}

impl RawH2 {
    /// Connects and queues the preface with `settings` (id, value).
    pub async fn connect(addr: SocketAddr, settings: &[(u16, u32)]) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut this = Self {
            stream,
            authority: addr.to_string(),
            next_stream: 1,
            out: PREFACE.to_vec(),
        };
        let mut payload = Vec::new();
        for (id, value) in settings {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        this.frame(SETTINGS, 0, 0, &payload);
        Ok(this)
    }

    /// A connection that never lets the server send response data.
    pub async fn connect_with_zero_window(addr: SocketAddr) -> std::io::Result<Self> {
        Self::connect(addr, &[(INITIAL_WINDOW_SIZE, 0)]).await
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        // Every frame built here is far below HTTP/2's 16 MiB frame limit.
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        self.out.extend_from_slice(&len.to_be_bytes()[1..]);
        self.out.push(kind);
        self.out.push(flags);
        self.out.extend_from_slice(&stream.to_be_bytes());
        self.out.extend_from_slice(payload);
    }

    /// Queues the HEADERS of a gRPC call to `path` on a new stream (no
    /// body yet) and returns the stream id.
    pub fn open_call(&mut self, path: &str) -> u32 {
        self.open_call_with_metadata(path, &[])
    }

    /// [`RawH2::open_call`] with `metadata` (name, value) after the
    /// standard headers. Names and values longer than 126 bytes are cut.
    pub fn open_call_with_metadata(&mut self, path: &str, metadata: &[(&str, &str)]) -> u32 {
        let id = self.next_stream;
        self.next_stream += 2;
        let mut block = Vec::new();
        let standard = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", self.authority.as_str()),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ];
        for &(name, value) in standard.iter().chain(metadata) {
            // Literal header field without indexing, literal name, no Huffman.
            block.push(0x00);
            for text in [name, value] {
                // A one-byte length prefix holds up to 126.
                let len = text.len().min(126);
                block.push(u8::try_from(len).unwrap_or(126));
                block.extend_from_slice(&text.as_bytes()[..len]);
            }
        }
        self.frame(HEADERS, END_HEADERS, id, &block);
        id
    }

    /// Queues a gRPC message frame (`message` after the 5-byte prefix, whose
    /// length field says `declared`) on `stream`, ending it when `end`.
    pub fn send_message(&mut self, stream: u32, declared: u32, message: &[u8], end: bool) {
        let mut payload = vec![0u8];
        payload.extend_from_slice(&declared.to_be_bytes());
        payload.extend_from_slice(message);
        self.frame(DATA, if end { END_STREAM } else { 0 }, stream, &payload);
    }

    /// Queues RST_STREAM(CANCEL) on `stream`.
    pub fn reset(&mut self, stream: u32) {
        self.frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes());
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        let out = std::mem::take(&mut self.out);
        self.stream.write_all(&out).await
    }

    /// Reads frames until `enough` says so, the connection closes, or
    /// `patience` passes without a frame.
    pub async fn read_until(&mut self, patience: Duration, enough: impl Fn(&Seen) -> bool) -> Seen {
        let mut seen = Seen::default();
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        while !enough(&seen) {
            let read = match tokio::time::timeout(patience, self.stream.read(&mut chunk)).await {
                Err(_) => break,
                Ok(Ok(0) | Err(_)) => {
                    seen.closed = true;
                    break;
                }
                Ok(Ok(read)) => read,
            };
            buf.extend_from_slice(&chunk[..read]);
            while buf.len() >= 9 {
                let len =
                    usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
                if buf.len() < 9 + len {
                    break;
                }
                let kind = buf[3];
                let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
                let payload = &buf[9..9 + len];
                match kind {
                    RST_STREAM => seen.resets.push((
                        stream,
                        u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
                    )),
                    GOAWAY => {
                        seen.goaway = Some(u32::from_be_bytes([
                            payload[4], payload[5], payload[6], payload[7],
                        ]));
                    }
                    HEADERS => seen.headers += 1,
                    _ => {}
                }
                buf.drain(..9 + len);
            }
        }
        seen
    }
}
