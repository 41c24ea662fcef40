//! [`StorageError`]: every failure of an S3 or KMS call, classified.
//!
//! Classification is one pure function, [`StorageError::from_service`], over the error code and
//! HTTP status, so it is unit-tested without a network. Misconfigurations a customer can cause
//! (a missing bucket, a denied action, an unknown KMS key, wrong keys, the wrong region) are
//! permanent and their messages say what to fix. Throttling, 5xx and network failures are
//! retryable.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use coffer_core::{Classify, ErrorClass};

/// A failed storage operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The bucket does not exist.
    #[error(
        "bucket {bucket:?} does not exist ({op}): create it, or correct the bucket name in the tenant's storage configuration"
    )]
    NoSuchBucket {
        /// The operation that failed.
        op: &'static str,
        /// The bucket named in the request.
        bucket: String,
    },
    /// The credentials are valid but not allowed to do this. The message names the IAM
    /// permission the operation needs ([`iam_permission`]).
    #[error(
        "access denied on {op} in bucket {bucket:?} ({code}: {message}): the bucket policy or the role's permission policy must allow {permission} on the tenant's prefix (see `coffer storage policy`)",
        permission = iam_permission(op)
    )]
    AccessDenied {
        /// The operation that failed.
        op: &'static str,
        /// The bucket named in the request.
        bucket: String,
        /// The service's error code.
        code: String,
        /// The service's message.
        message: String,
    },
    /// The KMS key is unknown, disabled, or not usable by our credentials.
    #[error(
        "the KMS key cannot be used for {op} in bucket {bucket:?} ({code}: {message}): set the tenant's key id to an existing, enabled key whose policy allows kms:GenerateDataKey and kms:Decrypt"
    )]
    KmsKey {
        /// The operation that failed.
        op: &'static str,
        /// The bucket named in the request.
        bucket: String,
        /// The service's error code.
        code: String,
        /// The service's message.
        message: String,
    },
    /// The credentials themselves are wrong (unknown key id, bad secret).
    #[error(
        "the storage credentials were refused on {op} ({code}): check the access key id and secret (or the role) configured for this tenant"
    )]
    BadCredentials {
        /// The operation that failed.
        op: &'static str,
        /// The service's error code.
        code: String,
    },
    /// The customer's role refused to be assumed (trust policy, external id, or a wrong ARN).
    #[error(
        "cannot assume role {role_arn:?} with external id {external_id:?} ({code}: {message}): the role's trust policy must allow Coffer's principal to call sts:AssumeRole with the condition sts:ExternalId = {external_id:?}; check the role ARN and the trust policy (see `coffer storage policy`)"
    )]
    AssumeRoleDenied {
        /// The role.
        role_arn: String,
        /// The external id presented (not a secret: the customer puts it in the trust policy).
        external_id: String,
        /// The service's error code.
        code: String,
        /// The service's message.
        message: String,
    },
    /// The bucket lives in another region than configured.
    #[error(
        "bucket {bucket:?} is not in the configured region ({code}): set the tenant's storage region to the bucket's region"
    )]
    WrongRegion {
        /// The bucket named in the request.
        bucket: String,
        /// The service's error code.
        code: String,
    },
    /// No connection could be made to the endpoint (refused, DNS, TLS): retryable for a job, but
    /// for a connection test usually a wrong endpoint URL or region.
    #[error(
        "cannot reach the storage endpoint on {op} ({detail}): check the endpoint URL and region in the tenant's storage configuration, and that this host can reach it"
    )]
    Unreachable {
        /// The operation that failed.
        op: &'static str,
        /// What the connector said.
        detail: String,
    },
    /// A transient failure: throttling, a 5xx, a timeout or a broken connection.
    #[error("transient storage failure on {op}: {detail}")]
    Transient {
        /// The operation that failed.
        op: &'static str,
        /// What happened.
        detail: String,
    },
    /// Any other refusal by the service.
    #[error("{op} refused with HTTP {status} {code}: {message}")]
    Refused {
        /// The operation that failed.
        op: &'static str,
        /// HTTP status.
        status: u16,
        /// The service's error code.
        code: String,
        /// The service's message.
        message: String,
    },
    /// The request could not be built (a bug or invalid input, never a network problem).
    #[error("invalid {op} request: {detail}")]
    InvalidRequest {
        /// The operation that failed.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A conditional create found an object already at the key (`If-None-Match: *` failed).
    #[error(
        "object {key:?} already exists in bucket {bucket:?}; Coffer does not overwrite a stored object: if it belongs to an interrupted attempt of the same backup, the backup removes it before writing again"
    )]
    ObjectExists {
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
    },
    /// An object read back does not match its recorded size or checksum.
    #[error(
        "object {key:?} in bucket {bucket:?} does not match the catalog: expected {expected}, read {actual}; the stored copy is damaged or was replaced outside Coffer (run `coffer verify`)"
    )]
    Corrupt {
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
        /// What the catalog recorded (size and SHA-256).
        expected: String,
        /// What was read.
        actual: String,
    },
    /// An object would exceed the 10,000-part multipart limit at the configured part size.
    #[error(
        "object {key:?} would need more than 10000 parts of {part_size} bytes; raise the part size or split the object"
    )]
    TooManyParts {
        /// The object key.
        key: String,
        /// The part size in use.
        part_size: usize,
    },
}

impl Classify for StorageError {
    fn class(&self) -> ErrorClass {
        match self {
            StorageError::Transient { .. } | StorageError::Unreachable { .. } => {
                ErrorClass::Retryable
            }
            // Two conditional writes raced on one key; the loser may try again.
            StorageError::Refused {
                status: 409, code, ..
            } if code == "ConditionalRequestConflict" => ErrorClass::Retryable,
            StorageError::Refused { status, .. } if *status >= 500 || *status == 429 => {
                ErrorClass::Retryable
            }
            _ => ErrorClass::Permanent,
        }
    }
}

/// What the service said, stripped of SDK types.
#[derive(Debug, Clone, Default)]
pub struct ServiceFailure {
    /// HTTP status (0 when unknown).
    pub status: u16,
    /// Error code, e.g. `NoSuchBucket`.
    pub code: String,
    /// Error message.
    pub message: String,
}

const RETRYABLE_CODES: &[&str] = &[
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "ExpiredToken",
    "KMS.ThrottlingException",
    "KMS.KMSInternalException",
];

/// KMS error codes meaning the key does not exist (as S3 relays them, or KMS itself).
const KMS_MISSING_CODES: &[&str] = &[
    "KMS.NotFoundException",
    "NotFoundException",
    "InvalidKeyId",
    "KMS.InvalidArnException",
];

/// KMS error codes meaning the key exists but cannot be used in its state.
const KMS_DISABLED_CODES: &[&str] = &[
    "KMS.DisabledException",
    "DisabledException",
    "KMS.KMSInvalidStateException",
    "KMSInvalidStateException",
    "KMS.InvalidKeyUsageException",
];

impl StorageError {
    /// A stable, machine-readable code for this failure (shown by the connection test and kept
    /// in the catalog): `bucket_missing`, `access_denied`, `kms_key_missing`,
    /// `kms_key_disabled`, `kms_denied`, `invalid_keys`, `trust_policy`, `role_missing`,
    /// `wrong_region`, `endpoint_unreachable`, `transient`, `refused`, `invalid_request`,
    /// `object_exists`, `corrupt`, `too_many_parts`.
    pub fn code(&self) -> &'static str {
        match self {
            StorageError::NoSuchBucket { .. } => "bucket_missing",
            StorageError::AccessDenied { .. } => "access_denied",
            StorageError::KmsKey { code, .. } if KMS_MISSING_CODES.contains(&code.as_str()) => {
                "kms_key_missing"
            }
            StorageError::KmsKey { code, .. } if KMS_DISABLED_CODES.contains(&code.as_str()) => {
                "kms_key_disabled"
            }
            StorageError::KmsKey { .. } => "kms_denied",
            StorageError::BadCredentials { .. } => "invalid_keys",
            StorageError::AssumeRoleDenied { code, message, .. } => {
                if assume_role_target_missing(code, message) {
                    "role_missing"
                } else {
                    "trust_policy"
                }
            }
            StorageError::WrongRegion { .. } => "wrong_region",
            StorageError::Unreachable { .. } => "endpoint_unreachable",
            StorageError::Transient { .. } => "transient",
            StorageError::Refused { .. } => "refused",
            StorageError::InvalidRequest { .. } => "invalid_request",
            StorageError::ObjectExists { .. } => "object_exists",
            StorageError::Corrupt { .. } => "corrupt",
            StorageError::TooManyParts { .. } => "too_many_parts",
        }
    }

    /// Classifies a service's answer. Pure, so it is tested without a network.
    pub fn from_service(op: &'static str, bucket: &str, f: ServiceFailure) -> StorageError {
        let bucket = bucket.to_owned();
        let ServiceFailure {
            status,
            code,
            message,
        } = f;
        // S3 relays KMS failures as `KMS.*` codes, or as AccessDenied naming a `kms:` action.
        let is_kms = code.starts_with("KMS")
            || message.contains("KMS")
            || message.contains("kms:")
            || code.contains("Kms");
        match code.as_str() {
            "NoSuchBucket" => StorageError::NoSuchBucket { op, bucket },
            c if RETRYABLE_CODES.contains(&c) => StorageError::Transient {
                op,
                detail: format!("{code}: {message}"),
            },
            _ if is_kms => StorageError::KmsKey {
                op,
                bucket,
                code,
                message,
            },
            "AccessDenied" | "AccessDeniedException" | "AllAccessDisabled" => {
                StorageError::AccessDenied {
                    op,
                    bucket,
                    code,
                    message,
                }
            }
            // A HEAD request's refusal has no body to carry a code: a bare 403 is a denial.
            "Unknown" | "Forbidden" | "" if status == 403 => StorageError::AccessDenied {
                op,
                bucket,
                code: "Forbidden".to_owned(),
                message: if message.is_empty() {
                    "HTTP 403 without an error body".to_owned()
                } else {
                    message
                },
            },
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId" => StorageError::BadCredentials { op, code },
            "PermanentRedirect"
            | "AuthorizationHeaderMalformed"
            | "IllegalLocationConstraintException" => StorageError::WrongRegion { bucket, code },
            _ if status >= 500 || status == 429 => StorageError::Transient {
                op,
                detail: format!("HTTP {status} {code}: {message}"),
            },
            _ => StorageError::Refused {
                op,
                status,
                code,
                message,
            },
        }
    }

    /// Classifies a failed write made with `If-None-Match: *` to `key`: a failed precondition
    /// (412) becomes [`StorageError::ObjectExists`].
    pub fn from_conditional_write<E>(
        op: &'static str,
        bucket: &str,
        key: &str,
        err: SdkError<E, HttpResponse>,
    ) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match StorageError::from_sdk(op, bucket, err) {
            StorageError::Refused { status: 412, .. } => StorageError::ObjectExists {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            },
            other => other,
        }
    }

    /// Classifies an SDK error from any S3 or KMS operation.
    pub fn from_sdk<E>(
        op: &'static str,
        bucket: &str,
        err: SdkError<E, HttpResponse>,
    ) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match err {
            SdkError::ConstructionFailure(e) => StorageError::InvalidRequest {
                op,
                detail: format!("{e:?}"),
            },
            SdkError::TimeoutError(_) => StorageError::Transient {
                op,
                detail: "request timed out".to_owned(),
            },
            SdkError::DispatchFailure(e) if e.is_timeout() => StorageError::Transient {
                op,
                detail: format!("connection timed out: {e:?}"),
            },
            SdkError::DispatchFailure(e) => StorageError::Unreachable {
                op,
                detail: format!("connection failed: {e:?}"),
            },
            SdkError::ResponseError(e) => StorageError::Transient {
                op,
                detail: format!("unreadable response: {e:?}"),
            },
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                let e = se.err();
                let failure = ServiceFailure {
                    status,
                    code: e.code().unwrap_or("Unknown").to_owned(),
                    message: e.message().unwrap_or("").to_owned(),
                };
                StorageError::from_service(op, bucket, failure)
            }
            other => StorageError::Transient {
                op,
                detail: format!("{other:?}"),
            },
        }
    }
}

/// The IAM permission AWS checks for the S3 operation `op` (an API operation name, as
/// [`StorageError`] records it), so that a refusal names what to grant; several operations share
/// one permission (multipart writes and copies are `s3:PutObject`, HeadObject is
/// `s3:GetObject`, ListObjectsV2 is `s3:ListBucket`).
pub fn iam_permission(op: &str) -> &'static str {
    match op {
        "PutObject" | "CreateMultipartUpload" | "UploadPart" | "CompleteMultipartUpload" => {
            "s3:PutObject"
        }
        "CopyObject" | "UploadPartCopy" => "s3:PutObject (and s3:GetObject on the copy's source)",
        "GetObject" | "HeadObject" => "s3:GetObject",
        "DeleteObject" | "DeleteObjects" => {
            "s3:DeleteObject (and s3:DeleteObjectVersion to delete versions)"
        }
        "AbortMultipartUpload" => "s3:AbortMultipartUpload",
        "ListObjectsV2" | "ListObjects" => "s3:ListBucket",
        "ListObjectVersions" => "s3:ListBucketVersions",
        "GetBucketVersioning" => "s3:GetBucketVersioning",
        "ListMultipartUploads" => "s3:ListBucketMultipartUploads",
        "ListParts" => "s3:ListMultipartUploadParts",
        "GetBucketLocation" => "s3:GetBucketLocation",
        "CreateBucket" => "s3:CreateBucket",
        _ => "the permission of this operation",
    }
}

/// Whether an AssumeRole refusal says the role itself is missing or malformed (rather than that
/// its trust policy refused us). AWS answers a missing role in another account with the same
/// AccessDenied as a trust policy mismatch, so this only catches what the service does tell.
pub(crate) fn assume_role_target_missing(code: &str, message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    code == "NoSuchEntity"
        || code == "ValidationError"
        || message.contains("cannot be found")
        || message.contains("does not exist")
        || message.contains("not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16, code: &str, message: &str) -> StorageError {
        let f = ServiceFailure {
            status,
            code: code.into(),
            message: message.into(),
        };
        StorageError::from_service("PutObject", "b", f)
    }

    #[test]
    fn customer_misconfigurations_are_permanent_and_name_the_fix() {
        let cases = [
            (classify(404, "NoSuchBucket", ""), "create it"),
            (classify(403, "AccessDenied", "denied"), "policy"),
            (classify(403, "AccessDeniedException", "denied"), "policy"),
            (
                classify(400, "KMS.NotFoundException", "Invalid keyId"),
                "kms:GenerateDataKey",
            ),
            (classify(403, "InvalidAccessKeyId", ""), "access key id"),
            (classify(403, "SignatureDoesNotMatch", ""), "access key id"),
            (classify(301, "PermanentRedirect", ""), "region"),
        ];
        for (err, fix) in cases {
            assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
            assert!(err.to_string().contains(fix), "{err} should mention {fix}");
        }
    }

    #[test]
    fn an_access_denial_names_the_iam_permission_of_its_operation() {
        let denied = |op: &'static str| {
            StorageError::from_service(
                op,
                "b",
                ServiceFailure {
                    status: 403,
                    code: "AccessDenied".into(),
                    message: "Access Denied".into(),
                },
            )
            .to_string()
        };
        for (op, permission) in [
            ("PutObject", "allow s3:PutObject on"),
            ("CreateMultipartUpload", "allow s3:PutObject on"),
            ("HeadObject", "allow s3:GetObject on"),
            ("ListObjectsV2", "allow s3:ListBucket on"),
            ("DeleteObjects", "allow s3:DeleteObject "),
            (
                "ListMultipartUploads",
                "allow s3:ListBucketMultipartUploads on",
            ),
            ("ListObjectVersions", "allow s3:ListBucketVersions on"),
            ("GetBucketVersioning", "allow s3:GetBucketVersioning on"),
            ("AbortMultipartUpload", "allow s3:AbortMultipartUpload on"),
        ] {
            let message = denied(op);
            assert!(message.contains(permission), "{op}: {message}");
        }
    }

    #[test]
    fn a_bare_403_of_a_head_request_is_an_access_denial() {
        let err = StorageError::from_service(
            "HeadObject",
            "b",
            ServiceFailure {
                status: 403,
                code: "Unknown".into(),
                message: String::new(),
            },
        );
        assert_eq!(err.code(), "access_denied");
        assert!(err.to_string().contains("allow s3:GetObject"), "{err}");
        assert_eq!(err.class(), ErrorClass::Permanent);
    }

    #[test]
    fn codes_are_stable_and_tell_kms_failures_apart() {
        assert_eq!(classify(404, "NoSuchBucket", "").code(), "bucket_missing");
        assert_eq!(classify(403, "AccessDenied", "no").code(), "access_denied");
        assert_eq!(
            classify(400, "KMS.NotFoundException", "Invalid keyId 'x'").code(),
            "kms_key_missing"
        );
        assert_eq!(
            classify(400, "KMS.DisabledException", "x is disabled.").code(),
            "kms_key_disabled"
        );
        // What S3 answers when the key policy or the caller's policy refuses the key.
        let denied = classify(
            403,
            "AccessDenied",
            "User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: kms:GenerateDataKey on resource: arn:aws:kms:us-east-1:2:key/k",
        );
        assert_eq!(denied.code(), "kms_denied");
        assert!(
            denied.to_string().contains("kms:GenerateDataKey"),
            "{denied}"
        );
        assert_eq!(
            classify(403, "InvalidAccessKeyId", "").code(),
            "invalid_keys"
        );
        assert_eq!(
            classify(301, "PermanentRedirect", "").code(),
            "wrong_region"
        );
        let assume = |code: &str, message: &str| StorageError::AssumeRoleDenied {
            role_arn: "arn:aws:iam::1:role/r".into(),
            external_id: "coffer-org-x".into(),
            code: code.into(),
            message: message.into(),
        };
        assert_eq!(
            assume("AccessDenied", "not authorized").code(),
            "trust_policy"
        );
        assert_eq!(assume("NoSuchEntity", "").code(), "role_missing");
        assert_eq!(
            assume("AccessDenied", "Role arn:aws:iam::1:role/r cannot be found").code(),
            "role_missing"
        );
    }

    #[test]
    fn throttling_and_server_errors_are_retryable() {
        for err in [
            classify(503, "SlowDown", ""),
            classify(500, "InternalError", ""),
            classify(502, "Whatever", ""),
            classify(429, "TooManyRequests", ""),
            classify(400, "RequestTimeout", ""),
        ] {
            assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
        }
        assert_eq!(
            classify(400, "InvalidPart", "").class(),
            ErrorClass::Permanent
        );
    }
}
