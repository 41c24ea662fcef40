//! Bring-your-own-bucket access through a role in the customer's account, against the emulator
//! with `--iam strict`: real users, roles, trust policies and external ids.

use aws_sdk_s3::primitives::ByteStream;
use coffer_catalog::{BackupState, NewStorage, Sse, StorageAccess};
use coffer_core::layout::BasePath;
use coffer_core::policy::{external_id, session_policy, trust_policy};
use coffer_core::{Classify, ErrorClass, JobId, OrgId, TenantId};
use coffer_e2e::{backup_envelope, list_keys, small_part_settings, start_worker, wait_for_backup};
use coffer_queue::OutgoingJob;
use coffer_storage::StorageError;
use coffer_storage::credentials::{RoleAccess, role_client, session_name};
use coffer_testkit::iam::{
    create_customer_role, create_role, create_vendor, emulator_permission_policy,
};
use coffer_testkit::{TEST_ORG_ID, TestEnv, start_sim};
use coffer_worker::WorkerSettings;
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

/// Appends a field the schema does not have (number 99, a string) to an encoded message, as a
/// forged or newer producer might: protobuf decoders skip it.
fn with_unknown_string_field(mut payload: Vec<u8>, value: &str) -> Vec<u8> {
    payload.extend_from_slice(&[0x9a, 0x06]); // tag: field 99, length-delimited
    payload.push(u8::try_from(value.len()).expect("short value"));
    payload.extend_from_slice(value.as_bytes());
    payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_through_the_queue_reaches_the_customer_bucket_with_the_external_id_of_the_record()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(5, 1, 100).await?;
    env.create_tenant("acme", "").await?;
    env.connect_org("acme", &sim).await?;
    let tenant = TenantId::new("acme")?;
    let org = OrgId::new(TEST_ORG_ID)?;

    // The customer's role trusts the vendor only with the org's external id.
    let vendor = create_vendor(&env).await?;
    let prefix = "byo/acme";
    let role = create_role(
        &env,
        &format!("coffer-acme-{}", env.id),
        &trust_policy(&vendor.arn, &[external_id("coffer", &org)]),
        &emulator_permission_policy(&env.bucket, prefix, Some(&env.kms_key.arn)),
    )
    .await?;
    let own = env
        .catalog
        .set_own_storage(
            &tenant,
            &NewStorage {
                bucket: env.bucket.clone(),
                region: env.stack.region.clone(),
                endpoint: None,
                base_path: BasePath::new("byo")?,
                sse: Sse::Kms {
                    key_id: env.kms_key.arn.clone(),
                    bucket_key: false,
                },
                access: StorageAccess::Role { role_arn: role },
            },
        )
        .await?;
    env.catalog
        .record_storage_test(own.storage_id, true, "{}")
        .await?;
    env.catalog.enable_own_storage(&tenant).await?;

    // The worker runs as the vendor; the message carries, in a field Coffer does not read, the
    // external id of another org, as a confused-deputy attempt would.
    let worker = start_worker(
        &env,
        WorkerSettings {
            s3: vendor.settings.clone(),
            ..small_part_settings(&env)
        },
    )
    .await?;
    let job = JobId::generate();
    let payload = with_unknown_string_field(
        coffer_proto::encode(&backup_envelope(job, "acme", TEST_ORG_ID)),
        "coffer-org-00D000000000666AAA",
    );
    env.broker()
        .await?
        .publisher()
        .await?
        .publish_job(OutgoingJob {
            message_id: &job.to_string(),
            kind: "backup_requested",
            tenant: None,
            payload: &payload,
        })
        .await?;
    let backup = wait_for_backup(&env, job, Duration::from_secs(90)).await?;
    worker.stop().await;

    assert_eq!(backup.state, BackupState::Complete);
    assert_eq!(
        backup.storage_id, own.storage_id,
        "written to the own storage"
    );
    let keys = list_keys(&env.s3_client, &env.bucket, "").await?;
    assert!(!keys.is_empty());
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&format!("{prefix}/{TEST_ORG_ID}/"))),
        "everything under the tenant's own prefix: {keys:?}"
    );
    sim.shutdown().await;
    env.cleanup().await
}
