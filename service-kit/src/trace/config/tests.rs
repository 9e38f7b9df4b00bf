//! The specification's rules, case by case.

use std::time::Duration;

use super::*;

fn resolve(pairs: &[(&str, &str)]) -> Resolved {
    OtelConfig::resolve(&TraceSettings::of(pairs), "marketplace").expect("resolves")
}

fn refusal(pairs: &[(&str, &str)]) -> String {
    OtelConfig::resolve(&TraceSettings::of(pairs), "marketplace")
        .expect_err("refused")
        .to_string()
}

fn export(pairs: &[(&str, &str)]) -> OtlpExport {
    resolve(pairs).config.export.expect("exporting")
}

#[test]
fn nothing_set_exports_nothing_propagates_both_and_samples_parent_based() {
    let Resolved { config, warnings } = resolve(&[]);

    assert!(config.export.is_none());
    assert!(!config.disabled);
    assert_eq!(config.service_name, "marketplace");
    assert_eq!(
        config.propagation,
        Propagation {
            tracecontext: true,
            baggage: true
        }
    );
    assert!(matches!(config.sampler, Sampler::ParentBased(_)));
    assert_eq!(config.batch.schedule_delay, Duration::from_millis(5000));
    assert_eq!(config.batch.export_timeout, Duration::from_millis(30_000));
    assert_eq!(
        (
            config.batch.max_queue_size,
            config.batch.max_export_batch_size
        ),
        (2048, 512)
    );
    assert_eq!(config.limits.attributes_per_span, 128);
    assert_eq!(config.limits.attribute_value_length, None);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn durations_are_whole_milliseconds_and_anything_else_is_ignored_with_a_warning() {
    let Resolved { config, warnings } = resolve(&[
        ("OTEL_BSP_SCHEDULE_DELAY", "500"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "5s"),
    ]);

    assert_eq!(config.batch.schedule_delay, Duration::from_millis(500));
    assert_eq!(
        config.batch.export_timeout,
        Duration::from_millis(30_000),
        "the default"
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("OTEL_BSP_EXPORT_TIMEOUT=\"5s\""),
        "{warnings:?}"
    );
}

#[test]
fn an_endpoint_turns_export_on_over_http_protobuf_with_the_traces_path() {
    let export = export(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);

    assert_eq!(export.protocol, Protocol::HttpProtobuf);
    assert_eq!(export.endpoint, "http://collector:4318/v1/traces");
    assert_eq!(export.timeout, Duration::from_millis(10_000));
    assert_eq!(export.compression, None);
}

#[test]
fn the_traces_endpoint_is_used_as_it_is_and_wins() {
    let export = export(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "https://traces:443/custom",
        ),
    ]);

    assert_eq!(export.endpoint, "https://traces:443/custom");
}

#[test]
fn over_grpc_the_generic_endpoint_is_used_as_it_is() {
    let export = export(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ]);

    assert_eq!(export.protocol, Protocol::Grpc);
    assert_eq!(export.endpoint, "http://collector:4317/");
}

#[test]
fn the_traces_protocol_wins_over_the_generic_one() {
    let export = export(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
    ]);

    assert_eq!(export.protocol, Protocol::Grpc);
}

#[test]
fn otlp_named_with_no_endpoint_goes_to_the_default_of_its_protocol() {
    let http = export(&[("OTEL_TRACES_EXPORTER", "otlp")]);
    let grpc = export(&[
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ]);

    assert_eq!(http.endpoint, "http://localhost:4318/v1/traces");
    assert_eq!(grpc.endpoint, "http://localhost:4317/");
}

#[test]
fn grpc_to_host_and_port_is_tls_unless_insecure() {
    let grpc = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ];
    let tls = export(&grpc);
    let plain = export(&[
        grpc[0],
        grpc[1],
        ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "true"),
    ]);

    assert_eq!(tls.endpoint.scheme_str(), Some("https"));
    assert_eq!(plain.endpoint.scheme_str(), Some("http"));
}

#[test]
fn sdk_disabled_and_exporter_none_export_nothing_whatever_the_endpoint() {
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");

    assert!(
        resolve(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")])
            .config
            .export
            .is_none()
    );
    assert!(
        resolve(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")])
            .config
            .export
            .is_none()
    );
    let Resolved { config, warnings } = resolve(&[endpoint, ("OTEL_SDK_DISABLED", "yes")]);
    assert!(config.export.is_some(), "only true disables");
    assert!(
        warnings[0].contains("OTEL_SDK_DISABLED=\"yes\""),
        "{warnings:?}"
    );
}

#[test]
fn the_service_name_wins_over_one_in_the_resource_and_values_are_percent_decoded() {
    let attributes = (
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.name=from-resource,team=books%20and%20more,k8s.pod.name=m-1",
    );
    let named = resolve(&[attributes, ("OTEL_SERVICE_NAME", "shop")]).config;
    let unnamed = resolve(&[attributes]).config;

    assert_eq!(named.service_name, "shop");
    assert_eq!(unnamed.service_name, "from-resource");
    let pairs: Vec<String> = named
        .resource
        .iter()
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    assert_eq!(pairs, ["team=books and more", "k8s.pod.name=m-1"]);
}

#[test]
fn a_malformed_resource_value_is_discarded_whole_with_a_warning() {
    let Resolved { config, warnings } = resolve(&[("OTEL_RESOURCE_ATTRIBUTES", "a=1,oops")]);

    assert!(config.resource.is_empty());
    assert!(warnings[0].contains("\"oops\""), "{warnings:?}");
}

#[test]
fn traces_headers_replace_the_generic_ones_and_are_percent_decoded() {
    let generic = (
        "OTEL_EXPORTER_OTLP_HEADERS",
        "authorization=Bearer%20a,x-tenant=1",
    );
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");

    let only_generic = export(&[endpoint, generic]).headers;
    let traces = export(&[
        endpoint,
        generic,
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=k%3Dv"),
    ])
    .headers;

    assert_eq!(
        only_generic,
        [
            ("authorization".into(), "Bearer a".into()),
            ("x-tenant".into(), "1".into())
        ]
    );
    assert_eq!(traces, [("api-key".to_owned(), "k=v".to_owned())]);
}

#[test]
fn compression_and_timeout_take_the_traces_value_first() {
    let export = export(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "250"),
    ]);

    assert_eq!(export.compression, Some(Compression::Gzip));
    assert_eq!(export.timeout, Duration::from_millis(250));
}

#[test]
fn values_of_the_specification_we_cannot_honour_stop_the_start_naming_what_is_supported() {
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
    let cases = [
        (
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            "grpc, http/protobuf",
        ),
        (
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd"),
            "gzip, none",
        ),
        (("OTEL_TRACES_EXPORTER", "otlp,console"), "otlp, none"),
        (
            ("OTEL_PROPAGATORS", "tracecontext,b3"),
            "tracecontext, baggage, none",
        ),
        (("OTEL_TRACES_SAMPLER", "jaeger_remote"), "always_on"),
    ];
    for ((name, value), supported) in cases {
        let refused = refusal(&[endpoint, (name, value)]);
        assert!(
            refused.contains(name) && refused.contains(supported),
            "{refused}"
        );
    }
}

#[test]
fn values_nobody_defined_are_ignored_with_a_warning() {
    let Resolved { config, warnings } = resolve(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ("OTEL_PROPAGATORS", "tracecontext,mine"),
    ]);

    assert_eq!(
        config.export.expect("exporting").protocol,
        Protocol::HttpProtobuf
    );
    assert!(matches!(config.sampler, Sampler::ParentBased(_)));
    assert_eq!(
        config.propagation,
        Propagation {
            tracecontext: true,
            baggage: false
        }
    );
    assert_eq!(warnings.len(), 3, "{warnings:?}");
}

#[test]
fn propagators_none_reads_and_writes_no_context() {
    let config = resolve(&[("OTEL_PROPAGATORS", "none")]).config;

    assert_eq!(config.propagation, Propagation::default());
}

#[test]
fn batches_fit_the_queue_and_limits_fall_back_to_the_general_one() {
    let Resolved { config, warnings } = resolve(&[
        ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
        ("OTEL_ATTRIBUTE_COUNT_LIMIT", "10"),
        ("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "3"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "64"),
    ]);

    assert_eq!(config.batch.max_export_batch_size, 100);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        (
            config.limits.attributes_per_span,
            config.limits.attributes_per_event
        ),
        (10, 3)
    );
    assert_eq!(config.limits.attribute_value_length, Some(64));
}

#[test]
fn a_client_certificate_needs_its_key() {
    let refused = refusal(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            "/etc/otel/client.pem",
        ),
    ]);

    assert!(refused.contains("CLIENT_KEY"), "{refused}");
}

#[test]
fn the_documented_table_is_the_variables_table() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md");
    crate::testing::docs::assert_markdown(
        std::path::Path::new(root),
        "otel-variables",
        &variables::markdown_table(),
    );
}
