//! Building and running the web app: the channel, the routes, the listeners
//! and the shutdown sequence.

use std::{future::Future, net::SocketAddr};

use anyhow::Context;
use axum::Router;
use prometheus_client::{metrics::family::Family, registry::Registry};
use service_kit::{
    client::{ClientTls, Discovery},
    lifecycle::Lifecycle,
    metrics::{HttpMetrics, RpcMetrics, Side},
    reload::{ReloadMetrics, Watching},
    server::Listener,
    tls::{self, CertificateMetrics, LiveTls},
};

use crate::{
    client::RecommendationsClient,
    routes::{self, AppState},
    settings::Settings,
};

/// The marketplace with its channel created and both listeners bound, so
/// that port 0 works and [`Application::local_addr`] tells where.
#[derive(Debug)]
pub struct Application {
    settings: Settings,
    listener: Listener,
    local_addr: SocketAddr,
    router: Router,
    /// Also counts the requests the listener's bounds refuse.
    http_metrics: HttpMetrics,
    lifecycle: Lifecycle,
    /// Stops finding replicas when the application ends.
    _discovery: Discovery,
    /// Stops reloading TLS when the application ends.
    _reloading_tls: Option<Watching>,
}

impl Application {
    /// Creates the one channel to recommendations (lazily: it connects on
    /// first use) and binds the web and admin listeners.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let mut registry = Registry::default();
        let rpc_metrics = RpcMetrics::register(&mut registry, Side::Client);
        let http_metrics = HttpMetrics::register(&mut registry);
        let degraded = Family::default();
        registry.register(
            "marketplace_degraded_pages",
            "Pages rendered without recommendations because the call failed",
            degraded.clone(),
        );

        let replica_calls = Family::default();
        registry.register(
            "marketplace_replica_calls",
            "Calls to recommendations by replica (server_address, server_port) and status code",
            replica_calls.clone(),
        );
        // TLS toward recommendations, kept current from its files.
        let reloads = ReloadMetrics::register(&mut registry, "marketplace");
        let tls = match settings
            .recommendations_tls()
            .context("cannot set up TLS toward recommendations")?
        {
            Some((files, server_name)) => {
                let certificates = CertificateMetrics::register(&mut registry, "marketplace");
                let tls = LiveTls::load(files, certificates)
                    .context("cannot set up TLS toward recommendations")?;
                reloads.succeeded(tls::SOURCE);
                Some((tls, server_name))
            }
            None => None,
        };
        let channel_tls = tls.as_ref().map(|(tls, server_name)| ClientTls {
            config: tls.config(),
            server_name: server_name.clone(),
        });
        let recommendations =
            RecommendationsClient::new(&settings, channel_tls, rpc_metrics, replica_calls);
        registry.register_collector(Box::new(recommendations.replica_states()));
        registry.register(
            "marketplace_calls_unsent",
            "Calls to recommendations failed at once, sent to no replica: none known yet, every \
             one out of rotation (ejected, or failing health checks), or those on probation busy",
            recommendations.unsent_calls(),
        );
        // From here on SIGHUP re-reads the hosts file and TLS rather than
        // kills.
        let hangups = service_kit::reload::hangups();
        let reloading_tls = tls
            .map(|(tls, _)| tls.watch(settings.service.reload_interval, hangups.clone(), reloads));
        let discovery = recommendations
            .discover(settings.resolve_interval, hangups)
            .await;
        let router = routes::router(
            AppState::new(recommendations, degraded),
            http_metrics.clone(),
        );

        let max_connections = settings.limits.http_max_connections as usize;
        let listener = Listener::bind(settings.listen, max_connections, "http", "--listen").await?;
        let local_addr = listener
            .local_addr()
            .context("reading the web listener's address")?;
        let lifecycle = Lifecycle::bind("http", &settings.service, registry).await?;
        Ok(Self {
            settings,
            listener,
            local_addr,
            router,
            http_metrics,
            lifecycle,
            _discovery: discovery,
            _reloading_tls: reloading_tls,
        })
    }

    /// The address the web listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the admin listener is bound to.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.lifecycle.admin_addr()
    }

    /// The router, for tests that call handlers in process.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves until `shutdown` resolves, then: /readyz turns 503, the
    /// listener closes, requests in flight finish (for at most the drain
    /// timeout), and the admin listener stops last.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> anyhow::Result<()>
    where
        F: Future<Output = ()>,
    {
        tracing::info!(
            http = %self.local_addr,
            admin = %self.lifecycle.admin_addr()?,
            recommendations = %self.settings.recommendations_uri(),
            "serving"
        );
        let (listener, router, limits) = (self.listener, self.router, self.settings.limits);
        let metrics = Some(self.http_metrics);
        let serve = |stopped| async move {
            service_kit::server::serve_http(listener, router, &limits, metrics, stopped).await;
            Ok::<(), std::convert::Infallible>(())
        };
        self.lifecycle.run(serve, async {}, shutdown).await
    }
}
