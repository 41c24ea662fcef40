//! Tenant isolation: what one tenant does never reaches another tenant's objects, credentials or
//! catalog rows.
//!
//! - Credentials: a session Coffer opens for tenant acme in a customer role that allows the whole
//!   bucket cannot read, write, list, copy from or delete under tenant globex's prefix in the same
//!   bucket (the session policy narrows it), and globex's objects are intact afterwards.
//! - Access keys: one worker serving two tenants on access keys, each key allowed only its own
//!   tenant's prefix, completes both backups: had it used one tenant's keys for the other, the
//!   other's writes would have been refused.
//! - Catalog: asked for tenant acme, a restore, a record lookup, `coffer verify`, an erasure and
//!   the backups list never see globex's backups or records; a backup job naming acme with
//!   globex's org is refused and writes nothing.
//!
//! - Keys: a job whose tenant, org or object names could escape a prefix (`..`, `/`, control
//!   characters) is refused by the worker and writes nothing; the id and layout types refusing
//!   them are unit-tested in `coffer-core` (`ids`, `layout`).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use coffer_catalog::{NewStorage, RestoreMode, Sse, StorageAccess};
use coffer_core::layout::BasePath;
use coffer_core::policy::{external_id, trust_policy};
use coffer_core::sealed::EnvelopeKey;
use coffer_core::{JobId, OrgId, TenantId};
use coffer_e2e::{list_keys, request_backup, small_part_settings, start_worker, wait_for_backup};
use coffer_sfsim::{OrgSeed, SimHandle};
use coffer_storage::{StorageError, provision};
use coffer_testkit::iam::{
    create_role, create_user_with_keys, create_vendor, emulator_permission_policy,
};
use coffer_testkit::{TestEnv, start_sim, start_sim_of};
use coffer_worker::WorkerSettings;
use coffer_worker::backup::BackupContext;
use coffer_worker::restore::plan::Scope;
use coffer_worker::restore::{RestoreJob, run_restore};
use coffer_worker::storage::StorageClients;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::common::VENDOR;

/// The second tenant's org.
const GLOBEX_ORG: &str = "00D5g0000004SimBBB";

async fn globex_sim() -> anyhow::Result<SimHandle> {
    start_sim_of(OrgSeed::new(OrgId::new(GLOBEX_ORG)?, 7, 5, 2), 50).await
}

/// The SHA-256 of every object under `prefix`, to see that nothing there changed.
async fn digests(
    env: &TestEnv,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    use sha2::Digest as _;
    let mut out = BTreeMap::new();
    for key in list_keys(&env.s3_client, bucket, prefix).await? {
        let body = coffer_e2e::read_object(&env.s3_client, bucket, &key)
            .await?
            .body;
        out.insert(key, hex::encode(sha2::Sha256::digest(&body)));
    }
    Ok(out)
}

/// Asserts that `result`, of S3 operation `op` in `bucket`, is an access denial.
fn denied<T, E>(
    what: &str,
    bucket: &str,
    op: &'static str,
    result: Result<T, aws_sdk_s3::error::SdkError<E>>,
) where
    T: std::fmt::Debug,
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result.map_err(|e| StorageError::from_sdk(op, bucket, e)) {
        Ok(v) => panic!("tenant acme's session could {what}: {v:?}"),
        Err(e) => assert_eq!(e.code(), "access_denied", "{what}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_for_one_tenant_cannot_touch_another_tenants_prefix_in_the_same_bucket()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let vendor = create_vendor(&env).await?;
    let acme = TenantId::new("acme")?;
    let org = OrgId::new(coffer_testkit::TEST_ORG_ID)?;
    // The customer's role allows everything in the bucket: only Coffer's session policy keeps
    // tenant acme's session to acme's prefix.
    let bucket_arn = format!("arn:aws:s3:::{}", env.bucket);
    let role = create_role(
        &env,
        &format!("coffer-shared-{}", env.id),
        &trust_policy(&vendor.arn, &[external_id(VENDOR, &org)]),
        &json!({
            "Version": "2012-10-17",
            "Statement": [{ "Effect": "Allow", "Action": "s3:*", "Resource": [bucket_arn, format!("{bucket_arn}/*")] }]
        }),
    )
    .await?;
    let storage = env
        .catalog
        .put_tenant(
            &acme,
            "Acme",
            &NewStorage {
                bucket: env.bucket.clone(),
                region: env.stack.region.clone(),
                endpoint: None,
                base_path: BasePath::new("")?,
                sse: Sse::S3,
                access: StorageAccess::Role { role_arn: role },
            },
        )
        .await?
        .storage;
    let clients = StorageClients::new(vendor.settings.clone(), VENDOR.to_owned(), None);
    let client = clients.client_for(&storage, &org, "isolation").await?;

    // Tenant globex's objects, written by the vendor's admin.
    let theirs = format!("globex/{org}/backups/b1/manifest.json");
    env.s3_client
        .put_object()
        .bucket(&env.bucket)
        .key(&theirs)
        .body(ByteStream::from_static(b"{\"globex\":true}"))
        .send()
        .await?;
    let before = digests(&env, &env.bucket, "globex/").await?;
    let bucket = env.bucket.as_str();

    client
        .put_object()
        .bucket(bucket)
        .key(format!("acme/{org}/own"))
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect("its own prefix is writable");
    denied(
        "read globex's object",
        bucket,
        "GetObject",
        client.get_object().bucket(bucket).key(&theirs).send().await,
    );
    denied(
        "read globex's object's metadata",
        bucket,
        "HeadObject",
        client
            .head_object()
            .bucket(bucket)
            .key(&theirs)
            .send()
            .await,
    );
    denied(
        "overwrite globex's object",
        bucket,
        "PutObject",
        client
            .put_object()
            .bucket(bucket)
            .key(&theirs)
            .body(ByteStream::from_static(b"{}"))
            .send()
            .await,
    );
    denied(
        "delete globex's object",
        bucket,
        "DeleteObject",
        client
            .delete_object()
            .bucket(bucket)
            .key(&theirs)
            .send()
            .await,
    );
    denied(
        "list globex's prefix",
        bucket,
        "ListObjectsV2",
        client
            .list_objects_v2()
            .bucket(bucket)
            .prefix("globex/")
            .send()
            .await,
    );
    denied(
        "list the whole bucket",
        bucket,
        "ListObjectsV2",
        client.list_objects_v2().bucket(bucket).send().await,
    );
    denied(
        "list a sibling prefix starting with its name",
        bucket,
        "ListObjectsV2",
        client
            .list_objects_v2()
            .bucket(bucket)
            .prefix("acme-evil/")
            .send()
            .await,
    );
    denied(
        "copy globex's object into its own prefix",
        bucket,
        "CopyObject",
        client
            .copy_object()
            .bucket(bucket)
            .key(format!("acme/{org}/stolen"))
            .copy_source(format!("{bucket}/{theirs}"))
            .send()
            .await,
    );
    denied(
        "start an upload under globex's prefix",
        bucket,
        "CreateMultipartUpload",
        client
            .create_multipart_upload()
            .bucket(bucket)
            .key(format!("globex/{org}/planted"))
            .send()
            .await,
    );
    assert_eq!(
        digests(&env, &env.bucket, "globex/").await?,
        before,
        "globex's objects are as they were"
    );
    assert!(
        list_keys(&env.s3_client, bucket, &format!("acme/{org}/stolen"))
            .await?
            .is_empty(),
        "nothing copied out of globex"
    );
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_serving_two_keyed_tenants_uses_each_tenants_keys_only_for_that_tenant()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let acme_sim = start_sim(5, 1, 50).await?;
    let globex_sim = globex_sim().await?;
    let bucket = format!("customer-{}", env.id);
    provision::ensure_bucket(&env.s3_client, &bucket, &env.stack.region).await?;
    let envelope = EnvelopeKey::from_base64(&SecretString::from(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        rand::random::<[u8; 32]>(),
    )))?;
    for (tenant, sim) in [("acme", &acme_sim), ("globex", &globex_sim)] {
        env.create_tenant_with(tenant, "", Sse::S3).await?;
        env.connect_org(tenant, sim).await?;
        let id = TenantId::new(tenant)?;
        // Each tenant's IAM user may touch only its own prefix of the shared bucket.
        let user = create_user_with_keys(
            &env,
            &format!("{tenant}-{}", env.id),
            &emulator_permission_policy(&bucket, &format!("byo/{tenant}"), None),
        )
        .await?;
        let own = env
            .catalog
            .set_own_storage(
                &id,
                &NewStorage {
                    bucket: bucket.clone(),
                    region: env.stack.region.clone(),
                    endpoint: None,
                    base_path: BasePath::new("byo")?,
                    sse: Sse::S3,
                    access: StorageAccess::AccessKeys {
                        access_key_id: user.keys.access_key_id.clone(),
                        secret_sealed: envelope.seal(
                            &SecretString::from(
                                user.keys.secret_access_key.expose_secret().to_owned(),
                            ),
                            &coffer_catalog::secret_context(&id, &user.keys.access_key_id),
                        ),
                    },
                },
            )
            .await?;
        env.catalog
            .record_storage_test(own.storage_id, true, "{}")
            .await?;
        env.catalog.enable_own_storage(&id).await?;
    }
    let worker = start_worker(
        &env,
        WorkerSettings {
            envelope_key: Some(envelope),
            ..small_part_settings(&env)
        },
    )
    .await?;
    let broker = env.broker().await?;
    let acme_job = request_backup(&broker, "acme", acme_sim.org_id().as_str()).await?;
    let globex_job = request_backup(&broker, "globex", GLOBEX_ORG).await?;
    let acme = wait_for_backup(&env, acme_job, Duration::from_secs(120)).await?;
    let globex = wait_for_backup(&env, globex_job, Duration::from_secs(120)).await?;
    worker.stop().await;

    for (backup, tenant) in [(&acme, "acme"), (&globex, "globex")] {
        let keys: Vec<String> = env
            .catalog
            .backup_objects(backup.backup_id)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert!(!keys.is_empty());
        assert!(
            keys.iter()
                .all(|k| k.starts_with(&format!("byo/{tenant}/"))),
            "{tenant}'s backup is under its own prefix: {keys:?}"
        );
    }
    assert!(
        list_keys(&env.s3_client, &env.bucket, "").await?.is_empty(),
        "nothing went to the vendor's bucket"
    );
    acme_sim.shutdown().await;
    globex_sim.shutdown().await;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asked_for_one_tenant_the_catalog_never_yields_another_tenants_backups_or_records()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let acme_sim = start_sim(5, 1, 50).await?;
    let globex_sim = globex_sim().await?;
    for (tenant, sim) in [("acme", &acme_sim), ("globex", &globex_sim)] {
        env.create_tenant_with(tenant, "", Sse::S3).await?;
        env.connect_org(tenant, sim).await?;
    }
    let (acme, globex) = (TenantId::new("acme")?, TenantId::new("globex")?);
    let (acme_org, globex_org) = (acme_sim.org_id().clone(), OrgId::new(GLOBEX_ORG)?);
    let worker = start_worker(&env, small_part_settings(&env)).await?;
    let broker = env.broker().await?;
    let acme_backup = wait_for_backup(
        &env,
        request_backup(&broker, "acme", acme_org.as_str()).await?,
        Duration::from_secs(120),
    )
    .await?;
    let globex_backup = wait_for_backup(
        &env,
        request_backup(&broker, "globex", GLOBEX_ORG).await?,
        Duration::from_secs(120),
    )
    .await?;
    let globex_before = digests(&env, &env.bucket, "globex/").await?;
    let catalog = &env.catalog;
    let ctx = BackupContext {
        worker_name: "isolation-test".to_owned(),
        catalog: catalog.clone(),
        storage: StorageClients::new(env.s3.clone(), VENDOR.to_owned(), None),
        settings: small_part_settings(&env),
    };

    // `coffer backups list`: globex's org under acme lists nothing.
    assert!(catalog.backups_of(&acme, &globex_org).await?.is_empty());
    assert_eq!(catalog.backups_of(&globex, &globex_org).await?.len(), 1);

    // A restore for acme naming globex's backup (with either org), or into globex's org.
    let (header, rows) = globex_sim.table("Account").expect("accounts");
    let record = rows[0][header.iter().position(|h| h == "Id").expect("Id")].clone();
    let restore = |org: &OrgId, backup, target: &OrgId| RestoreJob {
        job_id: JobId::generate(),
        tenant_id: acme.clone(),
        org_id: org.clone(),
        backup_id: Some(backup),
        as_of: None,
        target_org_id: target.clone(),
        scope: Scope {
            sobjects: vec![],
            record_ids: vec![record.clone()],
            child_depth: 0,
            parent_depth: 0,
        },
        mode: RestoreMode::Plan,
    };
    for org in [&acme_org, &globex_org] {
        let err = Box::pin(run_restore(
            &ctx,
            &restore(org, globex_backup.backup_id, org),
        ))
        .await
        .expect_err("acme restored from globex's backup");
        assert!(err.to_string().contains("is not a backup of org"), "{err}");
    }
    let err = Box::pin(run_restore(
        &ctx,
        &restore(&acme_org, acme_backup.backup_id, &globex_org),
    ))
    .await
    .expect_err("acme restored into globex's org");
    assert!(err.to_string().contains(GLOBEX_ORG), "{err}");
    assert!(
        catalog.restores_of(&globex).await?.is_empty(),
        "no restore was recorded for globex"
    );

    // `coffer backups record`: globex's record, asked for under acme, is not found.
    let found = coffer_worker::lookup::record_as_of(
        catalog,
        &ctx.storage,
        (&acme, &globex_org),
        &record,
        time::OffsetDateTime::now_utc(),
    )
    .await?;
    assert!(found.is_none(), "acme read globex's record: {found:?}");

    // `coffer verify --tenant acme` checks acme's objects only, and calls none of globex's stray.
    let report = coffer_worker::verify::verify_tenant(
        catalog,
        &ctx.storage,
        &acme,
        None,
        &coffer_worker::verify::VerifySettings::default(),
    )
    .await?;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.orgs.len(), 1);
    assert_eq!(report.orgs[0].org_id, acme_org);
    let text = format!("{report:?}");
    assert!(
        !text.contains("globex/") && !text.contains(GLOBEX_ORG),
        "{text}"
    );

    // `coffer erase --tenant acme --org <globex's org>` rewrites nothing of globex's.
    let erased = coffer_worker::janitor::erase::erase_records(
        &ctx,
        &acme,
        &globex_org,
        std::slice::from_ref(&record),
        "test",
    )
    .await?;
    assert_eq!(erased.parts_rewritten, 0, "{erased:?}");
    assert!(
        catalog
            .erased_records(&globex, &globex_org)
            .await?
            .is_empty()
    );

    // A backup job for acme naming globex's org is refused and writes nothing anywhere.
    let forged = request_backup(&broker, "acme", GLOBEX_ORG).await?;
    let dead = coffer_e2e::next_dead_letter(&broker, Duration::from_secs(30)).await?;
    assert_eq!(dead.message_id, Some(forged.to_string()));
    let reason = dead.reason.unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "org \"{GLOBEX_ORG}\" is not connected to tenant \"acme\""
        )),
        "{reason}"
    );
    assert!(catalog.backup_of_job(forged).await?.is_none());
    assert!(
        list_keys(&env.s3_client, &env.bucket, &format!("acme/{GLOBEX_ORG}/"))
            .await?
            .is_empty()
    );
    assert_eq!(
        digests(&env, &env.bucket, "globex/").await?,
        globex_before,
        "globex's objects are as they were"
    );
    assert_eq!(catalog.backups_of(&globex, &globex_org).await?.len(), 1);
    worker.stop().await;
    acme_sim.shutdown().await;
    globex_sim.shutdown().await;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_whose_ids_could_escape_a_prefix_are_refused_and_write_nothing() -> anyhow::Result<()>
{
    use coffer_proto::v1::job_envelope::Job;
    let env = TestEnv::new().await?;
    let sim = start_sim(3, 1, 50).await?;
    env.create_tenant_with("acme", "", Sse::S3).await?;
    env.connect_org("acme", &sim).await?;
    let org = sim.org_id().to_string();
    let worker = start_worker(&env, small_part_settings(&env)).await?;
    let broker = env.broker().await?;
    let publisher = broker.publisher().await?;
    let cases: [(&str, &str, Vec<String>); 5] = [
        ("../globex", org.as_str(), vec![]),
        ("acme/../globex", org.as_str(), vec![]),
        ("acme", "00D5g0000004Sim/..", vec![]),
        ("acme\n", org.as_str(), vec![]),
        ("acme", org.as_str(), vec!["../../globex/x".to_owned()]),
    ];
    for (tenant, org_id, sobjects) in &cases {
        let job = JobId::generate();
        let mut envelope = coffer_e2e::backup_envelope(job, tenant, org_id);
        if let Some(Job::BackupRequested(request)) = envelope.job.as_mut() {
            request.sobjects = sobjects.clone();
        }
        coffer_e2e::publish(&publisher, &envelope).await?;
        let dead = coffer_e2e::next_dead_letter(&broker, Duration::from_secs(30)).await?;
        assert_eq!(
            dead.message_id,
            Some(job.to_string()),
            "{tenant:?} {org_id:?}"
        );
        assert_eq!(
            dead.class.as_deref(),
            Some("permanent"),
            "{tenant:?} {org_id:?} {sobjects:?}: {:?}",
            dead.reason
        );
        assert!(catalog_has_no_backup(&env, job).await?, "{tenant:?}");
    }
    worker.stop().await;
    let keys = list_keys(&env.s3_client, &env.bucket, "").await?;
    assert!(keys.is_empty(), "a refused job wrote {keys:?}");
    sim.shutdown().await;
    env.cleanup().await
}

async fn catalog_has_no_backup(env: &TestEnv, job: JobId) -> anyhow::Result<bool> {
    Ok(env.catalog.backup_of_job(job).await?.is_none())
}
