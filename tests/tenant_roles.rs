//! Bring-your-own-bucket access through a role in the customer's account, against the emulator
//! with `--iam strict`: real users, roles, trust policies and external ids.

use aws_sdk_s3::primitives::ByteStream;
use coffer_core::policy::{external_id, session_policy};
use coffer_core::{Classify, ErrorClass, OrgId};
use coffer_storage::StorageError;
use coffer_storage::credentials::{RoleAccess, role_client, session_name};
use coffer_testkit::iam::{create_customer_role, create_vendor};
use coffer_testkit::{TEST_ORG_ID, TestEnv};
use std::time::Duration;

fn access(role_arn: &str, external_id: &str, policy: Option<String>) -> RoleAccess {
    RoleAccess {
        role_arn: role_arn.to_owned(),
        external_id: external_id.to_owned(),
        session_name: session_name("acme", "test-job"),
        session_policy: policy,
        duration: Duration::from_secs(900),
    }
}

async fn put(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    kms_key: &str,
) -> Result<(), String> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
        .ssekms_key_id(kms_key)
        .body(ByteStream::from_static(b"probe"))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("{:?}", e.into_service_error()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_role_is_assumed_with_its_external_id_and_only_reaches_its_prefix()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let vendor = create_vendor(&env).await?;
    let org = OrgId::new(TEST_ORG_ID)?;
    let ext = external_id("coffer", &org);
    // The customer's role allows the whole bucket; Coffer's session policy narrows it.
    let bucket_arn = format!("arn:aws:s3:::{}", env.bucket);
    let role = create_customer_role(
        &env,
        &format!("coffer-acme-{}", env.id),
        &vendor.arn,
        &ext,
        &[bucket_arn.clone(), format!("{bucket_arn}/*")],
    )
    .await?;
    let prefix = format!("acme/{TEST_ORG_ID}");
    let client = role_client(
        &vendor.settings,
        access(&role, &ext, Some(session_policy(&env.bucket, &prefix))),
        "acme",
    )
    .await?;

    put(
        &client,
        &env.bucket,
        &format!("{prefix}/probe"),
        &env.kms_key.key_id,
    )
    .await
    .expect("own prefix is writable");
    let other = put(
        &client,
        &env.bucket,
        &format!("globex/{TEST_ORG_ID}/probe"),
        &env.kms_key.key_id,
    )
    .await;
    assert!(
        other.is_err(),
        "tenant acme's session wrote into tenant globex's prefix"
    );
    assert!(
        other.unwrap_err().contains("AccessDenied"),
        "the refusal is an access denial"
    );
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_external_id_is_refused_with_a_message_that_names_the_fix() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let vendor = create_vendor(&env).await?;
    let org = OrgId::new(TEST_ORG_ID)?;
    let role = create_customer_role(
        &env,
        &format!("coffer-acme-{}", env.id),
        &vendor.arn,
        &external_id("coffer", &org),
        &[format!("arn:aws:s3:::{}/*", env.bucket)],
    )
    .await?;

    // What a forged message might carry instead of the tenant record's external id.
    let forged = "coffer-org-00D000000000666AAA";
    let err = role_client(&vendor.settings, access(&role, forged, None), "acme")
        .await
        .expect_err("assumed with a forged external id");
    assert!(
        matches!(err, StorageError::AssumeRoleDenied { .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    let message = err.to_string();
    assert!(
        message.contains("sts:ExternalId") && message.contains(forged) && message.contains(&role),
        "{message}"
    );

    let missing = format!("arn:aws:iam::000000000000:role/does-not-exist-{}", env.id);
    let err = role_client(
        &vendor.settings,
        access(&missing, &external_id("coffer", &org), None),
        "acme",
    )
    .await
    .expect_err("assumed a missing role");
    assert!(
        matches!(err, StorageError::AssumeRoleDenied { .. }),
        "{err}"
    );
    env.cleanup().await
}
