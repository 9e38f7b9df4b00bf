//! An OTLP/gRPC trace collector that counts the spans it is sent and keeps
//! none: the other end of the homepage scenario with span export on.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::Context as _;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use tonic::{Request, Response, Status};

/// The collector, serving until dropped.
#[derive(Debug)]
pub struct Collector {
    addr: SocketAddr,
    spans: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Debug)]
struct Sink(Arc<AtomicU64>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len() as u64)
            .sum::<u64>();
        self.0.fetch_add(spans, Ordering::Relaxed);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serves on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the collector")?;
        let addr = listener.local_addr().context("the collector's address")?;
        let spans = Arc::new(AtomicU64::new(0));
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Sink(spans.clone())))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
        let task = tokio::spawn(async move {
            if let Err(err) = server.await {
                eprintln!("bench: the OTLP collector stopped: {err}");
            }
        });
        Ok(Self { addr, spans, task })
    }

    /// The endpoint, as OTEL_EXPORTER_OTLP_ENDPOINT takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Spans received so far.
    pub fn spans(&self) -> u64 {
        self.spans.load(Ordering::Relaxed)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}
