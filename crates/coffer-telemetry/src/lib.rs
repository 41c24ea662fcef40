//! Telemetry at the process edge: what operators see of a running Coffer.
//!
//! - [`traces`]: the global `tracing` subscriber. Log lines go to stderr (text or JSON); when an
//!   OTLP endpoint is configured, spans are exported over OTLP/HTTP too, and the W3C trace
//!   context propagator is installed so a job's span continues the trace of whoever published it
//!   (`coffer-queue` carries the context in message headers).
//! - [`metrics`]: the Prometheus recorder behind the `metrics` facade the other crates count
//!   with, every metric of [`coffer_core::metrics::ALL`] described.
//! - [`http`]: the endpoints a fleet needs: `/metrics`, `/healthz` (the process serves), and
//!   `/readyz` (its dependencies answer).
//!
//! Nothing here knows about jobs: the crates that do the work name their spans and count their
//! metrics; this crate only ships them.

pub mod http;
pub mod metrics;
pub mod traces;

pub use http::{HttpServer, ReadinessCheck, serve};
pub use metrics::install_prometheus;
pub use traces::{LogFormat, OtlpProtocol, Role, TelemetryGuard, TraceExport};

/// What can go wrong setting telemetry up. Every case is permanent: it is a configuration the
/// operator has to fix (a port in use, an endpoint that is not a URL).
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built.
    #[error("cannot set up the OTLP trace exporter for {endpoint}: {message}")]
    Exporter {
        /// The traces URL.
        endpoint: String,
        /// What the exporter said.
        message: String,
    },
    /// A global subscriber or recorder was already installed.
    #[error("telemetry is already installed in this process: {0}")]
    AlreadyInstalled(String),
    /// The HTTP endpoint address could not be bound.
    #[error(
        "cannot listen on {addr} for /metrics, /healthz and /readyz (COFFER_HTTP_ADDR): {source}"
    )]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl coffer_core::Classify for TelemetryError {
    fn class(&self) -> coffer_core::ErrorClass {
        coffer_core::ErrorClass::Permanent
    }
}
