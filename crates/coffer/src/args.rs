//! Where the services are: flags with environment fallbacks shared by every command.
//!
//! Defaults point at the local stack (`scripts/stack up`), so `coffer demo` needs no setup.
//! Values that carry credentials (`--amqp-url`, `--database-url`, the S3 secret) are never
//! printed: clap hides their environment values in `--help`, and they are held as secrets.

use coffer_queue::QueueConfig;
use coffer_storage::{S3Settings, StaticKeys};
use secrecy::SecretString;

/// Service endpoints and credentials.
#[derive(Debug, Clone, clap::Args)]
pub struct Services {
    /// RabbitMQ URL.
    #[arg(
        long,
        env = "COFFER_AMQP_URL",
        hide_env_values = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_default_value = true
    )]
    pub amqp_url: String,
    /// Catalog database URL.
    #[arg(
        long,
        env = "COFFER_DATABASE_URL",
        hide_env_values = true,
        default_value = "mysql://coffer:coffer@127.0.0.1:3306/coffer",
        hide_default_value = true
    )]
    pub database_url: String,
    /// S3-compatible endpoint (unset for AWS).
    #[arg(
        long,
        env = "COFFER_S3_ENDPOINT",
        default_value = "http://127.0.0.1:4566"
    )]
    pub s3_endpoint: Option<String>,
    /// Default region of buckets.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Access key id for storage; unset means the AWS default credential chain (or, with an
    /// S3-compatible endpoint, the emulator's `test` identity).
    #[arg(long, env = "COFFER_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// Secret access key for storage.
    #[arg(long, env = "COFFER_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Prefix of every queue and exchange.
    #[arg(long, env = "COFFER_QUEUE_PREFIX", default_value = "coffer")]
    pub queue_prefix: String,
}

impl Services {
    /// The database URL as a secret.
    pub fn database_url(&self) -> SecretString {
        SecretString::from(self.database_url.clone())
    }

    /// Queue settings (production defaults, this prefix).
    pub fn queue(&self) -> QueueConfig {
        QueueConfig {
            prefix: self.queue_prefix.clone(),
            ..QueueConfig::new(SecretString::from(self.amqp_url.clone()))
        }
    }

    /// Storage settings.
    pub fn s3(&self) -> S3Settings {
        let keys = match (
            &self.s3_access_key_id,
            &self.s3_secret_access_key,
            &self.s3_endpoint,
        ) {
            (Some(id), Some(secret), _) => Some(StaticKeys {
                access_key_id: id.clone(),
                secret_access_key: SecretString::from(secret.clone()),
            }),
            (None, None, Some(_)) => Some(StaticKeys {
                access_key_id: "test".to_owned(),
                secret_access_key: SecretString::from("test".to_owned()),
            }),
            _ => None,
        };
        S3Settings {
            region: self.region.clone(),
            endpoint: self.s3_endpoint.clone(),
            keys,
        }
    }
}
