//! The server's layer stack around a dummy service, over a real socket (the
//! tutorial's `dummy_client`): logging, metrics, panics, limits, deadlines.

use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus_client::registry::Registry;
use protobufs::dummy::{
    ExecuteRequest, ExecuteResponse,
    dummy_service_client::DummyServiceClient,
    dummy_service_server::{DummyService, DummyServiceServer},
};
use service_kit::server::serve_grpc;
use service_kit::{
    LogFormat,
    metrics::{RpcMetrics, Side, encode},
    trace::CallSpans,
};
use service_kit::{limits::GrpcLimits, server::Listener};
use tokio::sync::{Notify, mpsc, oneshot};
use tonic::{
    Code, Request, Response, Status,
    transport::{Channel, Endpoint},
};

const METHOD: &str = "/testing.dummy.v1.DummyService/Execute";

/// The line of the server's metrics that counts `count` calls to
/// [`METHOD`] that ended with `code`.
fn counted(code: &str, count: u64) -> String {
    format!(
        "rpc_server_call_duration_seconds_count{{rpc_system_name=\"grpc\",rpc_method=\"{}\",\
         rpc_response_status_code=\"{code}\"}} {count}\n",
        METHOD.trim_start_matches('/')
    )
}
const MAX_MESSAGE_BYTES: usize = 1024;

/// Echoes, or on request: "panic" panics, "error" fails with NOT_FOUND,
/// "block" waits for the test to release it, "peer" returns the client's
/// address as the server sees it.
struct Dummy {
    entered: mpsc::UnboundedSender<()>,
    release: Arc<Notify>,
    dropped: mpsc::UnboundedSender<()>,
}

/// Tells the test when a blocked handler's future is dropped.
struct DropSignal(mpsc::UnboundedSender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[tonic::async_trait]
impl DummyService for Dummy {
    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<ExecuteResponse>, Status> {
        let peer = request.remote_addr();
        let input = request.into_inner().input;
        match input.as_str() {
            "peer" => Ok(Response::new(ExecuteResponse {
                output: format!("{peer:?}"),
            })),
            "panic" => panic!("dummy handler panicked on purpose"),
            "error" => Err(Status::not_found("no such thing")),
            "block" => {
                let _signal = DropSignal(self.dropped.clone());
                let _ = self.entered.send(());
                self.release.notified().await;
                Ok(Response::new(ExecuteResponse { output: input }))
            }
            _ => Ok(Response::new(ExecuteResponse { output: input })),
        }
    }
}

struct DummyServer {
    addr: SocketAddr,
    client: DummyServiceClient<Channel>,
    registry: Registry,
    entered: mpsc::UnboundedReceiver<()>,
    release: Arc<Notify>,
    dropped: mpsc::UnboundedReceiver<()>,
    _stop: oneshot::Sender<()>,
}

impl DummyServer {
    async fn call(&self, input: &str) -> Result<String, Status> {
        let mut client = self.client.clone();
        let request = ExecuteRequest {
            input: input.to_owned(),
        };
        client.execute(request).await.map(|r| r.into_inner().output)
    }

    fn metrics(&self) -> String {
        encode(&self.registry).expect("encoding into a String cannot fail")
    }
}

async fn spawn_dummy(limits: GrpcLimits) -> DummyServer {
    let (entered_tx, entered) = mpsc::unbounded_channel();
    let (dropped_tx, dropped) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let dummy = Dummy {
        entered: entered_tx,
        release: release.clone(),
        dropped: dropped_tx,
    };
    let service = DummyServiceServer::new(dummy).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let mut registry = Registry::default();
    let metrics = RpcMetrics::register(&mut registry, Side::Server);
    let tcp = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("a free port");
    let addr = tcp.local_addr().expect("bound");
    let listener = Listener::new(tcp, limits.max_connections as usize, "grpc");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        serve_grpc(
            service,
            listener,
            &limits,
            None,
            metrics,
            CallSpans::server(),
            async {
                let _ = stopped.await;
            },
        )
        .await
    });
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid")
        .connect_lazy();
    DummyServer {
        addr,
        client: DummyServiceClient::new(channel),
        registry,
        entered,
        release,
        dropped,
        _stop: stop,
    }
}

fn roomy() -> GrpcLimits {
    GrpcLimits {
        concurrency_limit: 64,
        max_connection_age: Duration::from_secs(600),
        max_connection_age_grace: Duration::from_secs(60),
        ..GrpcLimits::default()
    }
}

/// Log lines written while the guard lives, on this thread (the tests run
/// on a current-thread runtime, so the server's tasks log here too).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        // tracing caches each callsite's interest for the whole process.
        // While one dispatcher is registered it asks only the registering
        // thread's default, so a sibling test with no subscriber that hits
        // a log callsite first caches `never` for it, and this capture
        // misses the event. A second dispatcher, interested in everything
        // and alive as long as the binary, makes the cache the union of all
        // registered dispatchers instead.
        static ANCHOR: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        ANCHOR.get_or_init(|| {
            let everything = service_kit::telemetry::subscriber(
                LogFormat::Json,
                "trace",
                false,
                std::io::sink,
                None,
            )
            .expect("a valid filter");
            tracing::Dispatch::new(everything)
        });
        let writer = self.clone();
        let subscriber = service_kit::telemetry::subscriber(
            LogFormat::Json,
            "debug",
            false,
            move || writer.clone(),
            None,
        )
        .expect("a valid filter");
        let guard = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        guard
    }

    fn events(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().expect("not poisoned").clone();
        String::from_utf8(bytes)
            .expect("UTF-8 logs")
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
            .collect()
    }

    fn rpc_events(&self) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["message"] == "gRPC call finished")
            .collect()
    }
}

#[tokio::test]
async fn every_call_is_logged_once_with_method_code_latency_and_peer() {
    let logs = Captured::default();
    let _guard = logs.install();
    let server = spawn_dummy(roomy()).await;

    server.call("hello").await.expect("OK");
    server.call("error").await.expect_err("NOT_FOUND");

    let events = logs.rpc_events();
    assert_eq!(events.len(), 2, "{events:#?}");
    let (ok, not_found) = (&events[0], &events[1]);
    assert_eq!(ok["level"], "DEBUG");
    assert_eq!(ok["method"], METHOD);
    assert_eq!(ok["code"], "OK");
    assert_eq!(ok["rpc.side"], "server");
    assert!(
        ok["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{ok}"
    );
    assert!(
        ok["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{ok}"
    );
    assert_eq!(not_found["code"], "NOT_FOUND");
    assert_eq!(not_found["level"], "INFO");
}

#[tokio::test]
async fn a_flood_of_client_errors_writes_a_few_lines_a_second_and_the_rest_at_debug() {
    const CALLS: usize = 500;
    let logs = Captured::default();
    let _guard = logs.install();
    let server = spawn_dummy(roomy()).await;

    let started = std::time::Instant::now();
    for _ in 0..CALLS {
        server.call("error").await.expect_err("NOT_FOUND");
    }
    // The one-second windows the calls fell in.
    let windows = started.elapsed().as_secs() + 2;
    // One more in a later window: its line is let through and counts the
    // lines moved since the last one.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    server.call("error").await.expect_err("NOT_FOUND");

    let events = logs.rpc_events();
    assert_eq!(
        events.len(),
        CALLS + 1,
        "every call is logged, at INFO or DEBUG"
    );
    let last = events.last().expect("the last call's line");
    assert_eq!(
        last["level"], "INFO",
        "a later window lets a line through: {last}"
    );
    let info = events[..CALLS]
        .iter()
        .filter(|e| e["level"] == "INFO")
        .count();
    let per_second = service_kit::log_limit::LogLimiter::LINES_PER_SECOND as usize;
    assert!(
        (1..=per_second * windows as usize).contains(&info),
        "{info} lines at INFO in {windows} windows"
    );
    assert_eq!(events[0]["level"], "INFO", "the first is let through");
    // Each line let through counts exactly the lines moved to DEBUG since
    // the one before it.
    let mut moved = 0;
    for event in &events {
        assert_eq!(event["code"], "NOT_FOUND");
        match event["level"].as_str() {
            Some("DEBUG") => moved += 1,
            Some("INFO") => {
                let held_back = event["held_back"].as_u64().unwrap_or(0);
                assert_eq!(held_back, moved, "{event}");
                moved = 0;
            }
            other => panic!("a line at {other:?}: {event}"),
        }
    }
    assert!(
        CALLS - info >= CALLS / 2,
        "most of the flood was moved to DEBUG: {info} at INFO"
    );
    assert!(
        server
            .metrics()
            .contains(&counted("NOT_FOUND", CALLS as u64 + 1))
    );
}

#[tokio::test]
async fn metrics_count_calls_by_method_and_code() {
    let server = spawn_dummy(roomy()).await;

    server.call("one").await.expect("OK");
    server.call("two").await.expect("OK");
    server.call("error").await.expect_err("NOT_FOUND");

    let metrics = server.metrics();
    assert!(metrics.contains(&counted("OK", 2)), "{metrics}");
    assert!(metrics.contains(&counted("NOT_FOUND", 1)), "{metrics}");
    assert!(metrics.contains("rpc_server_active_calls 0"), "{metrics}");
}

#[tokio::test]
async fn a_panicking_handler_answers_internal_and_the_next_call_succeeds() {
    let logs = Captured::default();
    let _guard = logs.install();
    let server = spawn_dummy(roomy()).await;

    let status = server.call("panic").await.expect_err("INTERNAL");
    let next = server.call("still alive").await;

    assert_eq!(status.code(), Code::Internal);
    assert_eq!(
        status.message(),
        "internal error",
        "the panic text must not leak"
    );
    assert_eq!(next.expect("the server keeps serving"), "still alive");
    let events = logs.events();
    assert!(
        events
            .iter()
            .any(|e| e["level"] == "ERROR" && e["panic"] == "dummy handler panicked on purpose"),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["code"] == "INTERNAL" && e["method"] == METHOD),
        "{events:#?}"
    );
    assert!(server.metrics().contains(&counted("INTERNAL", 1)));
}

#[tokio::test]
async fn calls_over_the_concurrency_limit_get_resource_exhausted_at_once() {
    let mut server = spawn_dummy(GrpcLimits {
        concurrency_limit: 1,
        ..roomy()
    })
    .await;
    let blocked = {
        let client = server.client.clone();
        tokio::spawn(async move {
            let mut client = client;
            client
                .execute(ExecuteRequest {
                    input: "block".to_owned(),
                })
                .await
        })
    };
    server
        .entered
        .recv()
        .await
        .expect("the first call reaches its handler");

    let refused = server.call("second").await.expect_err("over the limit");
    server.release.notify_one();
    let first = blocked.await.expect("no panic");

    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("too many calls in flight"),
        "{}",
        refused.message()
    );
    assert_eq!(
        first.expect("the first call completes").into_inner().output,
        "block"
    );
    assert!(server.metrics().contains(&counted("RESOURCE_EXHAUSTED", 1)));
}

#[tokio::test]
async fn oversized_requests_get_resource_exhausted() {
    let server = spawn_dummy(roomy()).await;

    let status = server
        .call(&"x".repeat(MAX_MESSAGE_BYTES * 4))
        .await
        .expect_err("too large");

    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_client_deadline_stops_the_handler() {
    let mut server = spawn_dummy(roomy()).await;
    let mut request = Request::new(ExecuteRequest {
        input: "block".to_owned(),
    });
    request.set_timeout(Duration::from_millis(50));

    let status = server
        .client
        .clone()
        .execute(request)
        .await
        .expect_err("past its deadline");
    server
        .dropped
        .recv()
        .await
        .expect("the handler's future is dropped");

    // tonic's client gives up at the same instant: which answer it sees
    // first, and whether the server saw the call end or its client leave,
    // is a race.
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    assert_eq!(server.entered.try_recv(), Ok(()));
    let metrics = server.metrics();
    assert!(
        metrics.contains(&counted("DEADLINE_EXCEEDED", 1))
            || metrics.contains(&counted("CANCELLED", 1)),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_call_without_a_deadline_ends_at_the_servers_maximum_duration() {
    let mut server = spawn_dummy(GrpcLimits {
        max_call_duration: Duration::from_millis(200),
        ..roomy()
    })
    .await;

    let status = server.call("block").await.expect_err("past the maximum");
    server
        .dropped
        .recv()
        .await
        .expect("the handler's future is dropped");

    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("maximum call duration"),
        "{}",
        status.message()
    );
    assert!(server.metrics().contains(&counted("DEADLINE_EXCEEDED", 1)));
}

#[tokio::test]
async fn a_call_whose_message_came_in_time_runs_until_the_maximum_duration() {
    let mut server = spawn_dummy(GrpcLimits {
        request_timeout: Duration::from_millis(100),
        max_call_duration: Duration::from_millis(400),
        ..roomy()
    })
    .await;

    let status = server.call("block").await.expect_err("past the maximum");
    server
        .dropped
        .recv()
        .await
        .expect("the handler's future is dropped");

    // The request timeout passed first, with the message long received: the
    // call went on, to end at its maximum duration.
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("maximum call duration"),
        "{}",
        status.message()
    );
}

/// The server ends a call at its client's deadline (`grpc-timeout`) when
/// that is the shortest limit, whether or not the client gives up itself
/// (this one, raw HTTP/2, does not).
#[tokio::test]
async fn a_clients_shorter_deadline_ends_the_call_on_the_server() {
    let mut server = spawn_dummy(GrpcLimits {
        request_timeout: Duration::from_secs(600),
        max_call_duration: Duration::from_secs(600),
        ..roomy()
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connects");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::post(format!(
        "http://{}/testing.dummy.v1.DummyService/Execute",
        server.addr
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("grpc-timeout", "200m")
    .body(())
    .expect("a valid request");
    let (response, mut body) = client.send_request(request, false).expect("a stream");
    // ExecuteRequest { input: "block" }, in one gRPC message.
    let message = b"\0\0\0\0\x07\x0a\x05block";
    body.send_data(bytes::Bytes::from_static(message), true)
        .expect("sent");

    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("the server ends the call, not this test's timeout")
        .expect("a response");
    server
        .dropped
        .recv()
        .await
        .expect("the handler's future is dropped");

    // DEADLINE_EXCEEDED is 4.
    let header = |name| response.headers().get(name).map(|v| v.as_bytes());
    assert_eq!(header("grpc-status"), Some(&b"4"[..]), "{response:?}");
    let message = String::from_utf8_lossy(header("grpc-message").unwrap_or_default());
    assert!(message.contains("client's%20deadline"), "{message}");
    assert!(server.metrics().contains(&counted("DEADLINE_EXCEEDED", 1)));
}

fn short_lived() -> GrpcLimits {
    GrpcLimits {
        max_connection_age: Duration::from_millis(300),
        max_connection_age_grace: Duration::from_millis(300),
        ..roomy()
    }
}

#[tokio::test]
async fn past_its_maximum_age_a_connection_is_replaced_and_calls_go_on() {
    let server = spawn_dummy(short_lived()).await;
    let before = server.call("peer").await.expect("OK");

    // Past the maximum age the server has sent GOAWAY on that connection.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after = server.call("peer").await.expect("the client reconnects");

    assert_ne!(
        before, after,
        "the second call came over the same connection"
    );
}

#[tokio::test]
async fn a_call_still_running_after_age_and_grace_is_cut_off() {
    let mut server = spawn_dummy(short_lived()).await;

    let status = server
        .call("block")
        .await
        .expect_err("the connection is closed under it");
    server
        .dropped
        .recv()
        .await
        .expect("the handler's future is dropped");

    assert_ne!(status.code(), Code::Ok);
    assert_eq!(server.entered.try_recv(), Ok(()));
}
