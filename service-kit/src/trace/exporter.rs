//! The OTLP span exporter an [`OtlpExport`] describes, from the
//! opentelemetry-otlp crate: over gRPC (tonic) or HTTP/protobuf (a blocking
//! reqwest client, as the batch processor's own thread calls it), with
//! headers, gzip, a timeout, and TLS from our files (rustls with ring; the
//! system's CA certificates unless a CA file is named).

use std::collections::HashMap;

use anyhow::{Context, anyhow};
use opentelemetry_otlp::{
    SpanExporter, WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _,
};

use super::config::{Compression, OtlpExport, Protocol};

/// The exporter, each export request within `export`'s timeout and
/// `longest`; fails on an unreadable TLS file, naming it.
pub fn build(export: &OtlpExport, longest: std::time::Duration) -> anyhow::Result<SpanExporter> {
    let timeout = export.timeout.min(longest);
    let endpoint = export.endpoint.to_string();
    match export.protocol {
        Protocol::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (key, value) in &export.headers {
                let key =
                    tonic::metadata::MetadataKey::from_bytes(key.as_bytes()).map_err(|err| {
                        anyhow!("the OTLP header {key:?} is not a header name: {err}")
                    })?;
                let value = value.parse().map_err(|err| {
                    anyhow!("the OTLP header {key} has a value that is not a header value: {err}")
                })?;
                metadata.insert(key, value);
            }
            let mut builder = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(timeout)
                .with_metadata(metadata);
            if export.compression == Some(Compression::Gzip) {
                builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            if export.endpoint.scheme_str() == Some("https") {
                builder = builder.with_tls_config(tonic_tls(export)?);
            }
            builder.build().context("cannot set up OTLP/gRPC export")
        }
        Protocol::HttpProtobuf => {
            let client = http_client(export, timeout)?;
            let headers: HashMap<String, String> = export.headers.iter().cloned().collect();
            let mut builder = SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(endpoint)
                .with_timeout(timeout)
                .with_headers(headers)
                .with_http_client(client);
            if export.compression == Some(Compression::Gzip) {
                builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            builder.build().context("cannot set up OTLP/HTTP export")
        }
    }
}

fn read(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// TLS toward a gRPC collector.
fn tonic_tls(export: &OtlpExport) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut tls = ClientTlsConfig::new();
    tls = match &export.tls.certificate {
        Some(ca) => {
            tls.ca_certificate(Certificate::from_pem(read(ca, "OTLP CA certificate file")?))
        }
        None => tls.with_native_roots(),
    };
    if let Some((cert, key)) = &export.tls.client {
        tls = tls.identity(Identity::from_pem(
            read(cert, "OTLP client certificate file")?,
            read(key, "OTLP client key file")?,
        ));
    }
    Ok(tls)
}

/// The blocking HTTP client, made on a thread of its own (a blocking
/// reqwest client cannot be made or dropped on the runtime's threads). It
/// always gets our rustls configuration (used for `https` only): reqwest
/// has no crypto provider of its own here.
fn http_client(
    export: &OtlpExport,
    timeout: std::time::Duration,
) -> anyhow::Result<reqwest::blocking::Client> {
    let client = export
        .tls
        .client
        .as_ref()
        .map(|(cert, key)| (cert.as_path(), key.as_path()));
    let tls = crate::tls::https_config("OTLP", export.tls.certificate.as_deref(), client)?;
    std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(timeout)
            .tls_backend_preconfigured(tls)
            .build()
    })
    .join()
    .map_err(|_| anyhow!("making the OTLP/HTTP client panicked"))?
    .context("cannot make the OTLP/HTTP client")
}
