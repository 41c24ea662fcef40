//! Logging setup: structured `tracing` events on stderr, filtered by `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Default filter: our crates at info, chatty dependencies at warn (lapin can dump frames at
/// trace level; the SDKs log request details at debug).
const DEFAULT_FILTER: &str = "info,lapin=warn,amq_protocol=warn,sqlx=warn,aws_config=warn,aws_smithy_runtime=warn,hyper=warn";

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
