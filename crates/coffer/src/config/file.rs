//! The TOML file: its shape (unknown keys refused), read into a flat map of dotted keys.
//!
//! The structs only say which keys exist and of what TOML type; the values are then taken as
//! text from them, so a value from the file and one from the environment go through
//! the same checks ([`super::keys`]). Errors name the dotted key and the file, and never quote
//! the file's lines (one of them may hold a secret).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The configuration file. Every field is optional: what is missing comes from the environment
/// or the default.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    vendor: Option<String>,
    vendor_principal_arn: Option<String>,
    log_format: Option<String>,
    #[serde(default)]
    amqp: Amqp,
    #[serde(default)]
    database: Database,
    #[serde(default)]
    s3: S3,
    #[serde(default)]
    envelope: Envelope,
    #[serde(default)]
    worker: Worker,
    #[serde(default)]
    telemetry: Telemetry,
    #[serde(default)]
    scheduler: Scheduler,
    #[serde(default)]
    janitor: Janitor,
}

/// A value that may be a secret: text, never shown by `Debug`. It serializes as itself, which
/// only [`parse`] does (to flatten the file); nothing here is ever printed whole.
#[derive(Default, Deserialize, Serialize)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `[amqp]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Amqp {
    url: Option<Secret>,
    url_file: Option<String>,
    queue_prefix: Option<String>,
}

/// `[database]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Database {
    url: Option<Secret>,
    url_file: Option<String>,
}

/// `[s3]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct S3 {
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<Secret>,
    secret_access_key_file: Option<String>,
}

/// `[envelope]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    key_file: Option<String>,
}

/// `[worker]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Worker {
    concurrency: Option<u64>,
    task_lease: Option<String>,
    max_part_bytes: Option<u64>,
    compression: Option<String>,
    api_share: Option<f64>,
    org_pause: Option<String>,
    park_delay: Option<String>,
    max_hold: Option<String>,
    slice_rows: Option<u64>,
    restore_key_field: Option<String>,
    restore_bulk_threshold: Option<u64>,
    retention_grace: Option<String>,
    stale_upload_age: Option<String>,
    drain_timeout: Option<String>,
    retry_delays: Option<String>,
    max_attempts: Option<u64>,
}

/// `[telemetry]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Telemetry {
    otlp_endpoint: Option<String>,
    otlp_protocol: Option<String>,
    http_addr: Option<String>,
}

/// `[scheduler]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Scheduler {
    tick: Option<String>,
}

/// `[janitor]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Janitor {
    grace: Option<String>,
    stale_upload_age: Option<String>,
    delete_in_flight: Option<u64>,
}

/// What the file sets: dotted key to its value as text.
pub type FileValues = BTreeMap<String, String>;

/// Reads and checks the shape of the file at `path`.
pub fn read(path: &Path) -> anyhow::Result<FileValues> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    parse(&text).with_context(|| format!("in the configuration file {}", path.display()))
}

/// Checks `text` against [`ConfigFile`] and flattens it.
pub fn parse(text: &str) -> anyhow::Result<FileValues> {
    let de = toml::de::Deserializer::parse(text).map_err(|e| syntax_error(text, &e))?;
    let file: ConfigFile = match serde_path_to_error::deserialize(de) {
        Ok(file) => file,
        Err(e) => {
            let path = e.path().to_string();
            bail!("{path}: {}", describe(text, e.inner()));
        }
    };
    let mut values = FileValues::new();
    flatten("", &serde_json::to_value(file)?, &mut values);
    Ok(values)
}

/// Dotted key to text for every value set (a number as written: `4`, `0.5`).
fn flatten(prefix: &str, value: &serde_json::Value, into: &mut FileValues) {
    match value {
        serde_json::Value::Object(map) => {
            for (name, v) in map {
                let key = match prefix {
                    "" => name.clone(),
                    p => format!("{p}.{name}"),
                };
                flatten(&key, v, into);
            }
        }
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => drop(into.insert(prefix.to_owned(), s.clone())),
        other => drop(into.insert(prefix.to_owned(), other.to_string())),
    }
}

fn syntax_error(text: &str, e: &toml::de::Error) -> anyhow::Error {
    anyhow::anyhow!("{}", describe(text, e))
}

/// The parser's message and where, without the offending line (it may hold a secret).
fn describe(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            format!("{message} (line {line})")
        }
        None => message.to_owned(),
    }
}

#[cfg(test)]
pub(crate) fn struct_keys() -> Vec<String> {
    fn walk(prefix: &str, value: &serde_json::Value, into: &mut Vec<String>) {
        let Some(map) = value.as_object() else {
            into.push(prefix.to_owned());
            return;
        };
        for (name, v) in map {
            let key = match prefix {
                "" => name.clone(),
                p => format!("{p}.{name}"),
            };
            walk(&key, v, into);
        }
    }
    let mut keys = Vec::new();
    let value = serde_json::to_value(ConfigFile::default()).unwrap_or_default();
    walk("", &value, &mut keys);
    keys
}
