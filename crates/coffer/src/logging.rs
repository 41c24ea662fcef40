//! Log format flag: structured `tracing` events on stderr, filtered by `RUST_LOG` (the
//! subscriber itself is `coffer_telemetry::traces`).

/// How log lines look.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl From<LogFormat> for coffer_telemetry::LogFormat {
    fn from(f: LogFormat) -> Self {
        match f {
            LogFormat::Text => coffer_telemetry::LogFormat::Text,
            LogFormat::Json => coffer_telemetry::LogFormat::Json,
        }
    }
}
