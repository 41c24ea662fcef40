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

/// The S3 object actions Coffer needs on the tenant's prefix: writes (PutObject also covers
/// CreateMultipartUpload, UploadPart, CompleteMultipartUpload and CopyObject's write), reads
/// (GetObject also covers HeadObject and CopyObject's read of its source), deletes (the retention
/// janitor, a retried task's leftovers, the connection test's probe) and aborts of uploads a
/// crash left open.
///
/// `s3:ListMultipartUploadParts` is not asked for: Coffer never calls ListParts (the multipart
/// writer keeps its parts' ETags itself, and an upload left open is aborted, never resumed).
/// `tests/security` shows every operation passing without it.
pub const OBJECT_ACTIONS: &[&str] = &[
    "s3:PutObject",
    "s3:GetObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
];

/// The bucket-level actions Coffer needs (listing limited to the prefix where IAM allows).
pub const BUCKET_ACTIONS: &[&str] = &[
    "s3:ListBucket",
    "s3:GetBucketLocation",
    "s3:ListBucketMultipartUploads",
];

/// The actions the retention janitor and erasure need on a versioned bucket, where a delete
/// without a version id only adds a delete marker and the data stays in the older version:
/// whether the bucket keeps versions (`s3:GetBucketVersioning`, on the bucket), which versions
/// are under the prefix (`s3:ListBucketVersions`, on the bucket, conditioned on the prefix) and
/// deleting them (`s3:DeleteObjectVersion`, on the prefix's objects). Coffer deletes versions only
/// when the tenant's retention policy says so (`delete_versions`); a customer who keeps versions
/// as protection against deletions by Coffer can leave these three statements out.
pub const VERSION_ACTIONS: &[&str] = &[
    "s3:GetBucketVersioning",
    "s3:ListBucketVersions",
    "s3:DeleteObjectVersion",
];

/// The KMS actions SSE-KMS uploads (GenerateDataKey) and multipart completion and reads
/// (Decrypt) need.
pub const KMS_ACTIONS: &[&str] = &["kms:GenerateDataKey", "kms:Decrypt"];

/// What an S3-compatible emulator that names IAM actions after API operations (fakecloud, which
/// the tests run against) checks for the requests AWS authorizes with each action: `(AWS action,
/// emulator actions, the emulator's resource is the bucket)`. For AWS these names are not actions
/// and match nothing, so a policy that carries them grants no more there.
///
/// Where the emulator authorizes on the bucket what AWS authorizes per object (DeleteObjects) or
/// supplies no `s3:prefix` for a listing (ListObjectVersions, ListMultipartUploads), the
/// emulator's grant is wider than AWS's: against the emulator only, a session may delete or list
/// versions outside its prefix with those two calls. Against AWS the per-key and prefix checks
/// apply.
pub const EMULATOR_EQUIVALENTS: &[(&str, &[&str], bool)] = &[
    (
        "s3:PutObject",
        &[
            "s3:CreateMultipartUpload",
            "s3:UploadPart",
            "s3:CompleteMultipartUpload",
        ],
        false,
    ),
    ("s3:GetObject", &["s3:HeadObject"], false),
    ("s3:DeleteObject", &["s3:DeleteObjects"], true),
    ("s3:ListMultipartUploadParts", &["s3:ListParts"], false),
    ("s3:ListBucket", &["s3:ListObjectsV2"], true),
    (
        "s3:ListBucketMultipartUploads",
        &["s3:ListMultipartUploads"],
        true,
    ),
    ("s3:ListBucketVersions", &["s3:ListObjectVersions"], true),
];

/// `policy` with, for every action it allows that the emulator names otherwise, a statement
/// allowing the emulator's names (see [`EMULATOR_EQUIVALENTS`]): same resource for object
/// actions, the bucket for bucket actions, and the statement's `s3:prefix` condition made
/// `IfExists` (the emulator supplies `s3:prefix` only for ListObjects and ListObjectsV2).
pub fn with_emulator_equivalents(mut policy: Value) -> Value {
    let Some(statements) = policy["Statement"].as_array_mut() else {
        return policy;
    };
    let mut extra = Vec::new();
    for statement in statements.iter() {
        let actions: Vec<&str> = match &statement["Action"] {
            Value::String(a) => vec![a.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let resource = statement["Resource"].as_str().unwrap_or_default();
        let bucket_arn = resource.split('/').next().unwrap_or(resource);
        for action in actions {
            let Some((_, names, on_bucket)) = EMULATOR_EQUIVALENTS
                .iter()
                .find(|(aws, _, _)| *aws == action)
            else {
                continue;
            };
            let mut added = json!({
                "Sid": format!("Emulator{}", action.trim_start_matches("s3:")),
                "Effect": "Allow",
                "Action": names,
                "Resource": if *on_bucket { bucket_arn } else { resource },
            });
            if let Some(prefixes) = statement["Condition"]
                .as_object()
                .and_then(|c| c.values().find_map(|keys| keys.get("s3:prefix")))
            {
                let operator = if *names == ["s3:ListObjectsV2"] {
                    "StringLike"
                } else {
                    "StringLikeIfExists"
                };
                added["Condition"] = json!({ operator: { "s3:prefix": prefixes } });
            }
            extra.push(added);
        }
    }
    statements.extend(extra);
    policy
}

/// The most characters STS takes in an AssumeRole session policy.
pub const SESSION_POLICY_MAX_LEN: usize = 2048;

/// A session policy for AssumeRole that allows only the tenant's prefix in `bucket`, whatever the
/// role itself allows: the actions of [`permission_policy`] (versions included, KMS on any key:
/// the role's own policy names the key), with the emulator's names of the same actions
/// ([`EMULATOR_EQUIVALENTS`]). Compact (no Sids, few statements): STS refuses a session policy
/// over [`SESSION_POLICY_MAX_LEN`] characters. `prefix` is the tenant's key prefix without a
/// trailing `/`.
pub fn session_policy(bucket: &str, prefix: &str) -> String {
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let mut objects: Vec<&str> = OBJECT_ACTIONS.to_vec();
    objects.push("s3:DeleteObjectVersion");
    // Bucket-level actions no listing condition applies to, in AWS or in the emulator (which
    // supplies `s3:prefix` only for ListObjects and ListObjectsV2).
    let mut bucket_info = vec![
        "s3:GetBucketLocation",
        "s3:GetBucketVersioning",
        "s3:ListBucketMultipartUploads",
    ];
    for (aws, names, on_bucket) in EMULATOR_EQUIVALENTS {
        let wanted = objects.contains(aws) || bucket_info.contains(aws);
        let listing = ["s3:ListBucket", "s3:ListBucketVersions"].contains(aws);
        if *on_bucket && (wanted || listing) && *names != ["s3:ListObjectsV2"] {
            bucket_info.extend_from_slice(names);
        } else if !on_bucket && wanted {
            objects.extend_from_slice(names);
        }
    }
    let policy: Value = json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Effect": "Allow", "Action": objects, "Resource": format!("{bucket_arn}/{prefix}/*") },
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:ListBucketVersions", "s3:ListObjectsV2"],
                "Resource": bucket_arn,
                "Condition": { "StringLike": { "s3:prefix": [format!("{prefix}/"), format!("{prefix}/*")] } }
            },
            { "Effect": "Allow", "Action": bucket_info, "Resource": bucket_arn },
            { "Effect": "Allow", "Action": KMS_ACTIONS, "Resource": "*" }
        ]
    });
    policy.to_string()
}

/// The least-privilege permission policy a customer attaches to the role (or IAM user) Coffer
/// uses: the object actions on `arn:aws:s3:::{bucket}/{prefix}/*` only, listing limited to the
/// prefix, GetBucketLocation, the version actions (on the prefix's objects, the prefix's
/// listing, and the bucket's versioning status), and, for SSE-KMS, `kms:GenerateDataKey` and
/// `kms:Decrypt` on that one key. `prefix` is the tenant's key prefix without a trailing `/`.
///
/// `s3:ListBucket` and `s3:ListBucketVersions` are conditioned on `s3:prefix` (a listing without
/// a prefix, or of another prefix, is refused). `s3:ListBucketMultipartUploads` gets the same
/// condition as `StringLikeIfExists`: IAM may not supply `s3:prefix` for that action, and a plain
/// `StringLike` on an absent key would refuse every call.
pub fn permission_policy(bucket: &str, prefix: &str, kms_key_arn: Option<&str>) -> Value {
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let objects = format!("{bucket_arn}/{prefix}/*");
    let prefixes = json!([format!("{prefix}/"), format!("{prefix}/*")]);
    let mut statements = vec![
        json!({
            "Sid": "CofferObjects",
            "Effect": "Allow",
            "Action": OBJECT_ACTIONS,
            "Resource": objects
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
        json!({
            "Sid": "CofferDeleteVersions",
            "Effect": "Allow",
            "Action": ["s3:DeleteObjectVersion"],
            "Resource": objects
        }),
        json!({
            "Sid": "CofferListVersions",
            "Effect": "Allow",
            "Action": ["s3:ListBucketVersions"],
            "Resource": bucket_arn,
            "Condition": { "StringLike": { "s3:prefix": prefixes } }
        }),
        json!({
            "Sid": "CofferBucketVersioning",
            "Effect": "Allow",
            "Action": ["s3:GetBucketVersioning"],
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
        let text = session_policy("b", "base/acme");
        let policy: Value = serde_json::from_str(&text).unwrap();
        let statements = policy["Statement"].as_array().unwrap();
        let objects = &statements[0];
        assert_eq!(objects["Resource"], "arn:aws:s3:::b/base/acme/*");
        for action in OBJECT_ACTIONS.iter().chain(&[
            "s3:DeleteObjectVersion",
            "s3:CreateMultipartUpload",
            "s3:HeadObject",
        ]) {
            assert!(actions(objects).contains(action), "{action}");
        }
        assert_eq!(
            actions(&statements[1]),
            ["s3:ListBucket", "s3:ListBucketVersions", "s3:ListObjectsV2"]
        );
        assert_eq!(
            statements[1]["Condition"]["StringLike"]["s3:prefix"],
            json!(["base/acme/", "base/acme/*"])
        );
        for action in [
            "s3:GetBucketVersioning",
            "s3:DeleteObjects",
            "s3:ListMultipartUploads",
        ] {
            assert!(actions(&statements[2]).contains(&action), "{action}");
        }
        assert!(!actions(&statements[2]).contains(&"s3:ListBucket"));
        assert!(
            !text.contains("\"arn:aws:s3:::b/*\""),
            "never the whole bucket"
        );
    }

    #[test]
    fn the_session_policy_fits_in_what_sts_takes() {
        // The longest bucket name (63) and a long base path and tenant id.
        let bucket = "b".repeat(63);
        let prefix = format!("{}/{}", "p".repeat(100), "t".repeat(64));
        let len = session_policy(&bucket, &prefix).len();
        assert!(len <= SESSION_POLICY_MAX_LEN, "{len} characters");
    }

    #[test]
    fn the_emulator_names_follow_the_actions_they_stand_for() {
        let policy = with_emulator_equivalents(permission_policy("b", "t", None));
        let statements = policy["Statement"].as_array().unwrap();
        let sid = |sid: &str| {
            statements
                .iter()
                .find(|s| s["Sid"] == sid)
                .unwrap_or_else(|| panic!("no {sid}"))
        };
        let put = sid("EmulatorPutObject");
        assert_eq!(
            actions(put),
            [
                "s3:CreateMultipartUpload",
                "s3:UploadPart",
                "s3:CompleteMultipartUpload"
            ]
        );
        assert_eq!(put["Resource"], "arn:aws:s3:::b/t/*");
        assert_eq!(actions(sid("EmulatorGetObject")), ["s3:HeadObject"]);
        let delete = sid("EmulatorDeleteObject");
        assert_eq!(
            delete["Resource"], "arn:aws:s3:::b",
            "DeleteObjects is a bucket action"
        );
        let list = sid("EmulatorListBucket");
        assert_eq!(
            list["Condition"]["StringLike"]["s3:prefix"],
            json!(["t/", "t/*"])
        );
        let versions = sid("EmulatorListBucketVersions");
        assert!(versions["Condition"]["StringLikeIfExists"]["s3:prefix"].is_array());
        // Without the AWS action, no emulator name for it.
        let mut narrowed = permission_policy("b", "t", None);
        narrowed["Statement"][0]["Action"] = json!(["s3:GetObject"]);
        let text = with_emulator_equivalents(narrowed).to_string();
        assert!(
            !text.contains("s3:UploadPart") && text.contains("s3:HeadObject"),
            "{text}"
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
        assert_eq!(
            actions(objects),
            [
                "s3:PutObject",
                "s3:GetObject",
                "s3:DeleteObject",
                "s3:AbortMultipartUpload"
            ]
        );
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
        assert_eq!(actions(&statements[4]), ["s3:DeleteObjectVersion"]);
        assert_eq!(statements[4]["Resource"], objects["Resource"]);
        assert_eq!(actions(&statements[5]), ["s3:ListBucketVersions"]);
        assert_eq!(
            statements[5]["Condition"]["StringLike"]["s3:prefix"],
            json!(["coffer/acme/", "coffer/acme/*"])
        );
        assert_eq!(actions(&statements[6]), ["s3:GetBucketVersioning"]);
        assert_eq!(statements[6]["Resource"], "arn:aws:s3:::acme-backups");
        let kms = &statements[7];
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
        assert_eq!(policy["Statement"].as_array().map(Vec::len), Some(7));
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
