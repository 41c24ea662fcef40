//! IAM material derived from a tenant's storage settings: the external id, the session policy
//! that narrows an assumed role to the tenant's prefix, and the two documents a customer pastes
//! into IAM: the least-privilege [`permission_policy`] of the role (or user) and the
//! [`trust_policy`] that lets Coffer's principal assume the role with the tenant's external id.
//! `deploy/aws/customer-role.cloudformation.yaml` creates the same role; a test keeps the two in
//! step.
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
                // The emulator checks s3:ListMultipartUploads where AWS checks
                // s3:ListBucketMultipartUploads.
                "Action": ["s3:GetBucketLocation", "s3:ListBucketMultipartUploads", "s3:ListMultipartUploads"],
                "Resource": bucket_arn
            },
            { "Sid": "Kms", "Effect": "Allow", "Action": KMS_ACTIONS, "Resource": "*" }
        ]
    });
    policy.to_string()
}

/// The least-privilege permission policy a customer attaches to the role (or IAM user) Coffer
/// uses: the object actions on `arn:aws:s3:::{bucket}/{prefix}/*` only, listing limited to the
/// prefix, GetBucketLocation, and, for SSE-KMS, `kms:GenerateDataKey` and `kms:Decrypt` on that
/// one key. `prefix` is the tenant's key prefix without a trailing `/`.
///
/// `s3:ListBucket` is conditioned on `s3:prefix` (a listing without a prefix, or of another
/// prefix, is refused). `s3:ListBucketMultipartUploads` gets the same condition as
/// `StringLikeIfExists`: IAM may not supply `s3:prefix` for that action, and a plain `StringLike`
/// on an absent key would refuse every call.
pub fn permission_policy(bucket: &str, prefix: &str, kms_key_arn: Option<&str>) -> Value {
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let prefixes = json!([format!("{prefix}/"), format!("{prefix}/*")]);
    let mut statements = vec![
        json!({
            "Sid": "CofferObjects",
            "Effect": "Allow",
            "Action": OBJECT_ACTIONS,
            "Resource": format!("{bucket_arn}/{prefix}/*")
        }),
        json!({
            "Sid": "CofferListPrefix",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": bucket_arn,
            "Condition": { "StringLike": { "s3:prefix": prefixes } }
        }),
        json!({
            "Sid": "CofferListUploads",
            "Effect": "Allow",
            "Action": ["s3:ListBucketMultipartUploads"],
            "Resource": bucket_arn,
            "Condition": { "StringLikeIfExists": { "s3:prefix": prefixes } }
        }),
        json!({
            "Sid": "CofferBucketLocation",
            "Effect": "Allow",
            "Action": ["s3:GetBucketLocation"],
            "Resource": bucket_arn
        }),
    ];
    if let Some(key) = kms_key_arn {
        statements.push(json!({
            "Sid": "CofferKmsKey",
            "Effect": "Allow",
            "Action": KMS_ACTIONS,
            "Resource": key
        }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// The trust policy of the customer's role: `vendor_principal_arn` (Coffer's IAM user or role)
/// may call `sts:AssumeRole` only when it presents one of `external_ids` (one per org the role
/// serves, each `{vendor}-org-{org_id}`). An empty list lets nobody in.
pub fn trust_policy(vendor_principal_arn: &str, external_ids: &[String]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "CofferAssumeRole",
            "Effect": "Allow",
            "Principal": { "AWS": vendor_principal_arn },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "sts:ExternalId": external_ids } }
        }]
    })
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

    fn actions(statement: &Value) -> Vec<&str> {
        statement["Action"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    #[test]
    fn the_permission_policy_grants_only_the_prefix_and_the_one_key() {
        let key = "arn:aws:kms:eu-west-1:111122223333:key/1234";
        let policy = permission_policy("acme-backups", "coffer/acme", Some(key));
        let text = policy.to_string();
        let statements = policy["Statement"].as_array().expect("statements");
        let objects = &statements[0];
        assert_eq!(
            objects["Resource"],
            "arn:aws:s3:::acme-backups/coffer/acme/*"
        );
        for action in [
            "s3:PutObject",
            "s3:GetObject",
            "s3:DeleteObject",
            "s3:AbortMultipartUpload",
            "s3:ListMultipartUploadParts",
        ] {
            assert!(actions(objects).contains(&action), "{action}");
        }
        let list = &statements[1];
        assert_eq!(actions(list), ["s3:ListBucket"]);
        assert_eq!(list["Resource"], "arn:aws:s3:::acme-backups");
        assert_eq!(
            list["Condition"]["StringLike"]["s3:prefix"],
            json!(["coffer/acme/", "coffer/acme/*"])
        );
        assert_eq!(actions(&statements[2]), ["s3:ListBucketMultipartUploads"]);
        assert!(statements[2]["Condition"]["StringLikeIfExists"]["s3:prefix"].is_array());
        assert_eq!(actions(&statements[3]), ["s3:GetBucketLocation"]);
        let kms = &statements[4];
        assert_eq!(actions(kms), ["kms:GenerateDataKey", "kms:Decrypt"]);
        assert_eq!(kms["Resource"], key);
        // Nothing on the whole bucket's objects, no wildcard action, no wildcard resource.
        assert!(!text.contains("acme-backups/*"), "{text}");
        assert!(
            !text.contains("\"s3:*\"") && !text.contains("\"*\""),
            "{text}"
        );
        assert!(statements.iter().all(|s| s["Effect"] == "Allow"));
    }

    #[test]
    fn without_sse_kms_the_permission_policy_has_no_kms_statement() {
        let policy = permission_policy("b", "t", None);
        assert_eq!(policy["Statement"].as_array().map(Vec::len), Some(4));
        assert!(!policy.to_string().contains("kms:"));
    }

    #[test]
    fn the_trust_policy_requires_one_of_the_external_ids() {
        let ids = vec![
            "coffer-org-00D000000000001AAA".to_owned(),
            "coffer-org-00D000000000002AAA".to_owned(),
        ];
        let policy = trust_policy("arn:aws:iam::999988887777:role/coffer-worker", &ids);
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Effect"], "Allow");
        assert_eq!(statement["Action"], "sts:AssumeRole");
        assert_eq!(
            statement["Principal"]["AWS"],
            "arn:aws:iam::999988887777:role/coffer-worker"
        );
        assert_eq!(
            statement["Condition"]["StringEquals"]["sts:ExternalId"],
            json!(ids)
        );
        assert_eq!(policy["Statement"].as_array().map(Vec::len), Some(1));
    }
}
