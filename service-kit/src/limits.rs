//! Every limit that protects a listener, declared once: the gRPC listener's
//! ([`GrpcLimits`]), the web listener's ([`HttpLimits`]) and the admin
//! listener's ([`AdminLimits`]). Each service flattens the ones it serves
//! into its settings; [`with_env_prefix`] gives their environment variables
//! the service's prefix (`RECOMMENDATIONS_MAX_CONNECTIONS`, ...).
//!
//! The defaults are sized for one replica with kubernetes.yaml's limits (one
//! CPU, 128 MiB): whatever clients do, the process stays under half of that
//! memory, and what is over a limit is refused at once, never queued.

use std::time::Duration;

use clap::{Args, Command};

/// The limits of a gRPC listener (connections, streams, calls, time).
#[derive(Args, Clone, Debug)]
pub struct GrpcLimits {
    /// Most connections open at once; more are closed as soon as they are
    /// accepted, so that clients retry elsewhere.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Most streams (calls) one connection may have open at once, announced
    /// as HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; more are refused with
    /// REFUSED_STREAM. Also one connection's largest share of
    /// --concurrency-limit.
    #[arg(long, env = "MAX_CONCURRENT_STREAMS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,

    /// Most calls in flight across all connections, each counted from its
    /// arrival until its whole response is sent; calls beyond it get
    /// RESOURCE_EXHAUSTED at once. Health checks have a pool of their own.
    #[arg(long, env = "CONCURRENCY_LIMIT", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency_limit: u32,

    /// Longest a call may take on the server, whatever deadline its client
    /// sent (or none); past it the call ends with DEADLINE_EXCEEDED.
    #[arg(long, env = "MAX_CALL_DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub max_call_duration: Duration,

    /// Longest a client may take to deliver its request message once the
    /// call has begun; past it the call ends with DEADLINE_EXCEEDED.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Largest request message accepted, in bytes, by every service (health
    /// and reflection included); larger ones get RESOURCE_EXHAUSTED.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// Longest a new connection may take to send its first bytes, or to
    /// finish the TLS handshake; it is closed past that.
    #[arg(long, env = "HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// How often an HTTP/2 PING checks that the client is still there.
    #[arg(long, env = "KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub keepalive_interval: Duration,

    /// How long the client has to answer that PING before its connection
    /// is closed.
    #[arg(long, env = "KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub keepalive_timeout: Duration,

    /// Age at which a connection is asked to close (HTTP/2 GOAWAY): its
    /// client reconnects, and behind a load balancer may land on another
    /// replica, so that even clients that do not balance spread out over
    /// time. Calls in flight finish.
    #[arg(long, env = "MAX_CONNECTION_AGE", default_value = "5m", value_parser = humantime::parse_duration)]
    pub max_connection_age: Duration,

    /// How long calls in flight may go on after the maximum connection age
    /// before the connection is closed anyway.
    #[arg(long, env = "MAX_CONNECTION_AGE_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub max_connection_age_grace: Duration,
}

impl GrpcLimits {
    /// Streams one connection may reset before the server accepted them
    /// (h2's guard against Rapid Reset, CVE-2023-44487) before it is closed
    /// with ENHANCE_YOUR_CALM. As many as the streams it may have open: a
    /// client that cancels every call it has in flight at once (as the
    /// marketplace does when its browsers leave) stays connected, and a
    /// flood of HEADERS + RST_STREAM is cut off after one window's worth.
    pub fn max_pending_accept_reset_streams(&self) -> usize {
        self.max_concurrent_streams as usize
    }

    /// Streams the server may reset for a client's error over one
    /// connection's life (h2's guard against MadeYouReset, CVE-2025-8671)
    /// before it is closed with ENHANCE_YOUR_CALM. A stream refused past
    /// --max-concurrent-streams counts, and so does its DATA frame if one
    /// follows: a client that floods streams past its share is cut off
    /// after 512 to 1,024 refusals, while one that steps over the limit
    /// now and then (before it has read the server's SETTINGS) is not.
    /// hyper's default; tonic's server turned it off.
    pub const MAX_LOCAL_ERROR_RESETS: usize = 1024;

    /// The largest header block (metadata) a request may carry: gRPC's own
    /// implementations allow 8–16 KiB.
    pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

    /// Calls to grpc.health.v1.Health that may be in flight at once. Health
    /// has this pool of its own, outside --concurrency-limit, so that probes
    /// answer while the data-plane calls are saturated or under attack.
    pub const HEALTH_CONCURRENCY_LIMIT: usize = 64;
}

/// The limits of a web (HTTP/1.1 and HTTP/2) listener.
#[derive(Args, Clone, Debug)]
pub struct HttpLimits {
    /// Most connections open at once on the web listener; more are closed
    /// as soon as they are accepted.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,

    /// Most requests handled at once; more get 503 with Retry-After at
    /// once.
    #[arg(long, env = "HTTP_MAX_REQUESTS_IN_FLIGHT", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_requests_in_flight: u32,

    /// Longest a new connection may take to send its first request
    /// (slowloris), and on HTTP/1 the next request's headers after a
    /// response; the connection is closed past that.
    #[arg(long, env = "HTTP_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http_header_read_timeout: Duration,

    /// How long an HTTP/2 connection may stay with no request in flight
    /// before it is closed (HTTP/1 waits --http-header-read-timeout at most).
    #[arg(long, env = "HTTP_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub http_idle_timeout: Duration,

    /// Longest a request may take; past it the answer is 503.
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http_request_timeout: Duration,
}

/// The limits of the admin listener (/metrics, /healthz, /readyz): what
/// Prometheus and the kubelet need, and little more. Its timeouts are fixed
/// ([`AdminLimits::HEADER_READ_TIMEOUT`], ...): its clients are machines
/// that send a whole request at once.
#[derive(Args, Clone, Debug)]
pub struct AdminLimits {
    /// Most connections open at once on the admin listener (and requests in
    /// flight on it); more are closed at once (or answered 503).
    #[arg(long, env = "ADMIN_MAX_CONNECTIONS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub admin_max_connections: u32,
}

impl AdminLimits {
    /// Longest a client may take to send a request's headers.
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
    /// How long a keep-alive connection may wait for its next request.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
    /// Longest a request (a /metrics scrape) may take.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

    /// The admin listener's limits as a web listener's.
    pub fn as_http(&self) -> HttpLimits {
        HttpLimits {
            http_max_connections: self.admin_max_connections,
            http_max_requests_in_flight: self.admin_max_connections,
            http_header_read_timeout: Self::HEADER_READ_TIMEOUT,
            http_idle_timeout: Self::IDLE_TIMEOUT,
            http_request_timeout: Self::REQUEST_TIMEOUT,
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        defaults::<HttpLimitsOnly>().limits
    }
}

impl Default for GrpcLimits {
    fn default() -> Self {
        defaults::<GrpcLimitsOnly>().limits
    }
}

#[derive(clap::Parser)]
struct HttpLimitsOnly {
    #[command(flatten)]
    limits: HttpLimits,
}

#[derive(clap::Parser)]
struct GrpcLimitsOnly {
    #[command(flatten)]
    limits: GrpcLimits,
}

/// The defaults declared above, read from nothing (not even the
/// environment), so that they are written once.
fn defaults<P: clap::Parser>() -> P {
    let command = P::command().mut_args(|arg| arg.env(None::<&str>));
    let matches = command.get_matches_from(["defaults"]);
    // Infallible: every argument above has a default that parses.
    P::from_arg_matches(&matches).unwrap_or_else(|err| unreachable!("{err}"))
}

/// Gives the environment variable of every argument that `A` declares the
/// prefix `{prefix}_`, so that a setting shared by both services still has
/// a variable of each service's own (`MARKETPLACE_HTTP_MAX_CONNECTIONS`).
pub fn with_env_prefix<A: Args>(command: Command, prefix: &str) -> Command {
    let shared = A::augment_args(Command::new("shared"));
    let ids: Vec<_> = shared
        .get_arguments()
        .filter(|arg| arg.get_env().is_some())
        .map(|arg| arg.get_id().clone())
        .collect();
    ids.into_iter().fold(command, |command, id| {
        command.mut_arg(id, |arg| match arg.get_env() {
            // OpenTelemetry's variables are the same for every program.
            Some(env) if env.to_string_lossy().starts_with("OTEL_") => arg,
            Some(env) => {
                let name = format!("{prefix}_{}", env.to_string_lossy());
                arg.env(name)
            }
            None => arg,
        })
    })
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Service {
        #[command(flatten)]
        grpc: GrpcLimits,
        #[command(flatten)]
        admin: AdminLimits,
    }

    #[test]
    fn shared_settings_read_the_services_own_variables() {
        let command = with_env_prefix::<AdminLimits>(
            with_env_prefix::<GrpcLimits>(Service::command(), "BOOKS"),
            "BOOKS",
        );
        let envs: Vec<String> = command
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
            .collect();

        assert!(
            envs.contains(&"BOOKS_MAX_CONNECTIONS".to_owned()),
            "{envs:?}"
        );
        assert!(
            envs.contains(&"BOOKS_ADMIN_MAX_CONNECTIONS".to_owned()),
            "{envs:?}"
        );
        assert!(envs.iter().all(|env| env.starts_with("BOOKS_")), "{envs:?}");
    }

    #[test]
    fn defaults_are_the_declared_ones() {
        let parsed = Service::from_arg_matches(&Service::command().get_matches_from(["service"]))
            .expect("defaults parse");
        let grpc = GrpcLimits::default();

        assert_eq!(parsed.grpc.max_connections, grpc.max_connections);
        assert_eq!(grpc.max_concurrent_streams, 100);
        assert_eq!(grpc.max_pending_accept_reset_streams(), 100);
        assert_eq!(grpc.max_message_bytes, 65_536);
        assert_eq!(
            HttpLimits::default().http_header_read_timeout,
            Duration::from_secs(10)
        );
        assert_eq!(parsed.admin.as_http().http_max_connections, 64);
    }
}
