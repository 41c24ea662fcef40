//! Reaching a customer's bucket through a role in their account.
//!
//! The worker calls STS AssumeRole with its own (vendor) credentials, presenting the tenant's
//! external id, a session name carrying tenant and job (for the customer's CloudTrail), and a
//! session policy that narrows the session to the tenant's prefix even if the customer's role
//! allows more. The first AssumeRole happens when the client is built, so a misconfigured role
//! fails fast with a classified error that names the fix; later refreshes happen in the SDK's
//! identity cache before the temporary credentials expire.
//!
//! The credentials of that first AssumeRole are handed to the SDK's identity cache (so the first
//! request does not assume the role a second time); the cache (`IdentityCache::lazy`, the SDK's
//! default) calls AssumeRole again shortly before they expire, for as long as the client lives.
//!
//! Every tenant client gets its own retry partition, so one tenant's throttling cannot drain the
//! retry budget of the others (the SDK's default partition is shared per service and region).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{
    ProvideCredentials, SharedCredentialsProvider, error::CredentialsError, future,
};
use aws_sdk_s3::config::retry::RetryPartition;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use crate::client::S3Settings;
use crate::error::StorageError;

/// The role to assume for a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAccess {
    /// `arn:aws:iam::<account>:role/<name>` in the customer's account.
    pub role_arn: String,
    /// The tenant's external id (from the tenant record, never from a message).
    pub external_id: String,
    /// Session name, `[\w+=,.@-]{2,64}`; built by [`session_name`].
    pub session_name: String,
    /// Session policy (JSON) narrowing the session; see `coffer_core::policy::session_policy`.
    pub session_policy: Option<String>,
    /// Lifetime of the temporary credentials (15 min to the role's maximum; 1 h when chained).
    pub duration: Duration,
}

/// A session name for CloudTrail: `coffer-{tenant}-{job}`, cut to STS's 64 characters and limited
/// to the characters STS accepts.
pub fn session_name(tenant: &str, job: &str) -> String {
    let raw = format!("coffer-{tenant}-{job}");
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(*c))
        .take(64)
        .collect()
}

/// Credentials from AssumeRole, fetched again whenever the SDK's cache asks (before expiry).
#[derive(Debug, Clone)]
struct AssumedRole {
    sts: aws_sdk_sts::Client,
    access: RoleAccess,
    /// The credentials of the AssumeRole made when the client was built, served once.
    primed: Arc<Mutex<Option<Credentials>>>,
}

impl AssumedRole {
    async fn assume(&self) -> Result<Credentials, StorageError> {
        let a = &self.access;
        let out = self
            .sts
            .assume_role()
            .role_arn(&a.role_arn)
            .role_session_name(&a.session_name)
            .external_id(&a.external_id)
            .set_policy(a.session_policy.clone())
            .duration_seconds(a.duration.as_secs().clamp(900, 43_200) as i32)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let c = out
            .credentials()
            .ok_or_else(|| StorageError::InvalidRequest {
                op: "sts:AssumeRole",
                detail: "no credentials in the response".to_owned(),
            })?;
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        tracing::debug!(role_arn = %a.role_arn, session = %a.session_name, "assumed tenant role");
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            expiry,
            "coffer-assume-role",
        ))
    }

    fn classify<E, R>(&self, e: SdkError<E, R>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        if let SdkError::DispatchFailure(d) = &e
            && !d.is_timeout()
        {
            return StorageError::Unreachable {
                op: "sts:AssumeRole",
                detail: format!("connection failed: {d:?}"),
            };
        }
        // The vendor's own keys were refused: not the customer's doing.
        if let Some(code) = e.as_service_error().and_then(|se| se.code())
            && matches!(
                code,
                "InvalidClientTokenId" | "SignatureDoesNotMatch" | "UnrecognizedClientException"
            )
        {
            return StorageError::BadCredentials {
                op: "sts:AssumeRole",
                code: code.to_owned(),
            };
        }
        let denied = e.as_service_error().and_then(|se| {
            let code = se.code().unwrap_or("Unknown");
            matches!(
                code,
                "AccessDenied" | "AccessDeniedException" | "NoSuchEntity" | "ValidationError"
            )
            .then(|| (code.to_owned(), se.message().unwrap_or("").to_owned()))
        });
        match denied {
            Some((code, message)) => StorageError::AssumeRoleDenied {
                role_arn: self.access.role_arn.clone(),
                external_id: self.access.external_id.clone(),
                code,
                message,
            },
            None => StorageError::Transient {
                op: "sts:AssumeRole",
                detail: format!("{e:?}"),
            },
        }
    }
}

impl ProvideCredentials for AssumedRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let primed = self
                .primed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(credentials) = primed {
                return Ok(credentials);
            }
            self.assume()
                .await
                .map_err(CredentialsError::provider_error)
        })
    }
}

/// An S3 client that acts as the tenant's role. `base` carries the vendor's own credentials
/// (used for STS), the region and the endpoint; `partition` isolates the client's retries.
pub async fn role_client(
    base: &S3Settings,
    access: RoleAccess,
    partition: &str,
) -> Result<aws_sdk_s3::Client, StorageError> {
    role_client_with(base, access, partition, None).await
}

/// [`role_client`] over a shared HTTP client (see `client::shared_http_client`), used for STS
/// and S3 alike.
pub async fn role_client_with(
    base: &S3Settings,
    access: RoleAccess,
    partition: &str,
    http: Option<&SharedHttpClient>,
) -> Result<aws_sdk_s3::Client, StorageError> {
    let shared = base.sdk_config_with(http).await;
    let provider = AssumedRole {
        sts: aws_sdk_sts::Client::new(&shared),
        access,
        primed: Arc::default(),
    };
    let first = provider.assume().await?;
    *provider
        .primed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(first);
    let config = base
        .s3_config_builder(&shared)
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .retry_partition(RetryPartition::new(format!("coffer-tenant-{partition}")))
        .build();
    Ok(aws_sdk_s3::Client::from_conf(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_fit_sts_rules() {
        let name = session_name("acme", "0190f5b4-6b8e-7c3a-9d2e-1f0a2b3c4d5e");
        assert!(name.len() <= 64);
        assert!(name.starts_with("coffer-acme-0190f5b4"));
        let odd = session_name("a b/c", &"x".repeat(100));
        assert!(odd.len() == 64 && !odd.contains(' ') && !odd.contains('/'));
    }
}
