//! Building S3 clients.
//!
//! One [`S3Settings`] describes how to reach an S3 endpoint. Against AWS the SDK's defaults
//! apply. Against an S3-compatible endpoint (`endpoint` set) the client uses path-style
//! addressing and sends the SDK's extra checksums only when an operation requires them: several
//! S3-compatible stores reject the SDK's default trailing checksums. Integrity does not depend on
//! that flag: the multipart writer sends its own Content-MD5 on every part and records a SHA-256
//! of the whole object.

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use secrecy::{ExposeSecret, SecretString};

/// A static access key pair. The secret never prints.
#[derive(Debug, Clone)]
pub struct StaticKeys {
    /// The access key id (not secret; appears in CloudTrail).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
}

/// How to reach an S3 (and KMS) endpoint.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// Region of the bucket, e.g. `us-east-1`.
    pub region: String,
    /// Endpoint of an S3-compatible store; `None` means AWS.
    pub endpoint: Option<String>,
    /// Static keys; `None` means the SDK's default credential chain (environment, profile,
    /// container or instance role).
    pub keys: Option<StaticKeys>,
}

impl S3Settings {
    /// The shared SDK configuration (region, endpoint, credentials) for S3 and KMS clients.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()));
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(keys) = &self.keys {
            loader = loader.credentials_provider(Credentials::new(
                keys.access_key_id.clone(),
                keys.secret_access_key.expose_secret(),
                None,
                None,
                "coffer-static-keys",
            ));
        }
        loader.load().await
    }

    /// An S3 client for these settings.
    pub async fn s3_client(&self) -> aws_sdk_s3::Client {
        let shared = self.sdk_config().await;
        aws_sdk_s3::Client::from_conf(self.s3_config_builder(&shared).build())
    }

    /// The S3 configuration for these settings, for callers that add to it (credentials,
    /// retry partition).
    pub fn s3_config_builder(&self, shared: &aws_config::SdkConfig) -> aws_sdk_s3::config::Builder {
        let mut builder = aws_sdk_s3::config::Builder::from(shared);
        if self.endpoint.is_some() {
            builder = builder
                .force_path_style(true)
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        builder
    }

    /// A KMS client for these settings.
    pub async fn kms_client(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.sdk_config().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_debug_redacts_the_secret_key() {
        let s = S3Settings {
            region: "us-east-1".into(),
            endpoint: None,
            keys: Some(StaticKeys {
                access_key_id: "AKIAEXAMPLE".into(),
                secret_access_key: SecretString::from("wJalrXUtnFEMI/K7MDENG".to_owned()),
            }),
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
    }
}
