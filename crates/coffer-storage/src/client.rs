//! Building S3 clients.
//!
//! One [`S3Settings`] describes how to reach an S3 endpoint. Against AWS the SDK's defaults
//! apply. Against an S3-compatible endpoint (`endpoint` set) the client uses path-style
//! addressing and sends the SDK's extra checksums only when an operation requires them: several
//! S3-compatible stores reject the SDK's default trailing checksums. Integrity does not depend on
//! that flag: the multipart writer sends its own Content-MD5 on every part and records a SHA-256
//! of the whole object.
//!
//! [`shared_http_client`] builds the one HTTP client (connection pool) that every tenant client of
//! a process should share (see `access::ClientCache`): idle connections are closed after
//! [`POOL_IDLE_TIMEOUT`], before S3 closes them (about 20 s), so a request never lands on a
//! connection the server already dropped.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder as HttpClientBuilder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
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

/// How long an idle pooled connection is kept. S3 closes idle connections after about 20 s
/// while hyper's default keeps them 90 s; reusing one S3 already closed fails the request
/// ("connection closed before message completed").
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// A new HTTP client (one connection pool) for SDK clients to share: rustls with aws-lc like the
/// SDK's default client, the proxy from the environment (`HTTPS_PROXY`, `NO_PROXY`) as the
/// SDK's default does, and idle connections closed after [`POOL_IDLE_TIMEOUT`].
///
/// Build it once per process (and runtime) and hand it to every client through
/// [`S3Settings::sdk_config_with`]: clients with the same timeout settings then share one pool.
pub fn shared_http_client() -> SharedHttpClient {
    // The SDK builds its own default client the same way (aws-smithy-runtime `default_https_client`);
    // only the idle timeout differs.
    HttpClientBuilder::new().build_with_connector_fn(|settings, components| {
        let mut builder = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .pool_idle_timeout(POOL_IDLE_TIMEOUT);
        builder.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            builder.set_sleep_impl(components.sleep_impl());
        }
        builder.set_proxy_config(Some(ProxyConfig::from_env()));
        builder.build()
    })
}

impl S3Settings {
    /// The shared SDK configuration (region, endpoint, credentials) for S3 and KMS clients, with
    /// a fresh HTTP client of the SDK's defaults.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        self.sdk_config_with(None).await
    }

    /// [`S3Settings::sdk_config`] using `http` (see [`shared_http_client`]) instead of a new
    /// HTTP client, so clients share its connection pool.
    pub async fn sdk_config_with(&self, http: Option<&SharedHttpClient>) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()));
        if let Some(http) = http {
            loader = loader.http_client(http.clone());
        }
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
