//! The process's `tracing` subscriber: log lines on stderr, spans over OTLP when configured.
//!
//! The exporter batches spans on its own thread and posts them with a blocking HTTP client, so
//! it works the same in async commands and in blocking code. [`TelemetryGuard::shutdown`]
//! flushes what is batched; call it after the runtime has stopped, or spans of the last seconds
//! are lost.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::TelemetryError;

/// Default filter: our crates at info, chatty dependencies at warn (lapin can dump frames at
/// trace level; the SDKs log request details at debug; the exporter's HTTP client is quiet so
/// its own requests are not traced into the export).
const DEFAULT_FILTER: &str = "info,lapin=warn,amq_protocol=warn,sqlx=warn,aws_config=warn,aws_smithy_runtime=warn,hyper=warn,hyper_util=warn,reqwest=warn,opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry_otlp=warn";

/// How often batched spans are sent.
const EXPORT_INTERVAL: Duration = Duration::from_secs(2);

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The part of the fleet a process plays, the `coffer.role` resource attribute of its spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `coffer worker`.
    Worker,
    /// `coffer scheduler`.
    Scheduler,
    /// `coffer janitor`.
    Janitor,
    /// Any other command.
    Cli,
}

impl Role {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Scheduler => "scheduler",
            Role::Janitor => "janitor",
            Role::Cli => "cli",
        }
    }
}

/// OTLP over HTTP: protobuf (what collectors expect by default) or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    /// `http/protobuf`.
    #[default]
    HttpProtobuf,
    /// `http/json`.
    HttpJson,
}

impl std::str::FromStr for OtlpProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "http/json" => Ok(Self::HttpJson),
            other => Err(format!(
                "{other:?} is not an OTLP protocol Coffer speaks (http/protobuf or http/json)"
            )),
        }
    }
}

/// Where spans go.
#[derive(Debug, Clone)]
pub struct TraceExport {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); spans are posted to
    /// `{endpoint}/v1/traces`.
    pub endpoint: url::Url,
    /// Encoding.
    pub protocol: OtlpProtocol,
}

impl TraceExport {
    /// The URL spans are posted to.
    pub fn traces_url(&self) -> String {
        let base = self.endpoint.as_str().trim_end_matches('/');
        if base.ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        }
    }
}

/// Keeps the exporter alive; [`TelemetryGuard::shutdown`] flushes it.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Sends what is batched and stops the exporter. Blocks for at most the exporter's timeout.
    pub fn shutdown(mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: flushing traces failed: {e}");
        }
    }
}

/// Installs the global subscriber: stderr logs in `format`, filtered by `RUST_LOG`, and, with
/// `export`, an OpenTelemetry layer sending spans to the collector.
pub fn init(
    format: LogFormat,
    role: Role,
    export: Option<&TraceExport>,
) -> Result<TelemetryGuard, TelemetryError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let provider = export.map(|e| tracer_provider(e, role)).transpose()?;
    let otel = provider.as_ref().map(|p| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(p.clone());
        tracing_opentelemetry::layer().with_tracer(p.tracer("coffer"))
    });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}

use tracing_subscriber::Layer as _;

fn tracer_provider(export: &TraceExport, role: Role) -> Result<SdkTracerProvider, TelemetryError> {
    let url = export.traces_url();
    let protocol = match export.protocol {
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::Protocol::HttpBinary,
        OtlpProtocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(url.clone())
        .build()
        .map_err(|e| TelemetryError::Exporter {
            endpoint: url,
            message: e.to_string(),
        })?;
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(EXPORT_INTERVAL)
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource(role))
        .build())
}

/// `service.name=coffer`, the role, and an instance id (host and pid) that tells two workers
/// on one machine apart.
fn resource(role: Role) -> Resource {
    Resource::builder()
        .with_service_name("coffer")
        .with_attributes([
            KeyValue::new("coffer.role", role.as_str()),
            KeyValue::new("service.instance.id", instance_id()),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build()
}

/// `{hostname}:{pid}`.
pub fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned());
    format!("{host}:{}", std::process::id())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn traces_url_appends_the_signal_path_once() {
        let export = |u: &str| TraceExport {
            endpoint: u.parse().unwrap(),
            protocol: OtlpProtocol::default(),
        };
        assert_eq!(
            export("http://c:4318").traces_url(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            export("http://c:4318/").traces_url(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            export("http://c:4318/v1/traces").traces_url(),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn protocols_parse_by_their_otel_names() {
        assert_eq!(
            "http/json".parse::<OtlpProtocol>(),
            Ok(OtlpProtocol::HttpJson)
        );
        assert!("grpc".parse::<OtlpProtocol>().unwrap_err().contains("grpc"));
    }
}
