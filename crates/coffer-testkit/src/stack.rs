//! [`Stack`]: where the local services answer.

use coffer_storage::{S3Settings, StaticKeys};
use secrecy::SecretString;

/// Endpoints of the local services, from the environment (as printed by `scripts/stack env`).
#[derive(Debug, Clone)]
pub struct Stack {
    /// `COFFER_AMQP_URL`.
    pub amqp_url: String,
    /// `COFFER_DATABASE_URL` (the `coffer` database; tests create their own beside it).
    pub database_url: String,
    /// `COFFER_S3_ENDPOINT`.
    pub s3_endpoint: String,
    /// `AWS_REGION`.
    pub region: String,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

impl Stack {
    /// Reads the endpoints, defaulting to what `scripts/stack up` starts.
    pub fn from_env() -> Stack {
        Stack {
            amqp_url: env_or("COFFER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            database_url: env_or(
                "COFFER_DATABASE_URL",
                "mysql://coffer:coffer@127.0.0.1:3306/coffer",
            ),
            s3_endpoint: env_or("COFFER_S3_ENDPOINT", "http://127.0.0.1:4566"),
            region: env_or("AWS_REGION", "us-east-1"),
        }
    }

    /// S3/KMS settings with the emulator's administrative identity (it bypasses IAM checks;
    /// tests of IAM create their own users and roles).
    pub fn admin_s3(&self) -> S3Settings {
        S3Settings {
            region: self.region.clone(),
            endpoint: Some(self.s3_endpoint.clone()),
            keys: Some(StaticKeys {
                access_key_id: env_or("COFFER_S3_ADMIN_KEY_ID", "test"),
                secret_access_key: SecretString::from(env_or("COFFER_S3_ADMIN_SECRET", "test")),
            }),
        }
    }
}
