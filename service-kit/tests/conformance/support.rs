//! What both conformance suites share: a dummy service with a behaviour per
//! input, served by our server or by tonic's, and called through our
//! channel or through tonic's.

use std::{
    fmt::Debug,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::uri::PathAndQuery;
use prometheus_client::registry::Registry;
use protobufs::dummy::{
    ExecuteRequest, ExecuteResponse,
    dummy_service_server::{DummyService, DummyServiceServer},
};
use service_kit::{
    client::{ChannelSettings, H2Channel},
    limits::GrpcLimits,
    metrics::{RpcMetrics, Side},
    server::{Listener, serve_grpc},
    trace::CallSpans,
};
use tokio::{net::TcpListener, sync::oneshot};
use tonic::{
    Code, Request, Response, Status,
    client::Grpc,
    metadata::MetadataValue,
    transport::{Endpoint, Server},
};

/// The path of the dummy's only method.
pub const EXECUTE: &str = "/testing.dummy.v1.DummyService/Execute";

/// The dummy: echoes its input, or on request: "error" is NOT_FOUND with a
/// message and metadata, "sleep" answers after 5 s, "hang" never answers
/// (and says when its future is dropped), "big" answers 256 KiB.
#[derive(Clone, Default)]
pub struct Dummy {
    /// Handlers of "hang" whose future was dropped (the call cancelled).
    pub dropped: Arc<Mutex<usize>>,
}

/// Counts a dropped "hang" handler.
struct OnDrop(Arc<Mutex<usize>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        *self.0.lock().expect("not poisoned") += 1;
    }
}

/// The size of "big"'s answer: beyond HTTP/2's initial 64 KiB windows.
pub const BIG: usize = 256 << 10;

#[tonic::async_trait]
impl DummyService for Dummy {
    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<ExecuteResponse>, Status> {
        let input = request.into_inner().input;
        match input.as_str() {
            "error" => {
                let mut status = Status::not_found("no such thing");
                status
                    .metadata_mut()
                    .insert("x-detail", MetadataValue::from_static("42"));
                Err(status)
            }
            "sleep" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(Response::new(ExecuteResponse { output: input }))
            }
            "hang" => {
                let _on_drop = OnDrop(self.dropped.clone());
                std::future::pending().await
            }
            "big" => Ok(Response::new(ExecuteResponse {
                output: "b".repeat(BIG),
            })),
            _ => Ok(Response::new(ExecuteResponse { output: input })),
        }
    }
}

/// Which server serves the dummy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// `service_kit::server::serve_grpc`, its layers included.
    Ours,
    /// `tonic::transport::Server`.
    Tonic,
}

/// A dummy served on loopback until dropped.
pub struct Served {
    pub addr: SocketAddr,
    pub dummy: Dummy,
    _stop: oneshot::Sender<()>,
}

/// Serves a fresh dummy with `kind`, connections closed after `max_age`.
pub async fn serve(kind: ServerKind, max_age: Duration) -> Served {
    let tcp = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("a free port");
    serve_on(kind, tcp, max_age).await
}

/// Serves a fresh dummy with `kind` on `tcp`.
pub async fn serve_on(kind: ServerKind, tcp: TcpListener, max_age: Duration) -> Served {
    let addr = tcp.local_addr().expect("bound");
    let dummy = Dummy::default();
    let service = DummyServiceServer::new(dummy.clone()).max_decoding_message_size(BIG * 2);
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async {
        let _ = stopped.await;
    };
    match kind {
        ServerKind::Ours => {
            let limits = GrpcLimits {
                max_connection_age: max_age,
                max_connection_age_grace: Duration::from_secs(10),
                max_message_bytes: BIG * 2,
                ..GrpcLimits::default()
            };
            let metrics = RpcMetrics::register(&mut Registry::default(), Side::Server);
            let listener = Listener::new(tcp, 64, "grpc");
            tokio::spawn(async move {
                serve_grpc(
                    service,
                    listener,
                    &limits,
                    None,
                    metrics,
                    CallSpans::server(),
                    stopped,
                )
                .await
            });
        }
        ServerKind::Tonic => {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(tcp);
            tokio::spawn(
                Server::builder()
                    .max_connection_age(max_age)
                    .max_connection_age_grace(Duration::from_secs(10))
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, stopped),
            );
        }
    }
    Served {
        addr,
        dummy,
        _stop: stop,
    }
}

/// Which channel calls the dummy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// `service_kit::client::H2Channel`.
    Ours,
    /// `tonic::transport::Channel`.
    Tonic,
}

/// A client of the dummy at `addr`, over a lazily connected channel.
#[derive(Clone)]
pub enum Client {
    Ours(Grpc<H2Channel>),
    Tonic(Grpc<tonic::transport::Channel>),
}

impl Client {
    pub fn new(kind: ChannelKind, addr: SocketAddr) -> Self {
        match kind {
            ChannelKind::Ours => {
                let settings = ChannelSettings::new(
                    Duration::from_secs(2),
                    http::HeaderValue::from_static("conformance"),
                );
                Self::Ours(Grpc::new(H2Channel::lazy(addr, settings)))
            }
            ChannelKind::Tonic => {
                let channel = Endpoint::from_shared(format!("http://{addr}"))
                    .expect("a valid URI")
                    .connect_timeout(Duration::from_secs(2))
                    .connect_lazy();
                Self::Tonic(Grpc::new(channel))
            }
        }
    }

    /// Calls `path` with `input`, within `timeout` if given (as the
    /// request's `grpc-timeout`).
    pub async fn call_path(
        &mut self,
        path: &'static str,
        input: &str,
        timeout: Option<Duration>,
    ) -> Result<Response<ExecuteResponse>, Status> {
        let mut request = Request::new(ExecuteRequest {
            input: input.to_owned(),
        });
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        let path = PathAndQuery::from_static(path);
        let codec = tonic_prost::ProstCodec::default();
        match self {
            Self::Ours(grpc) => {
                grpc.ready()
                    .await
                    .map_err(|err| Status::unknown(err.to_string()))?;
                grpc.unary(request, path, codec).await
            }
            Self::Tonic(grpc) => {
                grpc.ready()
                    .await
                    .map_err(|err| Status::unknown(err.to_string()))?;
                grpc.unary(request, path, codec).await
            }
        }
    }

    /// Calls Execute with `input`: the output, or the status's code.
    pub async fn execute(&mut self, input: &str) -> Result<String, Code> {
        self.call_path(EXECUTE, input, None)
            .await
            .map(|response| response.into_inner().output)
            .map_err(|status| status.code())
    }
}

/// Waits until `condition` holds, for at most 5 s.
pub async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

// Each case, as both suites run it through `client`; `case` names the
// server or channel in failures.

/// Statuses: an answer, NOT_FOUND, and UNIMPLEMENTED for each of `unknown`.
pub async fn assert_statuses(client: &mut Client, unknown: &[&'static str], case: impl Debug) {
    assert_eq!(
        client.execute("hello").await,
        Ok("hello".to_owned()),
        "{case:?}"
    );
    assert_eq!(
        client.execute("error").await,
        Err(Code::NotFound),
        "{case:?}"
    );
    for path in unknown {
        let status = client
            .call_path(path, "x", None)
            .await
            .expect_err("not served");
        assert_eq!(status.code(), Code::Unimplemented, "{case:?} {path}");
    }
}

/// Trailers: an error status arrives with its message and metadata.
pub async fn assert_error_trailers(client: &mut Client, case: impl Debug) {
    let status = client
        .call_path(EXECUTE, "error", None)
        .await
        .expect_err("NOT_FOUND");

    assert_eq!(
        (status.code(), status.message()),
        (Code::NotFound, "no such thing"),
        "{case:?}"
    );
    assert_eq!(
        status.metadata().get("x-detail").map(|v| v.to_str().ok()),
        Some(Some("42")),
        "{case:?}"
    );
}

/// Deadlines: a call past its 200 ms `grpc-timeout` ends with `expected`,
/// at the deadline.
pub async fn assert_deadline(client: &mut Client, expected: Code, case: impl Debug) {
    let started = std::time::Instant::now();
    let status = client
        .call_path(EXECUTE, "sleep", Some(Duration::from_millis(200)))
        .await
        .expect_err("past its deadline");

    assert_eq!(status.code(), expected, "{case:?}: {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{case:?}: ended at the deadline"
    );
}

/// GOAWAY: 30 calls over 1.5 s, across connections that reach their
/// maximum age, all answered.
pub async fn assert_calls_go_on(client: &mut Client, case: impl Debug) {
    for i in 0..30 {
        let input = format!("call {i}");
        assert_eq!(client.execute(&input).await, Ok(input), "{case:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Flow control: messages past HTTP/2's initial windows, both ways.
pub async fn assert_big_messages(client: &mut Client, case: impl Debug) {
    let big = client.execute("big").await.expect("a big answer");
    let echoed = client.execute(&"e".repeat(BIG)).await.expect("an echo");

    assert_eq!((big.len(), echoed.len()), (BIG, BIG), "{case:?}");
}

/// Cancellation: a call dropped by its client drops the handler's future.
pub async fn assert_dropped_call_cancelled(mut client: Client, served: &Served, case: impl Debug) {
    assert_eq!(client.execute("warm").await, Ok("warm".to_owned()));

    let call = tokio::spawn(async move { client.execute("hang").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    call.abort();

    let dropped = served.dummy.dropped.clone();
    assert!(
        eventually(|| *dropped.lock().expect("not poisoned") == 1).await,
        "{case:?}: the handler's future was dropped"
    );
}
