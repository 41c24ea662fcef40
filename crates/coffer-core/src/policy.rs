//! IAM material derived from a tenant's storage settings: the external id, and the session
//! policy that narrows an assumed role to the tenant's prefix.
//!
//! Pure functions: the same inputs always give the same JSON, so a customer can compare what
//! Coffer asks for with what they granted.

use serde_json::{Value, json};

use crate::OrgId;

/// The external id a customer's trust policy must require: `{vendor}-org-{org_id}`.
///
/// It is derived from the tenant's record, never taken from a message (confused-deputy
/// protection: only Coffer decides which external id it presents for which org).
pub fn external_id(vendor: &str, org: &OrgId) -> String {
    format!("{vendor}-org-{org}")
}

/// The S3 object actions Coffer needs on the tenant's prefix.
pub const OBJECT_ACTIONS: &[&str] = &[
    "s3:PutObject",
    "s3:GetObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
];

/// The bucket-level actions Coffer needs (listing limited to the prefix where IAM allows).
pub const BUCKET_ACTIONS: &[&str] = &[
    "s3:ListBucket",
    "s3:GetBucketLocation",
    "s3:ListBucketMultipartUploads",
];

/// The KMS actions SSE-KMS uploads (GenerateDataKey) and multipart completion and reads
/// (Decrypt) need.
pub const KMS_ACTIONS: &[&str] = &["kms:GenerateDataKey", "kms:Decrypt"];

/// A session policy for AssumeRole that allows only the tenant's prefix in `bucket`, whatever the
/// role itself allows. `prefix` is the tenant's key prefix without a trailing `/`.
pub fn session_policy(bucket: &str, prefix: &str) -> String {
    let objects = format!("arn:aws:s3:::{bucket}/{prefix}/*");
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let policy: Value = json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Sid": "TenantObjects", "Effect": "Allow", "Action": OBJECT_ACTIONS, "Resource": objects },
            {
                "Sid": "TenantListing",
                "Effect": "Allow",
                // The emulator checks s3:ListObjectsV2 where AWS checks s3:ListBucket.
                "Action": ["s3:ListBucket", "s3:ListObjectsV2"],
                "Resource": bucket_arn,
                "Condition": { "StringLike": { "s3:prefix": [format!("{prefix}/*"), prefix.to_owned()] } }
            },
            {
                "Sid": "BucketInfo",
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                "Resource": bucket_arn
            },
            { "Sid": "Kms", "Effect": "Allow", "Action": KMS_ACTIONS, "Resource": "*" }
        ]
    });
    policy.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_id_follows_the_documented_form() {
        let org = OrgId::new("00D000000000001AAA").unwrap();
        assert_eq!(external_id("coffer", &org), "coffer-org-00D000000000001AAA");
    }

    #[test]
    fn session_policy_names_only_the_tenant_prefix() {
        let policy: Value =
            serde_json::from_str(&session_policy("b", "base/acme/00D000000000001AAA")).unwrap();
        let objects = &policy["Statement"][0];
        assert_eq!(
            objects["Resource"],
            "arn:aws:s3:::b/base/acme/00D000000000001AAA/*"
        );
        assert!(
            objects["Action"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "s3:PutObject")
        );
        assert_eq!(
            policy["Statement"][1]["Condition"]["StringLike"]["s3:prefix"][0],
            "base/acme/00D000000000001AAA/*"
        );
        assert!(
            !policy.to_string().contains("\"arn:aws:s3:::b/*\""),
            "never the whole bucket"
        );
    }
}
