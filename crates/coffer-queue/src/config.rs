//! Configuration of the queue layer: where the broker is, how the topology is named, how many
//! jobs run at once, and how failed jobs are retried.
//!
//! The AMQP URL carries credentials, so it is a [`SecretString`]: it is read in exactly one place
//! ([`QueueConfig::parse_url`]) and only ever shown through [`QueueConfig::redacted_endpoint`].

use std::str::FromStr;
use std::time::Duration;

use coffer_core::secret::{ExposeSecret, SecretString};
use lapin::uri::AMQPUri;

use crate::error::QueueError;

/// The longest prefix accepted; every AMQP name built from it must stay below 255 bytes.
const MAX_PREFIX_LEN: usize = 100;

/// Settings shared by the publisher, the consumer and the admin helpers.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// `amqp://user:pass@host:port/vhost`; never logged, it carries credentials.
    pub amqp_url: SecretString,
    /// Prefix of every exchange and queue name: `"coffer"` in production, a unique value in tests.
    pub prefix: String,
    /// Unacknowledged deliveries per consumer, which is also the number of concurrent handlers.
    pub prefetch: u16,
    /// One delay queue per level; attempt `n` waits `retry_delays[min(n, len - 1)]`.
    pub retry_delays: Vec<Duration>,
    /// Attempts (first delivery included) before a retried job is dead-lettered.
    pub max_attempts: u32,
    /// `x-delivery-limit` on the jobs quorum queue: a message that keeps crashing workers is
    /// dead-lettered by the broker after this many redeliveries.
    pub delivery_limit: u32,
    /// How long a deferred job ([`crate::Outcome::Defer`], e.g. for an org paused on its API
    /// limits) waits in the parked queue before it is delivered again. A deferral is not a
    /// failed attempt: it never brings the job closer to the dead-letter queue.
    pub park_delay: Duration,
    /// How long a delivery is held unacked while its handler runs. RabbitMQ closes the channel
    /// of a consumer that holds a delivery past its `consumer_timeout` (30 min by default), which
    /// would abort every job on it; a handler still running after `max_hold` has its delivery
    /// handed over instead: a copy goes to the parked queue and the original is acked, so the
    /// job keeps a message in the broker while the handler finishes.
    pub max_hold: Duration,
    /// How long a graceful shutdown waits for in-flight handlers before abandoning them
    /// (abandoned deliveries are never acked; the broker requeues them).
    pub drain_timeout: Duration,
}

impl QueueConfig {
    /// Production defaults for the given broker URL: prefix `coffer`, one job at a time, retries
    /// after 5 s, 30 s, 2 min and 10 min, 5 attempts, delivery limit 10, deferred jobs parked for 15 min,
    /// deliveries held 25 min at most, 30 s drain.
    pub fn new(amqp_url: SecretString) -> Self {
        Self {
            amqp_url,
            prefix: "coffer".to_owned(),
            prefetch: 1,
            retry_delays: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(120),
                Duration::from_secs(600),
            ],
            max_attempts: 5,
            delivery_limit: 10,
            park_delay: Duration::from_secs(15 * 60),
            max_hold: Duration::from_secs(25 * 60),
            drain_timeout: Duration::from_secs(30),
        }
    }

    /// Checks the settings that would otherwise fail later, at the broker or in a retry path.
    pub fn validate(&self) -> Result<(), QueueError> {
        validate_prefix(&self.prefix)?;
        if self.prefetch == 0 {
            return Err(config_error(
                "prefetch must be at least 1 (0 would mean unlimited)",
            ));
        }
        if self.retry_delays.is_empty() {
            return Err(config_error("retry_delays must name at least one delay"));
        }
        if self
            .retry_delays
            .iter()
            .any(|d| d.is_zero() || d.as_millis() > u128::from(u32::MAX))
        {
            return Err(config_error(
                "each retry delay must be between 1 ms and ~49 days",
            ));
        }
        if self.park_delay.is_zero() || self.park_delay.as_millis() > u128::from(u32::MAX) {
            return Err(config_error("park_delay must be between 1 ms and ~49 days"));
        }
        if self.max_hold.is_zero() {
            return Err(config_error("max_hold must be positive"));
        }
        if self.max_attempts == 0 {
            return Err(config_error("max_attempts must be at least 1"));
        }
        if self.delivery_limit == 0 {
            return Err(config_error("delivery_limit must be at least 1"));
        }
        Ok(())
    }

    /// Parses the URL. The parser's own error quotes the input, so it is replaced by one that
    /// does not.
    pub(crate) fn parse_url(&self) -> Result<AMQPUri, QueueError> {
        AMQPUri::from_str(self.amqp_url.expose_secret()).map_err(|_| QueueError::InvalidUrl)
    }

    /// `scheme://host:port/vhost`, without user and password: safe for logs and errors.
    pub fn redacted_endpoint(&self) -> String {
        match self.parse_url() {
            Ok(uri) => endpoint_of(&uri),
            Err(_) => "<invalid amqp url>".to_owned(),
        }
    }
}

/// `scheme://host:port/vhost` of a parsed URI.
pub(crate) fn endpoint_of(uri: &AMQPUri) -> String {
    let vhost = uri.vhost.replace('%', "%25").replace('/', "%2f");
    format!(
        "{}://{}:{}/{vhost}",
        uri.scheme, uri.authority.host, uri.authority.port
    )
}

fn validate_prefix(prefix: &str) -> Result<(), QueueError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN || !prefix.chars().all(allowed) {
        return Err(config_error(
            "prefix must be 1-100 characters of [A-Za-z0-9._-]",
        ));
    }
    Ok(())
}

fn config_error(msg: &str) -> QueueError {
    QueueError::Config(msg.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> QueueConfig {
        QueueConfig::new(SecretString::from(url.to_owned()))
    }

    #[test]
    fn defaults_are_valid() {
        cfg("amqp://guest:guest@127.0.0.1:5672/%2f")
            .validate()
            .unwrap();
    }

    #[test]
    fn redacted_endpoint_hides_credentials() {
        let shown = cfg("amqp://alice:s3cr3t@broker.internal:5673/prod").redacted_endpoint();
        assert_eq!(shown, "amqp://broker.internal:5673/prod");
        assert!(!shown.contains("s3cr3t"));
        let shown = cfg("amqp://alice:s3cr3t@127.0.0.1:5672/%2f").redacted_endpoint();
        assert_eq!(shown, "amqp://127.0.0.1:5672/%2f");
    }

    #[test]
    fn invalid_url_error_does_not_quote_the_url() {
        let err = cfg("http://alice:s3cr3t@host").parse_url().unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        let err = cfg("not a url s3cr3t").parse_url().unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn debug_does_not_show_the_url() {
        let shown = format!("{:?}", cfg("amqp://alice:s3cr3t@host:5672/%2f"));
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn rejects_bad_settings() {
        let mut c = cfg("amqp://h");
        c.prefix = "has space".into();
        assert!(c.validate().is_err());
        let mut c = cfg("amqp://h");
        c.prefetch = 0;
        assert!(c.validate().is_err());
        let mut c = cfg("amqp://h");
        c.retry_delays.clear();
        assert!(c.validate().is_err());
        let mut c = cfg("amqp://h");
        c.max_attempts = 0;
        assert!(c.validate().is_err());
    }
}
