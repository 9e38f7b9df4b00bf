//! Every `OTEL_*` variable the services read: the OpenTelemetry
//! specification's SDK environment variables for traces, resources,
//! propagation, the batch span processor and the OTLP trace exporter. Each
//! is also a flag (`OTEL_BSP_SCHEDULE_DELAY` is `--otel-bsp-schedule-delay`)
//! taking the same text, read as the specification reads the variable
//! ([`super::OtelConfig`]). This one table makes the flags, their help and
//! the table in docs/operations.md.

/// One variable.
#[derive(Clone, Copy, Debug)]
pub struct Variable {
    /// Its name.
    pub name: &'static str,
    /// What it sets.
    pub help: &'static str,
    /// The specification's default.
    pub spec_default: &'static str,
    /// Ours, where it differs (else empty).
    pub ours: &'static str,
    /// The values supported.
    pub values: &'static str,
}

const fn var(
    name: &'static str,
    help: &'static str,
    spec_default: &'static str,
    ours: &'static str,
    values: &'static str,
) -> Variable {
    Variable {
        name,
        help,
        spec_default,
        ours,
        values,
    }
}

const MS: &str = "milliseconds, a whole number";
const COUNT: &str = "a whole number";
const BOOL: &str = "`true`, `false`";

/// The variables, in the order of the specification's page.
pub const VARIABLES: [Variable; 37] = [
    var(
        "OTEL_SDK_DISABLED",
        "Disables tracing: no span is recorded or exported (trace context still passes through, as OTEL_PROPAGATORS says)",
        "false",
        "",
        BOOL,
    ),
    var(
        "OTEL_SERVICE_NAME",
        "The service.name resource attribute, over one in OTEL_RESOURCE_ATTRIBUTES",
        "unknown_service",
        "the binary's name",
        "any text",
    ),
    var(
        "OTEL_RESOURCE_ATTRIBUTES",
        "Resource attributes of every span, key=value pairs separated by commas, values percent-encoded",
        "",
        "",
        "`key=value,...`",
    ),
    var(
        "OTEL_PROPAGATORS",
        "How trace context passes between services, comma-separated",
        "tracecontext,baggage",
        "",
        "`tracecontext`, `baggage`, `none`",
    ),
    var(
        "OTEL_TRACES_SAMPLER",
        "Which traces are recorded; parentbased_* follow the caller's choice",
        "parentbased_always_on",
        "",
        "`always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio`",
    ),
    var(
        "OTEL_TRACES_SAMPLER_ARG",
        "The share of traces the *traceidratio samplers record",
        "1.0",
        "",
        "a number from 0 to 1",
    ),
    var(
        "OTEL_TRACES_EXPORTER",
        "Where spans go",
        "otlp",
        "`otlp` when an OTLP endpoint is set, else `none`",
        "`otlp`, `none`",
    ),
    var(
        "OTEL_BSP_SCHEDULE_DELAY",
        "Time between two exports",
        "5000",
        "",
        MS,
    ),
    var(
        "OTEL_BSP_EXPORT_TIMEOUT",
        "Longest an export may take",
        "30000",
        "",
        MS,
    ),
    var(
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "Most finished spans waiting for export; past it spans are dropped (and counted), never waited for",
        "2048",
        "",
        COUNT,
    ),
    var(
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "Most spans in one export, at most OTEL_BSP_MAX_QUEUE_SIZE",
        "512",
        "",
        COUNT,
    ),
    var(
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "Longest attribute value, in characters",
        "no limit",
        "",
        COUNT,
    ),
    var(
        "OTEL_ATTRIBUTE_COUNT_LIMIT",
        "Most attributes of a span, event or link",
        "128",
        "",
        COUNT,
    ),
    var(
        "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "Longest span attribute value, over OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "no limit",
        "",
        COUNT,
    ),
    var(
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
        "Most attributes of a span, over OTEL_ATTRIBUTE_COUNT_LIMIT",
        "128",
        "",
        COUNT,
    ),
    var(
        "OTEL_SPAN_EVENT_COUNT_LIMIT",
        "Most events of a span",
        "128",
        "",
        COUNT,
    ),
    var(
        "OTEL_SPAN_LINK_COUNT_LIMIT",
        "Most links of a span",
        "128",
        "",
        COUNT,
    ),
    var(
        "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
        "Most attributes of an event, over OTEL_ATTRIBUTE_COUNT_LIMIT",
        "128",
        "",
        COUNT,
    ),
    var(
        "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
        "Most attributes of a link, over OTEL_ATTRIBUTE_COUNT_LIMIT",
        "128",
        "",
        COUNT,
    ),
    var(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "The collector's base URL; over HTTP, /v1/traces is appended",
        "http://localhost:4318 (http/protobuf), http://localhost:4317 (grpc)",
        "",
        "a URL",
    ),
    var(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "The URL spans are sent to, used as it is; over OTEL_EXPORTER_OTLP_ENDPOINT",
        "",
        "",
        "a URL",
    ),
    var(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "The OTLP transport",
        "http/protobuf",
        "",
        "`grpc`, `http/protobuf`",
    ),
    var(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "The OTLP transport of spans, over OTEL_EXPORTER_OTLP_PROTOCOL",
        "",
        "",
        "`grpc`, `http/protobuf`",
    ),
    var(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "Headers of every export request, key=value pairs separated by commas, values percent-encoded",
        "",
        "",
        "`key=value,...`",
    ),
    var(
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "Headers of span exports, over OTEL_EXPORTER_OTLP_HEADERS",
        "",
        "",
        "`key=value,...`",
    ),
    var(
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "Compression of export requests",
        "none",
        "",
        "`gzip`, `none`",
    ),
    var(
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "Compression of span exports, over OTEL_EXPORTER_OTLP_COMPRESSION",
        "",
        "",
        "`gzip`, `none`",
    ),
    var(
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "Longest an export request may take",
        "10000",
        "",
        MS,
    ),
    var(
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "Longest a span export request may take, over OTEL_EXPORTER_OTLP_TIMEOUT",
        "",
        "",
        MS,
    ),
    var(
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "PEM CA certificates the collector's certificate is verified against (https)",
        "the system's",
        "",
        "a file",
    ),
    var(
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "Over OTEL_EXPORTER_OTLP_CERTIFICATE, for span exports",
        "",
        "",
        "a file",
    ),
    var(
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        "PEM private key of the client certificate (mutual TLS with the collector)",
        "",
        "",
        "a file",
    ),
    var(
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
        "Over OTEL_EXPORTER_OTLP_CLIENT_KEY, for span exports",
        "",
        "",
        "a file",
    ),
    var(
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        "PEM client certificate chain presented to the collector (mutual TLS)",
        "",
        "",
        "a file",
    ),
    var(
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
        "Over OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, for span exports",
        "",
        "",
        "a file",
    ),
    var(
        "OTEL_EXPORTER_OTLP_INSECURE",
        "gRPC to an endpoint with no scheme: plaintext when true, else TLS",
        "false",
        "",
        BOOL,
    ),
    var(
        "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
        "Over OTEL_EXPORTER_OTLP_INSECURE, for span exports",
        "",
        "",
        BOOL,
    ),
];

/// The flag of `name`: `OTEL_BSP_SCHEDULE_DELAY` is `otel-bsp-schedule-delay`.
pub fn flag(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// The table of docs/operations.md: every variable, the specification's
/// default, ours, and the values supported.
pub fn markdown_table() -> String {
    let mut table = String::from(
        "| Variable | What it sets | Specification's default | Ours | Values supported |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    for v in VARIABLES {
        let ours = if v.ours.is_empty() {
            "the same"
        } else {
            v.ours
        };
        let spec = if v.spec_default.is_empty() {
            "none"
        } else {
            v.spec_default
        };
        table.push_str(&format!(
            "| `{}` | {} | {spec} | {ours} | {} |\n",
            v.name, v.help, v.values
        ));
    }
    table
}
