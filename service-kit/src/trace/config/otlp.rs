//! The OTLP trace exporter's settings, by the specification's precedence:
//! each `OTEL_EXPORTER_OTLP_TRACES_*` variable over its generic
//! `OTEL_EXPORTER_OTLP_*` one; the traces endpoint used as it is, the
//! generic one with `/v1/traces` appended over HTTP; the default endpoint
//! and port by protocol.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};

use super::read::Reader;

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// Compression of export requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
}

/// TLS toward the collector: files read when the exporter is built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtlpTls {
    /// PEM CA certificates the collector's is verified against (else the
    /// system's).
    pub certificate: Option<PathBuf>,
    /// PEM client certificate chain and its key (mutual TLS).
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Where and how spans are exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpExport {
    pub protocol: Protocol,
    /// The full URL: for HTTP, of the traces path.
    pub endpoint: http::Uri,
    pub headers: Vec<(String, String)>,
    pub compression: Option<Compression>,
    pub timeout: Duration,
    /// Used when the endpoint is `https`.
    pub tls: OtlpTls,
}

const fn both(traces: &'static str, generic: &'static str) -> [&'static str; 2] {
    [traces, generic]
}

impl OtlpExport {
    pub(super) fn resolve(read: &mut Reader<'_>) -> anyhow::Result<Self> {
        let protocol = read
            .choice(
                &both(
                    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                    "OTEL_EXPORTER_OTLP_PROTOCOL",
                ),
                &[
                    ("grpc", Protocol::Grpc),
                    ("http/protobuf", Protocol::HttpProtobuf),
                ],
                &["http/json"],
            )?
            .unwrap_or(Protocol::HttpProtobuf);
        let insecure = read
            .boolean(&both(
                "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
                "OTEL_EXPORTER_OTLP_INSECURE",
            ))
            .unwrap_or(false);
        let endpoint = endpoint(read, protocol, insecure)?;
        let headers = read.pairs(
            &both(
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            false,
        );
        let compression = read
            .choice(
                &both(
                    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                    "OTEL_EXPORTER_OTLP_COMPRESSION",
                ),
                &[("gzip", Some(Compression::Gzip)), ("none", None)],
                &["zstd"],
            )?
            .flatten();
        let timeout = read
            .millis(&both(
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ))
            .unwrap_or(Duration::from_millis(10_000));
        let file = |read: &Reader<'_>, names: [&str; 2]| {
            read.text(&names).map(|(_, path)| PathBuf::from(path))
        };
        let certificate = file(
            read,
            both(
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
            ),
        );
        let client_certificate = file(
            read,
            both(
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            ),
        );
        let client_key = file(
            read,
            both(
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            ),
        );
        let client = match (client_certificate, client_key) {
            (Some(certificate), Some(key)) => Some((certificate, key)),
            (None, None) => None,
            _ => bail!(
                "mutual TLS with the collector needs both OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_KEY"
            ),
        };
        Ok(Self {
            protocol,
            endpoint,
            headers,
            compression,
            timeout,
            tls: OtlpTls {
                certificate,
                client,
            },
        })
    }
}

/// The URL spans go to.
fn endpoint(
    read: &mut Reader<'_>,
    protocol: Protocol,
    insecure: bool,
) -> anyhow::Result<http::Uri> {
    let (name, text, append) = match (
        read.text(&["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]),
        read.text(&["OTEL_EXPORTER_OTLP_ENDPOINT"]),
    ) {
        (Some((name, text)), _) => (name, text.to_owned(), false),
        (None, Some((name, text))) => (name, text.to_owned(), protocol == Protocol::HttpProtobuf),
        (None, None) => match protocol {
            Protocol::Grpc => ("default", "http://localhost:4317".to_owned(), false),
            Protocol::HttpProtobuf => ("default", "http://localhost:4318".to_owned(), true),
        },
    };
    // gRPC to `host:port`: TLS unless OTEL_EXPORTER_OTLP_INSECURE.
    let text = if protocol == Protocol::Grpc && !text.contains("://") {
        let scheme = if insecure { "http" } else { "https" };
        format!("{scheme}://{text}")
    } else {
        text
    };
    let text = if append {
        format!("{}/v1/traces", text.trim_end_matches('/'))
    } else {
        text
    };
    let uri: http::Uri = text
        .parse()
        .with_context(|| format!("{name}={text} is not a URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => bail!("{name}={text} is not an http:// or https:// URL with a host"),
    }
}
