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

/// Lets the vendor user of [`create_vendor`] use the test's own bucket and KMS key, as the
/// vendor's principal uses its default storage in production (a tenant's default storage stays
/// reachable, and `coffer verify` and the janitor go through every storage a tenant used).
pub async fn grant_vendor_default_bucket(env: &TestEnv) -> anyhow::Result<()> {
    let bucket_arn = format!("arn:aws:s3:::{}", env.bucket);
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Effect": "Allow", "Action": "s3:*", "Resource": [bucket_arn, format!("{bucket_arn}/*")] },
            { "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": env.kms_key.arn }
        ]
    });
    iam_client(env)
        .await
        .put_user_policy()
        .user_name(format!("coffer-vendor-{}", env.id))
        .policy_name("default-storage")
        .policy_document(policy.to_string())
        .send()
        .await?;
    Ok(())
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

/// Creates a role named `name` with the given trust and permission policies (as customers
/// paste them, e.g. `coffer_core::policy::{trust_policy, permission_policy}`). Returns the ARN.
pub async fn create_role(
    env: &TestEnv,
    name: &str,
    trust: &serde_json::Value,
    permissions: &serde_json::Value,
) -> anyhow::Result<String> {
    let iam = iam_client(env).await;
    let role = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await?;
    let arn = role.role().map(|r| r.arn().to_owned()).unwrap_or_default();
    iam.put_role_policy()
        .role_name(name)
        .policy_name("coffer-backups")
        .policy_document(permissions.to_string())
        .send()
        .await?;
    Ok(arn)
}

/// A customer's IAM user with an access key, for storage reached with access keys.
pub struct KeyedUser {
    /// The user's ARN.
    pub arn: String,
    /// Its access key.
    pub keys: StaticKeys,
}

/// Creates IAM user `name` with inline policy `permissions` and one access key.
pub async fn create_user_with_keys(
    env: &TestEnv,
    name: &str,
    permissions: &serde_json::Value,
) -> anyhow::Result<KeyedUser> {
    let iam = iam_client(env).await;
    let user = iam.create_user().user_name(name).send().await?;
    let arn = user.user().map(|u| u.arn().to_owned()).unwrap_or_default();
    iam.put_user_policy()
        .user_name(name)
        .policy_name("coffer-backups")
        .policy_document(permissions.to_string())
        .send()
        .await?;
    let key = iam.create_access_key().user_name(name).send().await?;
    let key = key
        .access_key()
        .ok_or_else(|| anyhow::anyhow!("no access key returned"))?;
    Ok(KeyedUser {
        arn,
        keys: StaticKeys {
            access_key_id: key.access_key_id().to_owned(),
            secret_access_key: SecretString::from(key.secret_access_key().to_owned()),
        },
    })
}

/// Sets `policy` as the bucket policy of `bucket` (with the emulator's admin identity).
pub async fn put_bucket_policy(
    env: &TestEnv,
    bucket: &str,
    policy: &serde_json::Value,
) -> anyhow::Result<()> {
    env.s3_client
        .put_bucket_policy()
        .bucket(bucket)
        .policy(policy.to_string())
        .send()
        .await?;
    Ok(())
}

/// Settings with the keys of an administrator of another account `account_id` (12 digits),
/// created through the emulator's `/_fakecloud/iam/create-admin` endpoint: the way to stand up
/// a second AWS account (say, the customer's central KMS account) in tests.
pub async fn admin_in_account(
    env: &TestEnv,
    account_id: &str,
    user_name: &str,
) -> anyhow::Result<S3Settings> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = url::Url::parse(&env.stack.s3_endpoint)?;
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port_or_known_default().unwrap_or(80);
    let body = json!({ "accountId": account_id, "userName": user_name }).to_string();
    let request = format!(
        "POST /_fakecloud/iam/create-admin HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, payload) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("malformed response from create-admin"))?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "create-admin failed: {head}"
    );
    let created: serde_json::Value = serde_json::from_str(payload.trim())?;
    let field = |name: &str| {
        created[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("create-admin answered without {name}"))
    };
    Ok(S3Settings {
        keys: Some(StaticKeys {
            access_key_id: field("accessKeyId")?,
            secret_access_key: SecretString::from(field("secretAccessKey")?),
        }),
        ..env.s3.clone()
    })
}

/// The permission policy `coffer storage policy` prints, plus the emulator's names of the same
/// actions (`coffer_core::policy::with_emulator_equivalents`): it checks ListObjectsV2 as
/// `s3:ListObjectsV2` where AWS checks `s3:ListBucket`, multipart writes as
/// `s3:CreateMultipartUpload`/`s3:UploadPart`/`s3:CompleteMultipartUpload` where AWS checks
/// `s3:PutObject`, HeadObject as `s3:HeadObject` where AWS checks `s3:GetObject`, DeleteObjects as
/// `s3:DeleteObjects` on the bucket where AWS checks `s3:DeleteObject` per key, and so on.
pub fn emulator_permission_policy(
    bucket: &str,
    prefix: &str,
    kms_key_arn: Option<&str>,
) -> serde_json::Value {
    coffer_core::policy::with_emulator_equivalents(coffer_core::policy::permission_policy(
        bucket,
        prefix,
        kms_key_arn,
    ))
}

/// `policy` without `action` (an AWS action name) in any statement; a statement left with no
/// action goes. Apply before `with_emulator_equivalents`, so the emulator's names of the action
/// go too.
pub fn without_action(mut policy: serde_json::Value, action: &str) -> serde_json::Value {
    if let Some(statements) = policy["Statement"].as_array_mut() {
        for statement in statements.iter_mut() {
            if let Some(actions) = statement["Action"].as_array_mut() {
                actions.retain(|a| a != action);
            }
        }
        statements.retain(|s| s["Action"].as_array().is_none_or(|a| !a.is_empty()));
    }
    policy
}

/// Replaces the inline permission policy of role `name` (the one [`create_role`] put), as a
/// customer editing their role does; the next request of any session of the role is checked
/// against it.
pub async fn set_role_policy(
    env: &TestEnv,
    name: &str,
    permissions: &serde_json::Value,
) -> anyhow::Result<()> {
    iam_client(env)
        .await
        .put_role_policy()
        .role_name(name)
        .policy_name("coffer-backups")
        .policy_document(permissions.to_string())
        .send()
        .await?;
    Ok(())
}
