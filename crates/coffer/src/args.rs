//! Where the services are: flags with environment fallbacks shared by every command.
//!
//! Defaults point at the local stack (`scripts/stack up`), so `coffer demo` needs no setup.
//! Values that carry credentials (`--amqp-url`, `--database-url`, the S3 secret) are never
//! printed: clap hides their environment values in `--help`, and they are held as secrets.

use anyhow::Context;
use coffer_core::sealed::EnvelopeKey;
use coffer_queue::QueueConfig;
use coffer_storage::{S3Settings, StaticKeys};
use secrecy::SecretString;

/// The value of `--s3-endpoint` (`COFFER_S3_ENDPOINT`, `s3.endpoint`) that means AWS itself.
pub const AWS_ENDPOINT: &str = "aws";

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
    /// S3-compatible endpoint; `aws` for AWS itself (its regional endpoints and the default
    /// credential chain, e.g. IRSA). The default is the local emulator.
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
    /// The vendor's name, the start of every external id (`{vendor}-org-{org_id}`) customers put
    /// in their roles' trust policies.
    #[arg(long, env = "COFFER_VENDOR", default_value = "coffer")]
    pub vendor: String,
    /// File holding the envelope key (32 random bytes, base64) that seals customers' storage
    /// secrets in the catalog; `COFFER_ENVELOPE_KEY` may hold the key itself instead.
    #[arg(long, env = "COFFER_ENVELOPE_KEY_FILE")]
    pub envelope_key_file: Option<std::path::PathBuf>,
}

impl Services {
    /// The envelope key, from `--envelope-key-file` or `COFFER_ENVELOPE_KEY`; `None` when
    /// neither is set (storages with access keys then cannot be used).
    pub fn envelope_key(&self) -> anyhow::Result<Option<EnvelopeKey>> {
        let text = match (
            &self.envelope_key_file,
            std::env::var("COFFER_ENVELOPE_KEY"),
        ) {
            (Some(path), _) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the envelope key file {}", path.display()))?,
            (None, Ok(key)) => key,
            (None, Err(_)) => return Ok(None),
        };
        let key = EnvelopeKey::from_base64(&SecretString::from(text))
            .context("invalid envelope key (COFFER_ENVELOPE_KEY_FILE or COFFER_ENVELOPE_KEY)")?;
        Ok(Some(key))
    }

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

    /// The S3-compatible endpoint, `None` for AWS itself (`--s3-endpoint aws`).
    pub fn s3_endpoint(&self) -> Option<&str> {
        self.s3_endpoint
            .as_deref()
            .filter(|e| !e.eq_ignore_ascii_case(AWS_ENDPOINT))
    }

    /// Storage settings.
    pub fn s3(&self) -> S3Settings {
        let keys = match (
            &self.s3_access_key_id,
            &self.s3_secret_access_key,
            self.s3_endpoint(),
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
            endpoint: self.s3_endpoint().map(str::to_owned),
            keys,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        services: Services,
    }

    fn services(args: &[&str]) -> Services {
        let mut all = vec!["coffer"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parse").services
    }

    /// `aws` means AWS itself: no endpoint, and no emulator identity standing in for the
    /// credential chain.
    #[test]
    fn the_aws_endpoint_uses_the_default_credential_chain() {
        let aws = services(&["--s3-endpoint", "aws"]).s3();
        assert_eq!(aws.endpoint, None);
        assert!(aws.keys.is_none());
        let emulator = services(&["--s3-endpoint", "http://127.0.0.1:4566"]).s3();
        assert_eq!(emulator.endpoint.as_deref(), Some("http://127.0.0.1:4566"));
        assert!(emulator.keys.is_some());
    }
}
