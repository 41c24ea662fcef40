//! Every configuration key: its name in the file, the environment variable that overrides it,
//! its default, which commands read it, and how its value is checked.
//!
//! This table is the one place a key is described; the file's structs ([`super::file`]) and
//! `docs/configuration.md` are kept in step with it by unit tests.

use std::str::FromStr;

use crate::logging::LogFormat;

/// One key of the configuration.
#[derive(Debug)]
pub struct Key {
    /// Dotted name in the file, e.g. `worker.task_lease`.
    pub name: &'static str,
    /// The environment variable that overrides the file (and that the command-line flag reads).
    pub env: &'static str,
    /// Built-in default, as the flag's own default; `None` when unset by default.
    pub default: Option<&'static str>,
    /// A secret: never printed, and may also come from a file (`{name}_file` in the config file
    /// where [`Key::file_key`] names it, or `{env}_FILE` in the environment).
    pub secret: bool,
    /// The file key holding a path to read this secret from (`database.url_file`).
    pub file_key: Option<&'static str>,
    /// The commands (first word after `coffer`) whose flags take the value; empty: every command
    /// with a flag reading [`Key::env`].
    pub scope: &'static [&'static str],
    /// Checks a value; the error says what is wrong without repeating the value.
    pub check: fn(&str) -> Result<(), String>,
}

impl Key {
    /// The environment variable naming a file that holds this secret (`COFFER_DATABASE_URL_FILE`).
    pub fn env_file(&self) -> Option<String> {
        self.file_key.map(|_| format!("{}_FILE", self.env))
    }

    /// Whether the key feeds a flag of the command `path` (subcommand names from the top).
    pub fn applies_to(&self, path: &[&str]) -> bool {
        self.scope.is_empty() || path.first().is_some_and(|c| self.scope.contains(c))
    }
}

const SERVICES: &[&str] = &[];
const WORKER: &[&str] = &["worker"];

/// Every key, in the order `coffer config check` prints them.
pub const KEYS: &[Key] = &[
    key("vendor", "COFFER_VENDOR", Some("coffer"), SERVICES, text),
    key(
        "vendor_principal_arn",
        "COFFER_VENDOR_PRINCIPAL_ARN",
        None,
        &["storage"],
        text,
    ),
    key(
        "log_format",
        "COFFER_LOG_FORMAT",
        Some("text"),
        SERVICES,
        log_format,
    ),
    Key {
        secret: true,
        file_key: Some("amqp.url_file"),
        ..key(
            "amqp.url",
            "COFFER_AMQP_URL",
            Some("amqp://guest:guest@127.0.0.1:5672/%2f"),
            SERVICES,
            url,
        )
    },
    key(
        "amqp.queue_prefix",
        "COFFER_QUEUE_PREFIX",
        Some("coffer"),
        SERVICES,
        text,
    ),
    Key {
        secret: true,
        file_key: Some("database.url_file"),
        ..key(
            "database.url",
            "COFFER_DATABASE_URL",
            Some("mysql://coffer:coffer@127.0.0.1:3306/coffer"),
            SERVICES,
            url,
        )
    },
    key(
        "s3.endpoint",
        "COFFER_S3_ENDPOINT",
        Some("http://127.0.0.1:4566"),
        SERVICES,
        s3_endpoint,
    ),
    key("s3.region", "AWS_REGION", Some("us-east-1"), SERVICES, text),
    key(
        "s3.access_key_id",
        "COFFER_S3_ACCESS_KEY_ID",
        None,
        SERVICES,
        text,
    ),
    Key {
        secret: true,
        file_key: Some("s3.secret_access_key_file"),
        ..key(
            "s3.secret_access_key",
            "COFFER_S3_SECRET_ACCESS_KEY",
            None,
            SERVICES,
            text,
        )
    },
    key(
        "envelope.key_file",
        "COFFER_ENVELOPE_KEY_FILE",
        None,
        SERVICES,
        text,
    ),
    key(
        "worker.concurrency",
        "COFFER_WORKER_CONCURRENCY",
        Some("1"),
        WORKER,
        concurrency,
    ),
    key(
        "worker.task_lease",
        "COFFER_TASK_LEASE",
        Some("60s"),
        WORKER,
        duration,
    ),
    key(
        "worker.max_part_bytes",
        "COFFER_MAX_PART_BYTES",
        Some("134217728"),
        WORKER,
        positive,
    ),
    key(
        "worker.compression",
        "COFFER_COMPRESSION",
        Some("gzip"),
        WORKER,
        compression,
    ),
    key(
        "worker.api_share",
        "COFFER_API_SHARE",
        Some("0.8"),
        WORKER,
        share,
    ),
    key(
        "worker.org_pause",
        "COFFER_ORG_PAUSE",
        Some("1h"),
        WORKER,
        duration,
    ),
    key(
        "worker.park_delay",
        "COFFER_PARK_DELAY",
        Some("15m"),
        WORKER,
        duration,
    ),
    key(
        "worker.max_hold",
        "COFFER_MAX_HOLD",
        Some("25m"),
        WORKER,
        duration,
    ),
    key(
        "worker.slice_rows",
        "COFFER_SLICE_ROWS",
        Some("5000000"),
        WORKER,
        positive,
    ),
    key(
        "worker.restore_key_field",
        "COFFER_RESTORE_KEY_FIELD",
        Some(coffer_worker::settings::DEFAULT_RESTORE_KEY_FIELD),
        WORKER,
        text,
    ),
    key(
        "worker.restore_bulk_threshold",
        "COFFER_RESTORE_BULK_THRESHOLD",
        Some("2000"),
        WORKER,
        count,
    ),
    key(
        "worker.retention_grace",
        "COFFER_RETENTION_GRACE",
        Some("1d"),
        WORKER,
        duration_or_zero,
    ),
    key(
        "worker.stale_upload_age",
        "COFFER_STALE_UPLOAD_AGE",
        Some("1d"),
        WORKER,
        duration_or_zero,
    ),
    key(
        "worker.drain_timeout",
        "COFFER_DRAIN_TIMEOUT",
        Some("30s"),
        WORKER,
        duration_or_zero,
    ),
    key(
        "worker.retry_delays",
        "COFFER_RETRY_DELAYS",
        Some("5s,30s,2m,10m"),
        WORKER,
        durations,
    ),
    key(
        "worker.max_attempts",
        "COFFER_MAX_ATTEMPTS",
        Some("5"),
        WORKER,
        positive,
    ),
    key(
        "telemetry.otlp_endpoint",
        "COFFER_OTLP_ENDPOINT",
        None,
        SERVICES,
        url,
    ),
    key(
        "telemetry.otlp_protocol",
        "COFFER_OTLP_PROTOCOL",
        Some("http/protobuf"),
        SERVICES,
        otlp_protocol,
    ),
    key(
        "telemetry.http_addr",
        "COFFER_HTTP_ADDR",
        None,
        &["worker", "scheduler", "janitor"],
        socket_addr,
    ),
    key(
        "scheduler.tick",
        "COFFER_SCHEDULER_TICK",
        Some("10s"),
        &["scheduler"],
        duration,
    ),
    key(
        "janitor.grace",
        "COFFER_RETENTION_GRACE",
        Some("1d"),
        &["janitor"],
        duration_or_zero,
    ),
    key(
        "janitor.stale_upload_age",
        "COFFER_STALE_UPLOAD_AGE",
        Some("1d"),
        &["janitor", "verify"],
        duration_or_zero,
    ),
    key(
        "janitor.delete_in_flight",
        "COFFER_JANITOR_DELETE_IN_FLIGHT",
        Some("8"),
        &["janitor"],
        positive,
    ),
];

const fn key(
    name: &'static str,
    env: &'static str,
    default: Option<&'static str>,
    scope: &'static [&'static str],
    check: fn(&str) -> Result<(), String>,
) -> Key {
    Key {
        name,
        env,
        default,
        secret: false,
        file_key: None,
        scope,
        check,
    }
}

fn text(s: &str) -> Result<(), String> {
    match s.trim().is_empty() {
        true => Err("is empty".to_owned()),
        false => Ok(()),
    }
}

fn url(s: &str) -> Result<(), String> {
    match url::Url::parse(s) {
        Ok(u) if u.has_host() => Ok(()),
        _ => Err("is not a URL (scheme://host...)".to_owned()),
    }
}

fn s3_endpoint(s: &str) -> Result<(), String> {
    match s.eq_ignore_ascii_case(crate::args::AWS_ENDPOINT) {
        true => Ok(()),
        false => url(s).map_err(|_| "is not a URL, nor `aws` for AWS itself".to_owned()),
    }
}

fn duration(s: &str) -> Result<(), String> {
    crate::commands::parse_duration(s)
        .map(drop)
        .map_err(|_| "is not a duration longer than zero (500ms, 10s, 1m, 1h or 7d)".to_owned())
}

fn duration_or_zero(s: &str) -> Result<(), String> {
    crate::commands::parse_duration_or_zero(s)
        .map(drop)
        .map_err(|_| "is not a duration (0, 500ms, 10s, 1m, 1h or 7d)".to_owned())
}

fn durations(s: &str) -> Result<(), String> {
    if s.split(',')
        .all(|d| crate::commands::parse_duration(d.trim()).is_ok())
    {
        Ok(())
    } else {
        Err("is not a comma-separated list of durations longer than zero (5s,30s,2m)".to_owned())
    }
}

fn positive(s: &str) -> Result<(), String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 && usize::try_from(n).is_ok() => Ok(()),
        _ => Err("is not a whole number above zero".to_owned()),
    }
}

fn count(s: &str) -> Result<(), String> {
    s.parse::<usize>()
        .map(drop)
        .map_err(|_| "is not a whole number".to_owned())
}

fn concurrency(s: &str) -> Result<(), String> {
    match s.parse::<u16>() {
        Ok(n) if n > 0 => Ok(()),
        _ => Err("is not a whole number from 1 to 65535".to_owned()),
    }
}

fn share(s: &str) -> Result<(), String> {
    crate::commands::parse_share(s)
        .map(drop)
        .map_err(|_| "is not a share between 0 (exclusive) and 1".to_owned())
}

fn compression(s: &str) -> Result<(), String> {
    coffer_core::layout::Compression::from_str(s)
        .map(drop)
        .map_err(|_| "is not a compression (gzip or zstd)".to_owned())
}

fn log_format(s: &str) -> Result<(), String> {
    <LogFormat as clap::ValueEnum>::from_str(s, false)
        .map(drop)
        .map_err(|_| "is not a log format (text or json)".to_owned())
}

fn otlp_protocol(s: &str) -> Result<(), String> {
    match s {
        "http/protobuf" | "http/json" => Ok(()),
        _ => Err("is not an OTLP protocol (http/protobuf or http/json)".to_owned()),
    }
}

fn socket_addr(s: &str) -> Result<(), String> {
    s.parse::<std::net::SocketAddr>()
        .map(drop)
        .map_err(|_| "is not a socket address (e.g. 0.0.0.0:9090)".to_owned())
}
