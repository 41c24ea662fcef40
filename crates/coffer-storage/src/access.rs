//! Reaching a tenant's storage: the vendor's bucket, a customer's bucket through a role in their
//! account, or a customer's bucket with their access keys.
//!
//! [`connect`] turns a [`StorageSpec`] (what the catalog says about the storage) and a
//! [`SessionIdentity`] (who the session acts for) into an S3 client:
//!
//! - [`StorageAccess::Vendor`]: the vendor's own credentials from the base settings, in the
//!   storage's region and endpoint.
//! - [`StorageAccess::Role`]: STS AssumeRole with the vendor's credentials, the tenant's external
//!   id, a session name carrying tenant and job, and a session policy narrowed to the storage's
//!   bucket and prefix (`coffer_core::policy::session_policy`), so the session reaches nothing
//!   else even when the customer's role allows more. The role is assumed once when the client is
//!   built (a misconfigured role fails here, classified); the SDK's identity cache assumes it
//!   again shortly before the temporary credentials expire, for as long as the client is used.
//! - [`StorageAccess::AccessKeys`]: the customer's static keys. They are checked when the client
//!   is built (STS GetCallerIdentity, which needs no permission), so wrong keys fail fast with
//!   [`StorageError::BadCredentials`]; the secret never appears in an error or a log.
//!
//! Every client has its own retry partition per tenant: one tenant's throttling cannot drain the
//! retry budget of the others.
//!
//! [`ClientCache`] keeps one client per tenant storage and shares one HTTP connection pool
//! (`client::shared_http_client`, idle connections closed after 15 s, before S3 closes them)
//! among all of them. Use one cache per process, inside one Tokio runtime: pooled connections
//! belong to the runtime that opened them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryPartition;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::S3Client;
use crate::client::{S3Settings, StaticKeys, shared_http_client};
use crate::credentials::{RoleAccess, role_client_with, session_name};
use crate::error::StorageError;
use crate::target::{BucketTarget, Encryption};

/// Lifetime asked for assumed-role credentials: one hour, the most STS allows when the worker
/// itself runs under a role (role chaining). The SDK refreshes them before they expire.
pub const ROLE_SESSION_DURATION: Duration = Duration::from_secs(3600);

/// How Coffer authenticates to a storage.
#[derive(Debug, Clone)]
pub enum StorageAccess {
    /// The vendor's own credentials (the default storage).
    Vendor,
    /// AssumeRole into the customer's role.
    Role {
        /// `arn:aws:iam::<account>:role/<name>`.
        role_arn: String,
    },
    /// The customer's access keys (an IAM user of theirs).
    AccessKeys {
        /// Access key id (not secret; appears in the customer's CloudTrail).
        access_key_id: String,
        /// The secret access key; `Debug` prints `[REDACTED]`.
        secret_access_key: SecretString,
    },
}

impl StorageAccess {
    /// `vendor`, `role` or `access_keys`.
    pub fn kind(&self) -> &'static str {
        match self {
            StorageAccess::Vendor => "vendor",
            StorageAccess::Role { .. } => "role",
            StorageAccess::AccessKeys { .. } => "access_keys",
        }
    }
}

/// Everything needed to reach one storage and write to it.
#[derive(Debug, Clone)]
pub struct StorageSpec {
    /// The bucket's region, e.g. `eu-west-1`.
    pub region: String,
    /// An S3-compatible endpoint; `None` means the base settings' endpoint (AWS when that is
    /// `None` too).
    pub endpoint: Option<String>,
    /// Bucket name.
    pub bucket: String,
    /// The key prefix Coffer writes under, without a trailing `/` (e.g. `{base_path}/{tenant}`).
    pub prefix: String,
    /// Server-side encryption of every object written.
    pub encryption: Encryption,
    /// How to authenticate.
    pub access: StorageAccess,
}

impl StorageSpec {
    /// The bucket and encryption new objects get.
    pub fn target(&self) -> BucketTarget {
        BucketTarget {
            bucket: self.bucket.clone(),
            encryption: self.encryption.clone(),
        }
    }

    /// The endpoint used: the spec's, else the base settings'.
    pub fn endpoint_or<'a>(&'a self, base: &'a S3Settings) -> Option<&'a str> {
        self.endpoint.as_deref().or(base.endpoint.as_deref())
    }
}

/// Who a session acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionIdentity {
    /// The tenant id (in the session name and the retry partition).
    pub tenant: String,
    /// The external id presented to AssumeRole, derived by the caller from the tenant record
    /// with `coffer_core::policy::external_id` (never taken from a message).
    pub external_id: String,
    /// The job (in the session name, for the customer's CloudTrail).
    pub job: String,
}

/// An S3 client for `spec`, acting for `who`; `base` carries the vendor's credentials and the
/// default endpoint. Builds its own HTTP client: a long-running process should use
/// [`ClientCache`], which shares one pool.
pub async fn connect(
    base: &S3Settings,
    spec: &StorageSpec,
    who: &SessionIdentity,
) -> Result<S3Client, StorageError> {
    connect_with(base, spec, who, &shared_http_client()).await
}

/// [`connect`] over the given HTTP client (connection pool).
pub async fn connect_with(
    base: &S3Settings,
    spec: &StorageSpec,
    who: &SessionIdentity,
    http: &SharedHttpClient,
) -> Result<S3Client, StorageError> {
    let endpoint = spec.endpoint_or(base).map(str::to_owned);
    let partition = RetryPartition::new(format!("coffer-tenant-{}", who.tenant));
    match &spec.access {
        StorageAccess::Vendor => {
            let settings = S3Settings {
                region: spec.region.clone(),
                endpoint,
                keys: base.keys.clone(),
            };
            let shared = settings.sdk_config_with(Some(http)).await;
            let config = settings
                .s3_config_builder(&shared)
                .retry_partition(partition)
                .build();
            tracing::debug!(tenant = %who.tenant, bucket = %spec.bucket, "storage client with vendor credentials");
            Ok(S3Client::from_conf(config))
        }
        StorageAccess::Role { role_arn } => {
            let settings = S3Settings {
                region: spec.region.clone(),
                endpoint,
                keys: base.keys.clone(),
            };
            let access = RoleAccess {
                role_arn: role_arn.clone(),
                external_id: who.external_id.clone(),
                session_name: session_name(&who.tenant, &who.job),
                session_policy: Some(coffer_core::policy::session_policy(
                    &spec.bucket,
                    &spec.prefix,
                )),
                duration: ROLE_SESSION_DURATION,
            };
            let client = role_client_with(&settings, access, &who.tenant, Some(http)).await?;
            tracing::debug!(tenant = %who.tenant, role_arn = %role_arn, bucket = %spec.bucket, "storage client with an assumed role");
            Ok(client)
        }
        StorageAccess::AccessKeys {
            access_key_id,
            secret_access_key,
        } => {
            let settings = S3Settings {
                region: spec.region.clone(),
                endpoint,
                keys: Some(StaticKeys {
                    access_key_id: access_key_id.clone(),
                    secret_access_key: secret_access_key.clone(),
                }),
            };
            let shared = settings.sdk_config_with(Some(http)).await;
            check_keys(&shared).await?;
            let config = settings
                .s3_config_builder(&shared)
                .retry_partition(partition)
                .build();
            tracing::debug!(tenant = %who.tenant, access_key_id = %access_key_id, bucket = %spec.bucket, "storage client with the tenant's access keys");
            Ok(S3Client::from_conf(config))
        }
    }
}

/// What [`check_keys`] learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    /// STS knows the keys: the ARN of their IAM user.
    Valid {
        /// `arn:aws:iam::<account>:user/<name>`.
        arn: String,
    },
    /// The endpoint has no STS (an S3-compatible store); the keys are checked by the first S3
    /// call instead.
    Unchecked {
        /// What the endpoint answered.
        reason: String,
    },
}

/// Checks static keys with STS GetCallerIdentity, which any valid key may call. An unknown key
/// id or a wrong secret is [`StorageError::BadCredentials`] (its message never contains the
/// secret); an endpoint without STS gives [`KeyCheck::Unchecked`].
pub async fn check_keys(shared: &aws_config::SdkConfig) -> Result<KeyCheck, StorageError> {
    let sts = aws_sdk_sts::Client::new(shared);
    match sts.get_caller_identity().send().await {
        Ok(out) => Ok(KeyCheck::Valid {
            arn: out.arn().unwrap_or_default().to_owned(),
        }),
        Err(e) => {
            let code = e
                .as_service_error()
                .and_then(|se| se.code())
                .map(str::to_owned);
            match code.as_deref() {
                Some(
                    c @ ("InvalidClientTokenId"
                    | "SignatureDoesNotMatch"
                    | "InvalidAccessKeyId"
                    | "UnrecognizedClientException"
                    | "AuthFailure"),
                ) => Err(StorageError::BadCredentials {
                    op: "sts:GetCallerIdentity",
                    code: c.to_owned(),
                }),
                Some("ExpiredToken") => Err(StorageError::BadCredentials {
                    op: "sts:GetCallerIdentity",
                    code: "ExpiredToken".to_owned(),
                }),
                Some(other) => Ok(KeyCheck::Unchecked {
                    reason: format!("sts:GetCallerIdentity answered {other}"),
                }),
                None => match e {
                    SdkError::DispatchFailure(d) if !d.is_timeout() => {
                        Err(StorageError::Unreachable {
                            op: "sts:GetCallerIdentity",
                            detail: format!("connection failed: {d:?}"),
                        })
                    }
                    SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                        Err(StorageError::Transient {
                            op: "sts:GetCallerIdentity",
                            detail: "request timed out".to_owned(),
                        })
                    }
                    other => Ok(KeyCheck::Unchecked {
                        reason: format!(
                            "sts:GetCallerIdentity failed without an error code (HTTP {})",
                            other.raw_response().map_or(0, |r| r.status().as_u16())
                        ),
                    }),
                },
            }
        }
    }
}

/// What identifies one cached client: everything that changes the credentials, the session or
/// where requests go. Holds a digest of a secret key, never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    kind: &'static str,
    /// Role ARN, access key id, or empty for the vendor.
    principal: String,
    /// SHA-256 of the secret access key (a corrected secret gives a new client).
    secret_digest: Option<[u8; 32]>,
    external_id: String,
    tenant: String,
    region: String,
    endpoint: Option<String>,
    /// The session policy names bucket and prefix.
    bucket: String,
    prefix: String,
}

impl CacheKey {
    fn new(base: &S3Settings, spec: &StorageSpec, who: &SessionIdentity) -> CacheKey {
        let (principal, secret_digest) = match &spec.access {
            StorageAccess::Vendor => (String::new(), None),
            StorageAccess::Role { role_arn } => (role_arn.clone(), None),
            StorageAccess::AccessKeys {
                access_key_id,
                secret_access_key,
            } => (
                access_key_id.clone(),
                Some(Sha256::digest(secret_access_key.expose_secret().as_bytes()).into()),
            ),
        };
        CacheKey {
            kind: spec.access.kind(),
            principal,
            secret_digest,
            external_id: who.external_id.clone(),
            tenant: who.tenant.clone(),
            region: spec.region.clone(),
            endpoint: spec.endpoint_or(base).map(str::to_owned),
            bucket: spec.bucket.clone(),
            prefix: spec.prefix.clone(),
        }
    }
}

/// One S3 client per tenant storage (role, keys, external id, region, endpoint, bucket and
/// prefix), all over one shared HTTP connection pool.
///
/// A role's client keeps refreshing its credentials before they expire, so a cached client stays
/// usable for as long as the role trusts Coffer. The session name of a cached role client names
/// the job that built it. A client whose storage changed is simply never asked for again (the key
/// changes); [`ClientCache::invalidate`] drops one explicitly, e.g. after a failed job on
/// revoked credentials.
pub struct ClientCache {
    base: S3Settings,
    http: SharedHttpClient,
    clients: Mutex<HashMap<CacheKey, S3Client>>,
}

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCache")
            .field("base", &self.base)
            .field("clients", &self.len())
            .finish_non_exhaustive()
    }
}

impl ClientCache {
    /// An empty cache over a new shared HTTP client; `base` carries the vendor's credentials and
    /// the default endpoint.
    pub fn new(base: S3Settings) -> ClientCache {
        ClientCache {
            base,
            http: shared_http_client(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The vendor's settings the cache was built with.
    pub fn base(&self) -> &S3Settings {
        &self.base
    }

    /// The HTTP client every cached client uses.
    pub fn http_client(&self) -> &SharedHttpClient {
        &self.http
    }

    /// The client for `spec` acting for `who`, built (and, for a role, assumed) on first use.
    /// A failure is not cached: the next call tries again.
    pub async fn client(
        &self,
        spec: &StorageSpec,
        who: &SessionIdentity,
    ) -> Result<S3Client, StorageError> {
        let key = CacheKey::new(&self.base, spec, who);
        if let Some(client) = self.lock().get(&key) {
            return Ok(client.clone());
        }
        // Built outside the lock; two concurrent first uses may both build, one is kept.
        let client = connect_with(&self.base, spec, who, &self.http).await?;
        Ok(self.lock().entry(key).or_insert(client).clone())
    }

    /// Forgets the client for `spec` and `who`, if any.
    pub fn invalidate(&self, spec: &StorageSpec, who: &SessionIdentity) -> bool {
        self.lock()
            .remove(&CacheKey::new(&self.base, spec, who))
            .is_some()
    }

    /// How many clients are cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no client is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, S3Client>> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(access: StorageAccess) -> StorageSpec {
        StorageSpec {
            region: "eu-west-1".into(),
            endpoint: None,
            bucket: "b".into(),
            prefix: "base/acme".into(),
            encryption: Encryption::SseS3,
            access,
        }
    }

    fn who(external_id: &str) -> SessionIdentity {
        SessionIdentity {
            tenant: "acme".into(),
            external_id: external_id.into(),
            job: "j1".into(),
        }
    }

    fn base() -> S3Settings {
        S3Settings {
            region: "us-east-1".into(),
            endpoint: Some("http://127.0.0.1:4566".into()),
            keys: None,
        }
    }

    #[test]
    fn debug_output_never_shows_a_secret_key() {
        let s = spec(StorageAccess::AccessKeys {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: SecretString::from("wJalrXUtnFEMI/K7MDENG".to_owned()),
        });
        let shown = format!("{s:?}");
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
        assert!(shown.contains("AKIAEXAMPLE"));
        let key = format!("{:?}", CacheKey::new(&base(), &s, &who("x")));
        assert!(!key.contains("wJalrXUtnFEMI"), "{key}");
    }

    #[test]
    fn cache_keys_separate_tenants_roles_secrets_and_places() {
        let role = |arn: &str| {
            spec(StorageAccess::Role {
                role_arn: arn.into(),
            })
        };
        let keys = |secret: &str| {
            spec(StorageAccess::AccessKeys {
                access_key_id: "AKIA1".into(),
                secret_access_key: SecretString::from(secret.to_owned()),
            })
        };
        let k = |s: &StorageSpec, ext: &str| CacheKey::new(&base(), s, &who(ext));
        assert_eq!(k(&role("r1"), "e1"), k(&role("r1"), "e1"));
        assert_ne!(k(&role("r1"), "e1"), k(&role("r2"), "e1"));
        assert_ne!(k(&role("r1"), "e1"), k(&role("r1"), "e2"));
        assert_ne!(k(&keys("s1"), "e1"), k(&keys("s2"), "e1"));
        let mut moved = role("r1");
        moved.prefix = "other/acme".into();
        assert_ne!(k(&role("r1"), "e1"), k(&moved, "e1"));
        let mut elsewhere = role("r1");
        elsewhere.region = "us-west-2".into();
        assert_ne!(k(&role("r1"), "e1"), k(&elsewhere, "e1"));
        // The job only names the session; it does not make a new client.
        let mut other_job = who("e1");
        other_job.job = "j2".into();
        assert_eq!(
            CacheKey::new(&base(), &role("r1"), &who("e1")),
            CacheKey::new(&base(), &role("r1"), &other_job)
        );
    }

    #[test]
    fn the_spec_endpoint_wins_over_the_base_endpoint() {
        let mut s = spec(StorageAccess::Vendor);
        assert_eq!(s.endpoint_or(&base()), Some("http://127.0.0.1:4566"));
        s.endpoint = Some("https://s3.example".into());
        assert_eq!(s.endpoint_or(&base()), Some("https://s3.example"));
    }
}
