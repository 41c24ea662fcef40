//! The Test Connection: every capability a backup relies on, tried one by one against the real
//! storage, each step timed and, when it fails, classified with a stable code and a message that
//! names the fix.
//!
//! Steps, in order:
//!
//! 1. `assume_role` (a role), `check_keys` (access keys: STS GetCallerIdentity) or
//!    `vendor_credentials` (the default storage): build the client exactly as a backup does
//!    ([`crate::access::connect_with`]).
//! 2. `bucket_location`: GetBucketLocation, compared with the configured region (an empty
//!    answer means `us-east-1`, `EU` means `eu-west-1`).
//! 3. `put_probe`: PutObject of a unique key under `{prefix}/.coffer-probe/` with the configured
//!    encryption (SSE-KMS key and bucket key, or SSE-S3), so KMS permissions are tried too.
//! 4. `get_probe`: GetObject of the probe, compared byte for byte (and Decrypt tried for SSE-KMS).
//! 5. `list_prefix`: ListObjectsV2 under the prefix; the probe must be listed.
//! 6. `delete_probe`: DeleteObject of the probe.
//!
//! The test stops at the first failure: the steps after it are reported with `ok: false` and
//! code `skipped`, except `delete_probe`, which still runs (and is reported as it went) whenever
//! the probe object was written, so a failed test leaves nothing behind.
//!
//! Classification is the pure function [`classify`] over a [`StorageError`] (itself classified by
//! `StorageError::from_service`) and the step, which knows the IAM action and resource it needs:
//! an access denial names both, e.g. `s3:PutObject denied on arn:aws:s3:::bucket/prefix/*`.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use serde::Serialize;

use crate::access::{SessionIdentity, StorageAccess, StorageSpec, check_keys, connect_with};
use crate::client::{S3Settings, shared_http_client};
use crate::error::StorageError;
use crate::target::Encryption;

/// How long one step may take before it counts as unreachable.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The folder under the tenant's prefix where probe objects are written.
pub const PROBE_FOLDER: &str = ".coffer-probe";

/// The outcome of a connection test. Serializes as
/// `{ "ok": bool, "steps": [{ "name", "ok", "code", "message", "millis" }] }`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConnectionReport {
    /// Whether every step passed.
    pub ok: bool,
    /// The steps in the order they ran.
    pub steps: Vec<ProbeStep>,
}

impl ConnectionReport {
    /// The first failed step, if any.
    pub fn first_failure(&self) -> Option<&ProbeStep> {
        self.steps.iter().find(|s| !s.ok)
    }

    /// The step named `name`, if it is in the report.
    pub fn step(&self, name: &str) -> Option<&ProbeStep> {
        self.steps.iter().find(|s| s.name == name)
    }
}

/// One step of a connection test.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProbeStep {
    /// The step: `assume_role`, `check_keys`, `vendor_credentials`, `bucket_location`,
    /// `put_probe`, `get_probe`, `list_prefix` or `delete_probe`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// On failure, a stable code: see [`classify`]; `skipped` for a step not run because an
    /// earlier one failed.
    pub code: Option<String>,
    /// What happened; on failure, what to fix.
    pub message: String,
    /// How long the step took.
    pub millis: u64,
}

/// A step of the connection test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// AssumeRole into the customer's role.
    AssumeRole,
    /// Check the customer's access keys.
    CheckKeys,
    /// Check the vendor's own credentials.
    VendorCredentials,
    /// GetBucketLocation and compare the region.
    BucketLocation,
    /// PutObject of the probe.
    PutProbe,
    /// GetObject of the probe.
    GetProbe,
    /// ListObjectsV2 of the prefix.
    ListPrefix,
    /// DeleteObject of the probe.
    DeleteProbe,
}

impl Step {
    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Step::AssumeRole => "assume_role",
            Step::CheckKeys => "check_keys",
            Step::VendorCredentials => "vendor_credentials",
            Step::BucketLocation => "bucket_location",
            Step::PutProbe => "put_probe",
            Step::GetProbe => "get_probe",
            Step::ListPrefix => "list_prefix",
            Step::DeleteProbe => "delete_probe",
        }
    }

    /// The IAM action the step needs, and the resource it needs it on.
    pub fn permission(self, spec: &StorageSpec) -> Option<(&'static str, String)> {
        let bucket = format!("arn:aws:s3:::{}", spec.bucket);
        let objects = format!("arn:aws:s3:::{}/{}/*", spec.bucket, spec.prefix);
        match self {
            Step::AssumeRole => match &spec.access {
                StorageAccess::Role { role_arn } => Some(("sts:AssumeRole", role_arn.clone())),
                _ => None,
            },
            Step::CheckKeys | Step::VendorCredentials => None,
            Step::BucketLocation => Some(("s3:GetBucketLocation", bucket)),
            Step::PutProbe => Some(("s3:PutObject", objects)),
            Step::GetProbe => Some(("s3:GetObject", objects)),
            Step::ListPrefix => Some(("s3:ListBucket", bucket)),
            Step::DeleteProbe => Some(("s3:DeleteObject", objects)),
        }
    }

    /// The KMS action the step needs under SSE-KMS.
    fn kms_action(self) -> &'static str {
        match self {
            Step::GetProbe => "kms:Decrypt",
            _ => "kms:GenerateDataKey",
        }
    }
}

/// The region a GetBucketLocation answer means: none or empty is `us-east-1`, the legacy `EU`
/// is `eu-west-1`.
pub fn location_region(reported: Option<&str>) -> &str {
    match reported.map(str::trim) {
        None | Some("") => "us-east-1",
        Some("EU") => "eu-west-1",
        Some(region) => region,
    }
}

/// Compares the configured region with a GetBucketLocation answer. `Err` carries the code
/// `wrong_region` and a message naming the bucket's region.
pub fn compare_region(
    bucket: &str,
    configured: &str,
    reported: Option<&str>,
) -> Result<String, (String, String)> {
    let actual = location_region(reported);
    if actual == configured.trim() {
        Ok(format!("bucket {bucket:?} is in {actual}, as configured"))
    } else {
        Err((
            "wrong_region".to_owned(),
            format!(
                "bucket {bucket:?} is in {actual}, not in the configured region {configured}: set the storage's region to {actual}"
            ),
        ))
    }
}

/// Classifies a failed step: a stable code and a message that names the fix.
///
/// Codes: `trust_policy` (AssumeRole refused: trust policy or external id), `role_missing`,
/// `invalid_keys`, `bucket_missing`, `wrong_region`, `access_denied` (naming the action and
/// resource), `kms_key_missing`, `kms_key_disabled`, `kms_denied`, `endpoint_unreachable`,
/// `transient`, and the other codes of `StorageError::code`.
pub fn classify(
    step: Step,
    spec: &StorageSpec,
    who: &SessionIdentity,
    err: &StorageError,
) -> (String, String) {
    let code = err.code();
    let whose_policy = match &spec.access {
        StorageAccess::Vendor => "the vendor's IAM policy",
        StorageAccess::Role { .. } => "the role's permission policy",
        StorageAccess::AccessKeys { .. } => "the IAM user's policy",
    };
    let message = match err {
        StorageError::AssumeRoleDenied {
            role_arn,
            external_id,
            code: svc,
            message,
        } if code == "role_missing" => format!(
            "role {role_arn} cannot be assumed because it does not exist or its ARN is malformed ({svc}: {message}): check the role ARN, or create the role with deploy/aws/customer-role.cloudformation.yaml and external id {external_id:?}"
        ),
        StorageError::AssumeRoleDenied {
            role_arn,
            external_id,
            code: svc,
            message,
        } => format!(
            "AssumeRole on {role_arn} was refused ({svc}: {message}): the role's trust policy must allow Coffer's principal sts:AssumeRole with the condition StringEquals sts:ExternalId = {external_id:?} (the external id of tenant {tenant}; see `coffer storage policy`); STS gives the same answer when the role does not exist, so check the role ARN too",
            tenant = who.tenant
        ),
        StorageError::BadCredentials { op, code: svc } => match &spec.access {
            StorageAccess::AccessKeys { access_key_id, .. } => format!(
                "the access key {access_key_id} was refused on {op} ({svc}): the key id is unknown, deactivated or deleted, or the secret does not belong to it; create a new access key for the IAM user and set both the key id and the secret again"
            ),
            _ => format!(
                "Coffer's own credentials were refused on {op} ({svc}): the operator must fix the worker's AWS credentials"
            ),
        },
        StorageError::NoSuchBucket { bucket, .. } => format!(
            "bucket {bucket:?} does not exist: create it in {region}, or correct the bucket name in the storage configuration",
            region = spec.region
        ),
        StorageError::WrongRegion { bucket, code: svc } => format!(
            "bucket {bucket:?} is not in the configured region {region} ({svc}): set the storage's region to the bucket's region",
            region = spec.region
        ),
        StorageError::AccessDenied {
            code: svc, message, ..
        } => {
            let (action, resource) = step
                .permission(spec)
                .unwrap_or(("the request", spec.bucket.clone()));
            if message.to_ascii_lowercase().contains("explicit deny") {
                format!(
                    "{action} denied on {resource} by an explicit Deny ({svc}: {message}): remove or narrow the Deny statement in the bucket policy (or in {whose_policy}) so that it does not apply to Coffer on the tenant's prefix"
                )
            } else {
                format!(
                    "{action} denied on {resource} ({svc}: {message}): add it to {whose_policy} or the bucket policy (see `coffer storage policy`)"
                )
            }
        }
        StorageError::KmsKey {
            code: svc, message, ..
        } => {
            let key = match &spec.encryption {
                Encryption::SseKms { key_id, .. } => key_id.as_str(),
                Encryption::SseS3 => "(none configured)",
            };
            match code {
                "kms_key_missing" => format!(
                    "KMS key {key} does not exist in {region} ({svc}: {message}): set the storage's KMS key to the ARN of an existing key in the bucket's region, or use sse-s3",
                    region = spec.region
                ),
                "kms_key_disabled" => format!(
                    "KMS key {key} cannot be used in its state ({svc}: {message}): enable the key (or cancel its deletion), or choose another key"
                ),
                _ => format!(
                    "{action} refused on KMS key {key} ({svc}: {message}): the key policy must allow Coffer's principal, and {whose_policy} must allow kms:GenerateDataKey and kms:Decrypt on the key",
                    action = step.kms_action()
                ),
            }
        }
        StorageError::Unreachable { op, detail } => {
            let endpoint = spec
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("AWS in {}", spec.region));
            let detail: String = detail.chars().take(300).collect();
            format!(
                "cannot connect to {endpoint} for {op}: check the endpoint URL and region in the storage configuration, and that this host can reach it ({detail})"
            )
        }
        StorageError::Transient { op, detail } => format!(
            "{op} failed for a reason that may not last ({detail}): run the test again; if it keeps failing, check the endpoint and the service's health"
        ),
        other => other.to_string(),
    };
    (code.to_owned(), message)
}

/// Runs the connection test for `spec` acting for `who`; `base` carries the vendor's credentials
/// and the default endpoint. Never fails: every failure is a step of the report.
pub async fn test_connection(
    base: &S3Settings,
    spec: &StorageSpec,
    who: &SessionIdentity,
) -> ConnectionReport {
    let mut run = Run {
        spec,
        who,
        steps: Vec::new(),
    };
    let report = Box::pin(run.all(base)).await;
    tracing::info!(
        tenant = %who.tenant,
        access = spec.access.kind(),
        bucket = %spec.bucket,
        ok = report.ok,
        failed_step = report.first_failure().map(|s| s.name.as_str()),
        "storage connection test finished"
    );
    report
}

/// A failure inside a step: classified already, or a StorageError to classify.
enum Failure {
    Storage(StorageError),
    Other { code: &'static str, message: String },
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        Failure::Storage(e)
    }
}

struct Run<'a> {
    spec: &'a StorageSpec,
    who: &'a SessionIdentity,
    steps: Vec<ProbeStep>,
}

const AFTER_CLIENT: [Step; 5] = [
    Step::BucketLocation,
    Step::PutProbe,
    Step::GetProbe,
    Step::ListPrefix,
    Step::DeleteProbe,
];

impl Run<'_> {
    async fn all(&mut self, base: &S3Settings) -> ConnectionReport {
        let http = shared_http_client();
        let first = match &self.spec.access {
            StorageAccess::Vendor => Step::VendorCredentials,
            StorageAccess::Role { .. } => Step::AssumeRole,
            StorageAccess::AccessKeys { .. } => Step::CheckKeys,
        };
        let (spec, who) = (self.spec, self.who);
        let client = self
            .step(
                first,
                Box::pin(async {
                    if first == Step::VendorCredentials {
                        let settings = S3Settings {
                            region: spec.region.clone(),
                            endpoint: spec.endpoint_or(base).map(str::to_owned),
                            keys: base.keys.clone(),
                        };
                        check_keys(&settings.sdk_config_with(Some(&http)).await).await?;
                    }
                    let client = connect_with(base, spec, who, &http).await?;
                    let message = match &spec.access {
                        StorageAccess::Vendor => "the vendor's credentials are valid".to_owned(),
                        StorageAccess::Role { role_arn } => format!(
                            "assumed {role_arn} with external id {:?}, session narrowed to {}/{}",
                            who.external_id, spec.bucket, spec.prefix
                        ),
                        StorageAccess::AccessKeys { access_key_id, .. } => {
                            format!("the access key {access_key_id} is valid")
                        }
                    };
                    Ok((client, message))
                }),
            )
            .await;
        let Some(client) = client else {
            return self.finish(&AFTER_CLIENT);
        };

        let located = self
            .step(
                Step::BucketLocation,
                Box::pin(async {
                    let out = client
                        .get_bucket_location()
                        .bucket(&spec.bucket)
                        .send()
                        .await
                        .map_err(|e| {
                            StorageError::from_sdk("GetBucketLocation", &spec.bucket, e)
                        })?;
                    let reported = out.location_constraint().map(|c| c.as_str());
                    match compare_region(&spec.bucket, &spec.region, reported) {
                        Ok(message) => Ok(((), message)),
                        Err((_, message)) => Err(Failure::Other {
                            code: "wrong_region",
                            message,
                        }),
                    }
                }),
            )
            .await;
        if located.is_none() {
            return self.finish(&AFTER_CLIENT[1..]);
        }

        let key = format!(
            "{}/{PROBE_FOLDER}/{}",
            spec.prefix,
            uuid::Uuid::new_v4().simple()
        );
        let body = format!(
            "coffer connection test for tenant {} ({key}); safe to delete\n",
            who.tenant
        )
        .into_bytes();
        let put = self
            .step(
                Step::PutProbe,
                Box::pin(async {
                    let request = client
                        .put_object()
                        .bucket(&spec.bucket)
                        .key(&key)
                        .body(ByteStream::from(body.clone()));
                    let out = spec
                        .target()
                        .apply_to_put(request)
                        .send()
                        .await
                        .map_err(|e| StorageError::from_sdk("PutObject", &spec.bucket, e))?;
                    let sse = out
                        .server_side_encryption()
                        .map_or("no encryption reported", |s| s.as_str());
                    let kms = out
                        .ssekms_key_id()
                        .map(|k| format!(" with key {k}"))
                        .unwrap_or_default();
                    Ok(((), format!("wrote {key} ({sse}{kms})")))
                }),
            )
            .await;
        if put.is_none() {
            return self.finish(&AFTER_CLIENT[2..]);
        }

        let read = self
            .step(Step::GetProbe, Box::pin(async {
                let out = client
                    .get_object()
                    .bucket(&spec.bucket)
                    .key(&key)
                    .send()
                    .await
                    .map_err(|e| StorageError::from_sdk("GetObject", &spec.bucket, e))?;
                let got = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| StorageError::Transient {
                        op: "GetObject",
                        detail: format!("reading the body: {e}"),
                    })?;
                if got.into_bytes().as_ref() == body.as_slice() {
                    Ok(((), format!("read {key} back, {} bytes, identical", body.len())))
                } else {
                    Err(Failure::Other {
                        code: "probe_mismatch",
                        message: format!(
                            "the object read back from {key} differs from the one written: something rewrites objects under the prefix (replication, a Lambda, a proxy); Coffer's integrity checks would fail"
                        ),
                    })
                }
            }))
            .await;

        if read.is_some() {
            self.step(Step::ListPrefix, Box::pin(async {
                let folder = format!("{}/{PROBE_FOLDER}/", spec.prefix);
                let out = client
                    .list_objects_v2()
                    .bucket(&spec.bucket)
                    .prefix(&folder)
                    .send()
                    .await
                    .map_err(|e| StorageError::from_sdk("ListObjectsV2", &spec.bucket, e))?;
                let found = out.contents().iter().any(|o| o.key() == Some(key.as_str()));
                if found {
                    Ok(((), format!("listed {folder}: the probe is there")))
                } else {
                    Err(Failure::Other {
                        code: "probe_not_listed",
                        message: format!(
                            "listing {folder} did not show the probe just written: check that nothing filters listings (an access point or a proxy)"
                        ),
                    })
                }
            }))
            .await;
        } else {
            self.skip(Step::ListPrefix);
        }

        // Always clean up what was written, even after a failure.
        self.step(
            Step::DeleteProbe,
            Box::pin(async {
                client
                    .delete_object()
                    .bucket(&spec.bucket)
                    .key(&key)
                    .send()
                    .await
                    .map_err(|e| StorageError::from_sdk("DeleteObject", &spec.bucket, e))?;
                Ok(((), format!("deleted {key}")))
            }),
        )
        .await;
        self.finish(&[])
    }

    /// Runs one step with a timeout, records it, and returns its value on success.
    async fn step<T>(
        &mut self,
        step: Step,
        work: impl Future<Output = Result<(T, String), Failure>>,
    ) -> Option<T> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(STEP_TIMEOUT, work).await;
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (value, ok, code, message) = match outcome {
            Ok(Ok((value, message))) => (Some(value), true, None, message),
            Ok(Err(Failure::Storage(e))) => {
                let (code, message) = classify(step, self.spec, self.who, &e);
                (None, false, Some(code), message)
            }
            Ok(Err(Failure::Other { code, message })) => {
                (None, false, Some(code.to_owned()), message)
            }
            Err(_) => (
                None,
                false,
                Some("endpoint_unreachable".to_owned()),
                format!(
                    "no answer within {} s: check the endpoint URL and region in the storage configuration, and that this host can reach it",
                    STEP_TIMEOUT.as_secs()
                ),
            ),
        };
        tracing::info!(
            tenant = %self.who.tenant,
            step = step.name(),
            ok,
            code = code.as_deref(),
            millis,
            "storage connection test step"
        );
        self.steps.push(ProbeStep {
            name: step.name().to_owned(),
            ok,
            code,
            message,
            millis,
        });
        value
    }

    fn skip(&mut self, step: Step) {
        self.steps.push(ProbeStep {
            name: step.name().to_owned(),
            ok: false,
            code: Some("skipped".to_owned()),
            message: "not run: an earlier step failed".to_owned(),
            millis: 0,
        });
    }

    fn finish(&mut self, skipped: &[Step]) -> ConnectionReport {
        for step in skipped {
            self.skip(*step);
        }
        ConnectionReport {
            ok: self.steps.iter().all(|s| s.ok),
            steps: std::mem::take(&mut self.steps),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ServiceFailure;

    fn spec(access: StorageAccess, encryption: Encryption) -> StorageSpec {
        StorageSpec {
            region: "eu-west-1".into(),
            endpoint: None,
            bucket: "acme-backups".into(),
            prefix: "coffer/acme".into(),
            encryption,
            access,
        }
    }

    fn role() -> StorageAccess {
        StorageAccess::Role {
            role_arn: "arn:aws:iam::111122223333:role/coffer".into(),
        }
    }

    fn kms() -> Encryption {
        Encryption::SseKms {
            key_id: "arn:aws:kms:eu-west-1:111122223333:key/k1".into(),
            bucket_key: true,
        }
    }

    fn who() -> SessionIdentity {
        SessionIdentity {
            tenant: "acme".into(),
            external_id: "coffer-org-00D000000000001AAA".into(),
            job: "test".into(),
        }
    }

    fn service(op: &'static str, status: u16, code: &str, message: &str) -> StorageError {
        StorageError::from_service(
            op,
            "acme-backups",
            ServiceFailure {
                status,
                code: code.into(),
                message: message.into(),
            },
        )
    }

    #[test]
    fn regions_compare_with_the_legacy_answers_of_get_bucket_location() {
        assert!(compare_region("b", "us-east-1", None).is_ok());
        assert!(compare_region("b", "us-east-1", Some("")).is_ok());
        assert!(compare_region("b", "eu-west-1", Some("EU")).is_ok());
        assert!(compare_region("b", "eu-central-1", Some("eu-central-1")).is_ok());
        let (code, message) = compare_region("b", "us-east-1", Some("eu-west-2")).unwrap_err();
        assert_eq!(code, "wrong_region");
        assert!(
            message.contains("is in eu-west-2")
                && message.contains("set the storage's region to eu-west-2"),
            "{message}"
        );
        let (_, message) = compare_region("b", "eu-west-1", None).unwrap_err();
        assert!(message.contains("us-east-1"), "{message}");
    }

    #[test]
    fn an_access_denial_names_the_action_the_resource_and_whose_policy_to_fix() {
        let err = service("PutObject", 403, "AccessDenied", "Access Denied");
        let (code, message) = classify(Step::PutProbe, &spec(role(), kms()), &who(), &err);
        assert_eq!(code, "access_denied");
        assert!(
            message.starts_with("s3:PutObject denied on arn:aws:s3:::acme-backups/coffer/acme/*"),
            "{message}"
        );
        assert!(
            message.contains("role's permission policy or the bucket policy"),
            "{message}"
        );

        let keys = StorageAccess::AccessKeys {
            access_key_id: "AKIA1".into(),
            secret_access_key: "s".to_owned().into(),
        };
        let err = service(
            "ListObjectsV2",
            403,
            "AccessDenied",
            "User: arn:aws:iam::1:user/u is not authorized to perform: s3:ListBucket with an explicit deny in a resource-based policy",
        );
        let (code, message) = classify(Step::ListPrefix, &spec(keys, kms()), &who(), &err);
        assert_eq!(code, "access_denied");
        assert!(
            message.starts_with(
                "s3:ListBucket denied on arn:aws:s3:::acme-backups by an explicit Deny"
            ) && message.contains("bucket policy"),
            "{message}"
        );
    }

    #[test]
    fn assume_role_refusals_name_the_trust_policy_and_the_external_id() {
        let denied = StorageError::AssumeRoleDenied {
            role_arn: "arn:aws:iam::111122223333:role/coffer".into(),
            external_id: who().external_id,
            code: "AccessDenied".into(),
            message: "not authorized to perform: sts:AssumeRole".into(),
        };
        let (code, message) = classify(Step::AssumeRole, &spec(role(), kms()), &who(), &denied);
        assert_eq!(code, "trust_policy");
        assert!(
            message.contains("sts:ExternalId = \"coffer-org-00D000000000001AAA\"")
                && message.contains("trust policy"),
            "{message}"
        );
        let missing = StorageError::AssumeRoleDenied {
            role_arn: "arn:aws:iam::111122223333:role/coffer".into(),
            external_id: who().external_id,
            code: "NoSuchEntity".into(),
            message: "The role with name coffer cannot be found.".into(),
        };
        let (code, message) = classify(Step::AssumeRole, &spec(role(), kms()), &who(), &missing);
        assert_eq!(code, "role_missing");
        assert!(message.contains("check the role ARN"), "{message}");
    }

    #[test]
    fn kms_failures_are_told_apart_and_name_the_key() {
        let s = spec(role(), kms());
        let missing = service(
            "PutObject",
            400,
            "KMS.NotFoundException",
            "Invalid keyId 'k1'",
        );
        let (code, message) = classify(Step::PutProbe, &s, &who(), &missing);
        assert_eq!(code, "kms_key_missing");
        assert!(message.contains("key/k1 does not exist"), "{message}");
        let denied = service(
            "GetObject",
            403,
            "AccessDenied",
            "User: x is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:eu-west-1:111122223333:key/k1",
        );
        let (code, message) = classify(Step::GetProbe, &s, &who(), &denied);
        assert_eq!(code, "kms_denied");
        assert!(
            message.starts_with("kms:Decrypt refused on KMS key")
                && message.contains("key policy must allow"),
            "{message}"
        );
        let disabled = service("PutObject", 400, "KMS.DisabledException", "k1 is disabled.");
        assert_eq!(
            classify(Step::PutProbe, &s, &who(), &disabled).0,
            "kms_key_disabled"
        );
    }

    #[test]
    fn bad_keys_unreachable_endpoints_and_missing_buckets_name_their_fix() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let keys = StorageAccess::AccessKeys {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: secret.to_owned().into(),
        };
        let s = spec(keys, Encryption::SseS3);
        let bad = StorageError::BadCredentials {
            op: "sts:GetCallerIdentity",
            code: "SignatureDoesNotMatch".into(),
        };
        let (code, message) = classify(Step::CheckKeys, &s, &who(), &bad);
        assert_eq!(code, "invalid_keys");
        assert!(
            message.contains("AKIAEXAMPLE") && !message.contains(secret),
            "{message}"
        );

        let down = StorageError::Unreachable {
            op: "sts:GetCallerIdentity",
            detail: "Connection refused".into(),
        };
        let (code, message) = classify(Step::CheckKeys, &s, &who(), &down);
        assert_eq!(code, "endpoint_unreachable");
        assert!(message.contains("check the endpoint URL"), "{message}");

        let gone = service("GetBucketLocation", 404, "NoSuchBucket", "");
        let (code, message) = classify(Step::BucketLocation, &s, &who(), &gone);
        assert_eq!(code, "bucket_missing");
        assert!(message.contains("create it in eu-west-1"), "{message}");
    }

    #[test]
    fn the_report_serializes_as_documented() {
        let report = ConnectionReport {
            ok: false,
            steps: vec![ProbeStep {
                name: "assume_role".into(),
                ok: false,
                code: Some("trust_policy".into()),
                message: "m".into(),
                millis: 12,
            }],
        };
        let json = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({ "ok": false, "steps": [{ "name": "assume_role", "ok": false, "code": "trust_policy", "message": "m", "millis": 12 }] })
        );
    }
}
