//! Telemetry flags and their wiring: where traces go (global flags, any command), and the HTTP
//! endpoint of the long-running commands (`/metrics`, `/healthz`, `/readyz`).

use std::net::SocketAddr;

use anyhow::Context as _;
use coffer_catalog::Catalog;
use coffer_telemetry::{OtlpProtocol, ReadinessCheck, TraceExport};
use tokio_util::sync::CancellationToken;

/// Where spans are exported (every command: a `coffer enqueue` starts the trace its jobs
/// continue).
#[derive(Debug, Clone, clap::Args)]
pub struct TraceArgs {
    /// OTLP/HTTP endpoint of an OpenTelemetry collector (`http://collector:4318`); spans are
    /// posted to `{endpoint}/v1/traces`. Unset: no spans leave the process.
    #[arg(long, global = true, env = "COFFER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<url::Url>,
    /// `http/protobuf` or `http/json`.
    #[arg(
        long,
        global = true,
        env = "COFFER_OTLP_PROTOCOL",
        default_value = "http/protobuf"
    )]
    pub otlp_protocol: OtlpProtocol,
}

impl TraceArgs {
    /// The export, when an endpoint is set.
    pub fn export(&self) -> Option<TraceExport> {
        self.otlp_endpoint.clone().map(|endpoint| TraceExport {
            endpoint,
            protocol: self.otlp_protocol,
        })
    }
}

/// The HTTP endpoint of a long-running command.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Serve `/metrics` (Prometheus), `/healthz` and `/readyz` on this address
    /// (`0.0.0.0:9464` in a container; port 0 picks a free port, logged at start). Unset: no
    /// HTTP server.
    #[arg(long, env = "COFFER_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
}

/// Readiness: the catalog answers a ping.
pub fn catalog_check(catalog: &Catalog) -> ReadinessCheck {
    let catalog = catalog.clone();
    ReadinessCheck {
        name: "catalog",
        check: Box::new(move || {
            let catalog = catalog.clone();
            Box::pin(async move { catalog.ping().await.map_err(|e| e.to_string()) })
        }),
    }
}

/// Readiness: the consumer is consuming (connected, and not shutting down).
pub fn consumer_check(status: &coffer_queue::ConsumerStatus) -> ReadinessCheck {
    let status = status.clone();
    ReadinessCheck {
        name: "amqp",
        check: Box::new(move || {
            let consuming = status.is_consuming();
            Box::pin(async move {
                match consuming {
                    true => Ok(()),
                    false => Err("not consuming (connecting, or shutting down)".to_owned()),
                }
            })
        }),
    }
}

/// Starts the endpoint if `--http-addr` is set; it stops when `stop` is cancelled.
pub async fn serve(
    args: &HttpArgs,
    checks: Vec<ReadinessCheck>,
    stop: CancellationToken,
) -> anyhow::Result<Option<coffer_telemetry::HttpServer>> {
    let Some(addr) = args.http_addr else {
        return Ok(None);
    };
    let handle = prometheus()?;
    let server = coffer_telemetry::serve(addr, handle, checks, stop).await?;
    Ok(Some(server))
}

/// The process's Prometheus recorder, installed on first use.
fn prometheus() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = coffer_telemetry::install_prometheus().context("metrics recorder")?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}
