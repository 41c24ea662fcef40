//! IAM fixtures: the vendor's identity and a customer's role, created for real in the emulator
//! (run with `--iam strict`, so policies are enforced).
//!
//! The vendor is an IAM user allowed only `sts:AssumeRole`; Coffer uses its keys to assume the
//! customer's role. The customer's role trusts that user on condition of the tenant's external
//! id, as the trust policy Coffer documents for customers does.

use coffer_storage::{S3Settings, StaticKeys};
use secrecy::SecretString;
use serde_json::json;

use crate::env::TestEnv;

/// The vendor identity Coffer's workers run as.
pub struct Vendor {
    /// Storage settings with the vendor user's access keys.
    pub settings: S3Settings,
    /// The user's ARN (what customers' trust policies name).
    pub arn: String,
}

async fn iam_client(env: &TestEnv) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&env.s3.sdk_config().await)
}

/// Creates the vendor user, allowed to assume roles and nothing else.
pub async fn create_vendor(env: &TestEnv) -> anyhow::Result<Vendor> {
    let iam = iam_client(env).await;
    let name = format!("coffer-vendor-{}", env.id);
    let user = iam.create_user().user_name(&name).send().await?;
    let arn = user.user().map(|u| u.arn().to_owned()).unwrap_or_default();
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*" }]
    });
    iam.put_user_policy()
        .user_name(&name)
        .policy_name("assume-tenant-roles")
        .policy_document(policy.to_string())
        .send()
        .await?;
    let key = iam.create_access_key().user_name(&name).send().await?;
    let key = key
        .access_key()
        .ok_or_else(|| anyhow::anyhow!("no access key returned"))?;
    let settings = S3Settings {
        keys: Some(StaticKeys {
            access_key_id: key.access_key_id().to_owned(),
            secret_access_key: SecretString::from(key.secret_access_key().to_owned()),
        }),
        ..env.s3.clone()
    };
    Ok(Vendor { settings, arn })
}

/// Creates a customer role trusting `vendor_arn` with `external_id`, allowed `actions` on
/// `resources` (plus the test's KMS key). Returns the role ARN.
pub async fn create_customer_role(
    env: &TestEnv,
    name: &str,
    vendor_arn: &str,
    external_id: &str,
    s3_resources: &[String],
) -> anyhow::Result<String> {
    let iam = iam_client(env).await;
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "AWS": vendor_arn },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "sts:ExternalId": external_id } }
        }]
    });
    let role = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await?;
    let arn = role.role().map(|r| r.arn().to_owned()).unwrap_or_default();
    let permissions = json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Effect": "Allow", "Action": "s3:*", "Resource": s3_resources },
            { "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": env.kms_key.arn }
        ]
    });
    iam.put_role_policy()
        .role_name(name)
        .policy_name("coffer-backups")
        .policy_document(permissions.to_string())
        .send()
        .await?;
    Ok(arn)
}
