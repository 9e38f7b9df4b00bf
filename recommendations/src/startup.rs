//! Building and running the server: the catalog, the listeners, the services,
//! the layer stack, and the shutdown sequence.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use prometheus_client::{metrics::gauge::Gauge, registry::Registry};
use protobufs::{
    legacy::recommendations_server::{RecommendationsServer, SERVICE_NAME as LEGACY_SERVICE},
    v1::recommendations_service_server::{
        RecommendationsServiceServer, SERVICE_NAME as V1_SERVICE,
    },
};
use service_kit::{
    lifecycle::Lifecycle,
    metrics::{RpcMetrics, Side},
    reload::{self, Hangups, ReloadMetrics, Source},
    server::{Listener, ServerTls, serve_grpc},
    tls::{self, CertificateMetrics, HandshakeRefusals, LiveTls, ServerFiles},
    trace::CallSpans,
};
use tonic_health::{
    ServingStatus,
    pb::health_server::{Health, HealthServer},
};
use tonic_reflection::server::{v1, v1alpha};

use crate::{
    api::Recommender,
    catalog::{Catalog, LiveCatalog},
    services::{Servers, Services},
    settings::Settings,
};

/// The names reported by gRPC health: the whole server ("") and each
/// bookstore service.
pub const HEALTH_SERVICES: [&str; 3] = ["", V1_SERVICE, LEGACY_SERVICE];

/// A recommendations server with its catalog loaded and both listeners
/// bound, so that port 0 works and [`Application::local_addr`] tells where.
#[derive(Debug)]
pub struct Application {
    settings: Settings,
    catalog: LiveCatalog,
    /// The served catalog's size, updated by reloads.
    books: Gauge<i64>,
    reloads: ReloadMetrics,
    hangups: Hangups,
    listener: Listener,
    local_addr: SocketAddr,
    lifecycle: Lifecycle,
    metrics: RpcMetrics,
    spans: CallSpans,
    /// TLS, kept current, and its refused handshakes.
    tls: Option<(LiveTls<ServerFiles>, HandshakeRefusals)>,
}

impl Application {
    /// Loads the catalog and binds the gRPC and admin listeners. Fails with
    /// an error naming the file or address at fault.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // Parsing a large catalog takes a while (about a second per million
        // books): off the async threads. Its many small allocations then also
        // stay out of the heap arena the request path allocates from.
        let source = settings.catalog.clone();
        let max_bytes = settings.catalog_max_bytes;
        let catalog = tokio::task::spawn_blocking(move || match source {
            Some(path) => Catalog::from_path(&path, max_bytes),
            None => Catalog::builtin(),
        })
        .await
        .context("the catalog loader failed")?
        .context("cannot load the catalog")?;
        tracing::info!(books = catalog.len(), source = ?settings.catalog, "catalog loaded");

        let max_connections = settings.limits.max_connections as usize;
        let listener = Listener::bind(settings.listen, max_connections, "grpc", "--listen").await?;
        let local_addr = listener
            .local_addr()
            .context("reading the gRPC listener's address")?;

        let mut registry = Registry::default();
        // Calls to any other method are `_OTHER` in metrics and spans.
        let methods = served_methods()?;
        let metrics =
            RpcMetrics::register(&mut registry, Side::Server).only_methods(methods.iter().cloned());
        let spans = CallSpans::server().only_methods(methods);
        let books = Gauge::<i64>::default();
        set_books(&books, &catalog);
        registry.register(
            "recommendations_catalog_books",
            "Books in the served catalog",
            books.clone(),
        );
        let reloads = ReloadMetrics::register(&mut registry, "recommendations");
        reloads.succeeded(CATALOG);
        let tls = match settings.server_tls_files() {
            Some(files) => {
                let certificates = CertificateMetrics::register(&mut registry, "recommendations");
                let tls = LiveTls::load(files, certificates).context("cannot set up TLS")?;
                reloads.succeeded(tls::SOURCE);
                let refusals = HandshakeRefusals::register(&mut registry, "recommendations");
                Some((tls, refusals))
            }
            None => None,
        };
        let lifecycle = Lifecycle::bind("grpc", &settings.service, registry).await?;

        Ok(Self {
            settings,
            catalog: LiveCatalog::new(Arc::new(catalog)),
            books,
            reloads,
            // From here on SIGHUP reloads rather than kills.
            hangups: reload::hangups(),
            listener,
            local_addr,
            lifecycle,
            metrics,
            spans,
            tls,
        })
    }

    /// The address the gRPC listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the admin listener is bound to.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.lifecycle.admin_addr()
    }

    /// Serves until `shutdown` resolves, then shuts down in order:
    /// 1. every health status turns NOT_SERVING and /readyz 503, so that
    ///    balancers stop routing here;
    /// 2. the listener closes and connections get GOAWAY; calls in flight
    ///    finish, for at most the drain timeout;
    /// 3. the admin listener stops last, so /metrics covers the drain.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> anyhow::Result<()>
    where
        F: Future<Output = ()>,
    {
        let (health, health_service) = tonic_health::server::health_reporter();
        for name in HEALTH_SERVICES {
            health
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        // Kept until the service stops: the reloads of the catalog and TLS.
        let interval = self.settings.service.reload_interval;
        let _reloading = self.settings.catalog.clone().map(|path| {
            let (live, books, max_bytes) = (
                self.catalog.clone(),
                self.books.clone(),
                self.settings.catalog_max_bytes,
            );
            let source = Source {
                name: CATALOG,
                paths: vec![path.clone()],
                load: Arc::new(move || Ok(Catalog::from_path(&path, max_bytes)?)),
            };
            reload::watch(
                source,
                interval,
                self.hangups.clone(),
                self.reloads.clone(),
                move |catalog| {
                    set_books(&books, &catalog);
                    tracing::info!(books = catalog.len(), "catalog reloaded");
                    live.replace(Arc::new(catalog));
                },
            )
        });
        let _reloading_tls = self
            .tls
            .as_ref()
            .map(|(tls, _)| tls.watch(interval, self.hangups.clone(), self.reloads.clone()));
        let tls = self.tls.map(|(tls, refusals)| ServerTls {
            config: tls.config(),
            refusals,
        });
        let services = services(
            Recommender::live(self.catalog),
            health_service,
            self.settings.limits.max_message_bytes,
        )?;
        let tls_state = if tls.is_some() { "on" } else { "off" };
        tracing::info!(grpc = %self.local_addr, admin = %self.lifecycle.admin_addr()?, tls = tls_state, "serving");

        let (listener, limits, metrics, spans) = (
            self.listener,
            self.settings.limits,
            self.metrics,
            self.spans,
        );
        let serve = |stopped| async move {
            serve_grpc(services, listener, &limits, tls, metrics, spans, stopped).await
        };
        let going_away = async move {
            for name in HEALTH_SERVICES {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            tracing::info!("health is NOT_SERVING");
        };
        self.lifecycle.run(serve, going_away, shutdown).await
    }
}

/// The catalog's name as a reload source.
const CATALOG: &str = "catalog";

/// `books` as the size of `catalog`.
fn set_books(books: &Gauge<i64>, catalog: &Catalog) {
    books.set(i64::try_from(catalog.len()).unwrap_or(i64::MAX));
}

/// Every method the server serves, `package.Service/Method`, from the
/// descriptors that reflection serves: the methods with metric labels and
/// span names of their own (see `RpcMetrics::only_methods` and
/// `CallSpans::only_methods`).
pub fn served_methods() -> anyhow::Result<Vec<String>> {
    use prost::Message as _;
    let mut methods = Vec::new();
    for set in [
        protobufs::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ] {
        let set = prost_types::FileDescriptorSet::decode(set)
            .context("decoding a built-in file descriptor set")?;
        for file in set.file {
            let package = file.package().to_owned();
            for service in file.service {
                let service_name = match package.as_str() {
                    "" => service.name().to_owned(),
                    package => format!("{package}.{}", service.name()),
                };
                methods.extend(
                    service
                        .method
                        .iter()
                        .map(|method| format!("{service_name}/{}", method.name())),
                );
            }
        }
    }
    Ok(methods)
}

/// Every service of the server, each with the same limit on request
/// messages.
fn services(
    service: Recommender,
    health: HealthServer<impl Health>,
    max_message_bytes: usize,
) -> anyhow::Result<Services<impl Health, impl v1::ServerReflection, impl v1alpha::ServerReflection>>
{
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(protobufs::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok(Services::new(Servers {
        v1: RecommendationsServiceServer::new(service.clone())
            .max_decoding_message_size(max_message_bytes),
        legacy: RecommendationsServer::new(service).max_decoding_message_size(max_message_bytes),
        health: health.max_decoding_message_size(max_message_bytes),
        reflection_v1: reflection()
            .build_v1()
            .context("building gRPC reflection v1")?
            .max_decoding_message_size(max_message_bytes),
        reflection_v1alpha: reflection()
            .build_v1alpha()
            .context("building gRPC reflection v1alpha")?
            .max_decoding_message_size(max_message_bytes),
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_served_methods_are_both_contracts_health_and_reflection() {
        let mut methods = super::served_methods().expect("the built-in descriptors decode");
        methods.sort();

        assert_eq!(
            methods,
            [
                "Recommendations/Recommend",
                "bookstore.recommendations.v1.RecommendationsService/ListBooks",
                "bookstore.recommendations.v1.RecommendationsService/Recommend",
                "grpc.health.v1.Health/Check",
                "grpc.health.v1.Health/Watch",
                "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            ]
        );
    }
}
