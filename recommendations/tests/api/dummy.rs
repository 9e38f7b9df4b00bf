//! The tutorial's dummy service behind the server's whole layer stack, on a
//! real socket, and the log capture its tests read.

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
    Request, Response, Status,
    transport::{Channel, Endpoint},
};

pub(crate) const METHOD: &str = "/testing.dummy.v1.DummyService/Execute";

/// The line of the server's metrics that counts `count` calls to
/// [`METHOD`] that ended with `code`.
pub(crate) fn counted(code: &str, count: u64) -> String {
    format!(
        "rpc_server_call_duration_seconds_count{{rpc_system_name=\"grpc\",rpc_method=\"{}\",\
         rpc_response_status_code=\"{code}\"}} {count}\n",
        METHOD.trim_start_matches('/')
    )
}
pub(crate) const MAX_MESSAGE_BYTES: usize = 1024;

/// Echoes, or on request: "panic" panics, "error" fails with NOT_FOUND,
/// "block" waits for the test to release it, "peer" returns the client's
/// address as the server sees it.
pub(crate) struct Dummy {
    pub(crate) entered: mpsc::UnboundedSender<()>,
    pub(crate) release: Arc<Notify>,
    pub(crate) dropped: mpsc::UnboundedSender<()>,
}

/// Tells the test when a blocked handler's future is dropped.
pub(crate) struct DropSignal(mpsc::UnboundedSender<()>);

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

pub(crate) struct DummyServer {
    pub(crate) addr: SocketAddr,
    pub(crate) client: DummyServiceClient<Channel>,
    pub(crate) registry: Registry,
    pub(crate) entered: mpsc::UnboundedReceiver<()>,
    pub(crate) release: Arc<Notify>,
    pub(crate) dropped: mpsc::UnboundedReceiver<()>,
    pub(crate) _stop: oneshot::Sender<()>,
}

impl DummyServer {
    pub(crate) async fn call(&self, input: &str) -> Result<String, Status> {
        let mut client = self.client.clone();
        let request = ExecuteRequest {
            input: input.to_owned(),
        };
        client.execute(request).await.map(|r| r.into_inner().output)
    }

    pub(crate) fn metrics(&self) -> String {
        encode(&self.registry).expect("encoding into a String cannot fail")
    }
}

pub(crate) async fn spawn_dummy(limits: GrpcLimits) -> DummyServer {
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

pub(crate) fn roomy() -> GrpcLimits {
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
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

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
    pub(crate) fn install(&self) -> tracing::subscriber::DefaultGuard {
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

    pub(crate) fn events(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().expect("not poisoned").clone();
        String::from_utf8(bytes)
            .expect("UTF-8 logs")
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
            .collect()
    }

    pub(crate) fn rpc_events(&self) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["message"] == "gRPC call finished")
            .collect()
    }
}
