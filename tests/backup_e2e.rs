//! The first path, end to end: a BackupRequested on the real queue, a worker, the real bucket
//! (checked with an independent S3 read) and the real catalog.

use std::time::Duration;

use coffer_catalog::{BackupState, NewObject, ObjectKind};
use coffer_core::{JobId, OrgId, TenantId};
use coffer_e2e::*;
use coffer_testkit::{TEST_ORG_ID, TestEnv, start_sim};
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_through_the_queue_lands_encrypted_in_the_bucket_and_matches_the_org()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(40, 3, 25).await?;
    env.create_tenant("acme", "backups/prod").await?;
    env.connect_org("acme", &sim).await?;
    let worker = start_worker(&env, small_part_settings(&env)).await?;
    let broker = env.broker().await?;

    let job = request_backup(&broker, "acme", TEST_ORG_ID).await?;
    let backup = wait_for_backup(&env, job, WAIT).await?;
    worker.stop().await;

    // The bucket, read independently: exactly the catalog's objects, under the tenant's prefix.
    let prefix = format!(
        "backups/prod/acme/{TEST_ORG_ID}/backups/{}/",
        backup.backup_id
    );
    let catalog_objects = env.catalog.backup_objects(backup.backup_id).await?;
    let bucket_keys = list_keys(&env.s3_client, &env.bucket, &prefix).await?;
    let catalog_keys: Vec<String> = catalog_objects.iter().map(|o| o.key.clone()).collect();
    assert_eq!(
        bucket_keys, catalog_keys,
        "bucket and catalog disagree on the objects"
    );
    assert!(bucket_keys.iter().any(|k| k.ends_with("/manifest.json")));

    // Every object: SSE-KMS with the tenant's key, size and checksum as recorded.
    let mut tables = TablesByObject::new();
    for object in &catalog_objects {
        let read = read_object(&env.s3_client, &env.bucket, &object.key).await?;
        assert_eq!(
            read.sse.as_deref(),
            Some("aws:kms"),
            "{} is not SSE-KMS",
            object.key
        );
        let key = read.kms_key.unwrap_or_default();
        assert!(
            key.ends_with(&env.kms_key.key_id),
            "{} encrypted with {key}, not the tenant's key",
            object.key
        );
        assert_eq!(read.length as u64, object.size, "{} size", object.key);
        assert_eq!(
            read.body.len() as u64,
            object.size,
            "{} body size",
            object.key
        );
        assert_eq!(
            hex::encode(Sha256::digest(&read.body)),
            object.sha256,
            "{} checksum",
            object.key
        );
        if object.kind == ObjectKind::Records {
            let (header, rows) = gunzip_csv(&read.body)?;
            assert_eq!(rows.len() as u64, object.rows, "{} row count", object.key);
            let sobject = object.sobject.clone().unwrap_or_default();
            let entry = tables
                .entry(sobject)
                .or_insert_with(|| (header.clone(), Vec::new()));
            assert_eq!(
                entry.0, header,
                "{} header differs between parts",
                object.key
            );
            entry.1.extend(rows);
        }
    }

    // The rows equal the simulator's rows, object by object; small parts made several parts.
    let mut total_rows = 0u64;
    for name in sim.sobjects() {
        let (want_header, mut want_rows) = sim.table(&name).expect("sim table");
        let (header, mut rows) = tables
            .remove(&name)
            .unwrap_or_else(|| panic!("no records of {name} in the bucket"));
        assert_eq!(header, want_header, "{name} columns");
        want_rows.sort();
        rows.sort();
        assert_eq!(rows.len(), want_rows.len(), "{name} row count");
        assert!(rows == want_rows, "{name} rows differ from the org's");
        total_rows += rows.len() as u64;
    }
    assert!(
        tables.is_empty(),
        "objects the org does not have: {:?}",
        tables.keys()
    );
    let contact_parts = catalog_objects
        .iter()
        .filter(|o| o.sobject.as_deref() == Some("Contact"))
        .count();
    assert!(
        contact_parts > 1,
        "expected Contact to span several parts, got {contact_parts}"
    );

    // The catalog's totals and the manifest agree with the objects.
    assert_eq!(backup.state, BackupState::Complete);
    assert_eq!(backup.record_count, total_rows);
    assert_eq!(backup.objects as usize, catalog_objects.len());
    assert_eq!(
        backup.bytes,
        catalog_objects.iter().map(|o| o.size).sum::<u64>()
    );
    let manifest_key = format!("{prefix}manifest.json");
    let manifest: serde_json::Value = serde_json::from_slice(
        &read_object(&env.s3_client, &env.bucket, &manifest_key)
            .await?
            .body,
    )?;
    let listed = manifest["objects"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(
        listed,
        catalog_objects.len() - 1,
        "manifest lists every records part"
    );
    assert!(
        manifest["schema"]["Account"]["fields"].is_array(),
        "manifest carries the schema snapshot"
    );

    // Nothing left on the queue: the job was acked.
    assert_eq!(broker.queue_depth(broker.topology().jobs_queue()).await?, 0);
    sim.shutdown().await;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_tenant_messages_are_dead_lettered_and_the_worker_goes_on()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(5, 1, 100).await?;
    env.create_tenant("acme", "").await?;
    env.connect_org("acme", &sim).await?;
    let worker = start_worker(&env, small_part_settings(&env)).await?;
    let broker = env.broker().await?;
    let publisher = broker.publisher().await?;

    publisher
        .publish_raw_job(b"this is not a protobuf job \xff\xfe")
        .await?;
    let unknown = request_backup(&broker, "nobody", TEST_ORG_ID).await?;
    let good = request_backup(&broker, "acme", TEST_ORG_ID).await?;

    // The worker carried on: the valid job after the bad ones completed.
    wait_for_backup(&env, good, WAIT).await?;
    let mut letters = Vec::new();
    while letters.len() < 2 {
        let letter = next_dead_letter(&broker, WAIT).await?;
        letters.push(letter);
    }
    worker.stop().await;

    let malformed = letters
        .iter()
        .find(|l| l.message_id.is_none())
        .expect("the malformed message");
    let reason = malformed.reason.clone().unwrap_or_default();
    assert!(reason.contains("malformed job message"), "reason: {reason}");
    assert_eq!(malformed.class.as_deref(), Some("permanent"));
    assert_eq!(malformed.payload, b"this is not a protobuf job \xff\xfe");

    let for_unknown = letters
        .iter()
        .find(|l| l.message_id.as_deref() == Some(&unknown.to_string()))
        .expect("unknown tenant");
    let reason = for_unknown.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("unknown tenant \"nobody\""),
        "reason: {reason}"
    );
    assert_eq!(for_unknown.class.as_deref(), Some("permanent"));
    assert!(
        env.catalog.backup_of_job(unknown).await?.is_none(),
        "no backup for an unknown tenant"
    );
    assert!(
        broker.get_dead_letter().await?.is_none(),
        "only the two bad messages are dead letters"
    );
    sim.shutdown().await;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_job_does_not_create_a_second_backup() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(10, 2, 100).await?;
    env.create_tenant("acme", "").await?;
    env.connect_org("acme", &sim).await?;
    let worker = start_worker(&env, small_part_settings(&env)).await?;
    let publisher = env.broker().await?.publisher().await?;

    let job = JobId::generate();
    let envelope = backup_envelope(job, "acme", TEST_ORG_ID);
    publish(&publisher, &envelope).await?;
    let first = wait_for_backup(&env, job, WAIT).await?;
    let keys_before = list_keys(&env.s3_client, &env.bucket, "acme/").await?;
    publish(&publisher, &envelope).await?;
    eventually("the duplicate to be handled", WAIT, || async {
        Ok(env.catalog.job(job).await?.filter(|j| j.attempts >= 2))
    })
    .await?;
    worker.stop().await;

    let backups = env
        .catalog
        .backups_of(&TenantId::new("acme")?, &OrgId::new(TEST_ORG_ID)?)
        .await?;
    assert_eq!(backups.len(), 1, "one job, one backup");
    assert_eq!(
        backups[0], first,
        "the backup was not touched by the duplicate"
    );
    assert_eq!(
        list_keys(&env.s3_client, &env.bucket, "acme/").await?,
        keys_before
    );
    sim.shutdown().await;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kms_key_fails_the_backup_with_a_message_that_names_the_fix()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(3, 1, 100).await?;
    let mut storage = env.create_tenant("acme", "").await?.storage.settings;
    storage.sse = coffer_catalog::Sse::Kms {
        key_id: "00000000-0000-0000-0000-000000000000".to_owned(),
        bucket_key: false,
    };
    env.catalog
        .put_tenant(&TenantId::new("acme")?, "Acme", &storage)
        .await?;
    env.connect_org("acme", &sim).await?;
    let worker = start_worker(&env, small_part_settings(&env)).await?;
    let broker = env.broker().await?;

    let job = request_backup(&broker, "acme", TEST_ORG_ID).await?;
    let letter = next_dead_letter(&broker, WAIT).await?;
    worker.stop().await;

    let reason = letter.reason.unwrap_or_default();
    assert!(reason.contains("KMS key"), "reason: {reason}");
    assert!(
        reason.contains("kms:GenerateDataKey"),
        "reason names the permission to grant: {reason}"
    );
    let backup = env.catalog.backup_of_job(job).await?.expect("backup row");
    assert_eq!(backup.state, BackupState::Failed);
    let uploads = env
        .s3_client
        .list_multipart_uploads()
        .bucket(&env.bucket)
        .send()
        .await?;
    assert!(
        uploads.uploads().is_empty(),
        "no multipart upload left open"
    );
    sim.shutdown().await;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_job_resumes_its_interrupted_backup_and_removes_what_it_left()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(10, 2, 100).await?;
    let tenant = env.create_tenant("acme", "").await?;
    env.connect_org("acme", &sim).await?;

    // A first attempt that crashed: its backup row is running, and it had written a part that the
    // org's data no longer fills (part 7 of Contact).
    let job = JobId::generate();
    let (tenant_id, org_id) = (TenantId::new("acme")?, OrgId::new(TEST_ORG_ID)?);
    let interrupted = env
        .catalog
        .begin_backup(job, &tenant_id, &org_id, tenant.storage.storage_id, "full")
        .await?;
    let stale = format!(
        "acme/{TEST_ORG_ID}/backups/{}/records/Contact/part-00007.csv.gz",
        interrupted.backup_id
    );
    let body = aws_sdk_s3::primitives::ByteStream::from_static(b"left by a crashed attempt");
    env.s3_client
        .put_object()
        .bucket(&env.bucket)
        .key(&stale)
        .body(body)
        .send()
        .await?;
    let stale_row = NewObject {
        key: stale.clone(),
        kind: ObjectKind::Records,
        sobject: Some("Contact".to_owned()),
        part: Some(7),
        size: 25,
        sha256: "0".repeat(64),
        rows: 3,
    };
    env.catalog
        .record_object(interrupted.backup_id, &stale_row)
        .await?;
    // It had also completed Account's first part but crashed before recording it: the retry
    // writes that key again (objects are created only if absent, so it must clear it first).
    let unrecorded = format!(
        "acme/{TEST_ORG_ID}/backups/{}/records/Account/part-00001.csv.gz",
        interrupted.backup_id
    );
    env.s3_client
        .put_object()
        .bucket(&env.bucket)
        .key(&unrecorded)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"unrecorded",
        ))
        .send()
        .await?;

    // The broker redelivers the job; a worker resumes the same backup.
    let worker = start_worker(&env, small_part_settings(&env)).await?;
    publish(
        &env.broker().await?.publisher().await?,
        &backup_envelope(job, "acme", TEST_ORG_ID),
    )
    .await?;
    let backup = wait_for_backup(&env, job, WAIT).await?;
    worker.stop().await;

    assert_eq!(
        backup.backup_id, interrupted.backup_id,
        "the redelivery resumed the same backup"
    );
    assert_eq!(env.catalog.backups_of(&tenant_id, &org_id).await?.len(), 1);
    let keys = list_keys(&env.s3_client, &env.bucket, "acme/").await?;
    assert!(
        !keys.contains(&stale),
        "the stale part is still in the bucket"
    );
    let objects = env.catalog.backup_objects(backup.backup_id).await?;
    assert!(
        objects.iter().all(|o| o.key != stale),
        "the stale part is still in the catalog"
    );
    let backup_prefix = format!("acme/{TEST_ORG_ID}/backups/{}/", backup.backup_id);
    let backup_keys: Vec<String> = keys
        .iter()
        .filter(|k| k.starts_with(&backup_prefix))
        .cloned()
        .collect();
    assert_eq!(
        backup_keys,
        objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>(),
        "the backup's keys (file bodies live under files/, shared by the org's backups)"
    );
    let rewritten = objects
        .iter()
        .find(|o| o.key == unrecorded)
        .expect("Account part 1 written by the retry");
    let bytes = read_object(&env.s3_client, &env.bucket, &unrecorded).await?;
    assert_eq!(
        hex::encode(Sha256::digest(&bytes.body)),
        rewritten.sha256,
        "the object at the key is the retry's, as recorded"
    );
    let org_rows: usize = sim
        .sobjects()
        .iter()
        .filter_map(|s| sim.table(s))
        .map(|(_, rows)| rows.len())
        .sum();
    assert_eq!(
        backup.record_count, org_rows as u64,
        "counts only what this attempt wrote"
    );
    sim.shutdown().await;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_org_is_retried_then_dead_lettered_and_its_backup_marked_failed()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(3, 1, 100).await?;
    env.create_tenant("acme", "").await?;
    env.connect_org("acme", &sim).await?;
    sim.shutdown().await; // the org's login URL now refuses connections: a retryable failure

    let worker = start_worker(&env, small_part_settings(&env)).await?;
    let broker = env.broker().await?;
    let job = request_backup(&broker, "acme", TEST_ORG_ID).await?;
    let letter = next_dead_letter(&broker, WAIT).await?;
    worker.stop().await;

    let attempts = env.queue.max_attempts;
    let reason = letter.reason.unwrap_or_default();
    assert!(
        reason.starts_with(&format!("gave up after {attempts} attempts")),
        "reason: {reason}"
    );
    assert_eq!(letter.class.as_deref(), Some("retryable"));
    let job_row = env.catalog.job(job).await?.expect("job row");
    assert_eq!(
        job_row.attempts, attempts,
        "one catalog attempt per delivery"
    );
    assert_eq!(job_row.state, coffer_catalog::JobState::Failed);
    let backup = env.catalog.backup_of_job(job).await?.expect("backup row");
    assert_eq!(
        backup.state,
        BackupState::Failed,
        "the last attempt fails the backup for good"
    );
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_tasks_and_a_dead_workers_task_is_taken_over() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(10, 2, 100).await?;
    let tenant = env.create_tenant("acme", "").await?;
    env.connect_org("acme", &sim).await?;

    // A worker that planned this backup earlier and died holding the Account task's lease.
    let job = JobId::generate();
    let (tenant_id, org_id) = (TenantId::new("acme")?, OrgId::new(TEST_ORG_ID)?);
    let backup = env
        .catalog
        .begin_backup(job, &tenant_id, &org_id, tenant.storage.storage_id, "full")
        .await?;
    let describe = sim_describe(&sim, "Account").await?;
    env.catalog
        .plan_tasks(backup.backup_id, &[("Account".to_owned(), describe)])
        .await?;
    env.catalog
        .acquire_task(backup.backup_id, 1, "dead-worker", Duration::from_secs(3))
        .await?;

    let settings = || coffer_worker::WorkerSettings {
        task_lease: Duration::from_secs(3),
        ..small_part_settings(&env)
    };
    let first = start_worker(&env, settings()).await?;
    let second = start_worker(&env, settings()).await?;
    publish(
        &env.broker().await?.publisher().await?,
        &backup_envelope(job, "acme", TEST_ORG_ID),
    )
    .await?;
    let done = wait_for_backup(&env, job, WAIT).await?;
    first.stop().await;
    second.stop().await;

    assert_eq!(done.backup_id, backup.backup_id);
    let tasks = env.catalog.tasks(backup.backup_id).await?;
    assert_eq!(tasks.len(), 1, "the recorded plan was kept");
    assert!(tasks[0].done);
    assert_eq!(
        tasks[0].attempts, 2,
        "taken over once, after the dead lease expired"
    );
    let objects = env.catalog.backup_objects(backup.backup_id).await?;
    let keys = list_keys(&env.s3_client, &env.bucket, "acme/").await?;
    assert_eq!(
        keys,
        objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>()
    );
    let (_, accounts) = sim.table("Account").expect("accounts");
    assert_eq!(done.record_count, accounts.len() as u64);

    // A fresh backup of every object, shared by both workers: each task runs exactly once.
    let first = start_worker(&env, settings()).await?;
    let second = start_worker(&env, settings()).await?;
    let job = request_backup(&env.broker().await?, "acme", TEST_ORG_ID).await?;
    let full = wait_for_backup(&env, job, WAIT).await?;
    first.stop().await;
    second.stop().await;
    let tasks = env.catalog.tasks(full.backup_id).await?;
    assert_eq!(tasks.len(), sim.sobjects().len(), "one task per object");
    assert!(tasks.iter().all(|t| t.done && t.attempts == 1), "{tasks:?}");
    let org_rows: usize = sim
        .sobjects()
        .iter()
        .filter_map(|s| sim.table(s))
        .map(|(_, rows)| rows.len())
        .sum();
    assert_eq!(full.record_count, org_rows as u64);
    sim.shutdown().await;
    env.cleanup().await
}

/// The simulator's describe of `sobject`, as the planner records it.
async fn sim_describe(sim: &coffer_sfsim::SimHandle, sobject: &str) -> anyhow::Result<String> {
    let client = coffer_salesforce::SalesforceClient::connect(coffer_salesforce::OrgConnection {
        login_url: sim.base_url(),
        client_id: sim.client_id().to_owned(),
        client_secret: secrecy::SecretString::from(sim.client_secret().to_owned()),
        api_version: "62.0".to_owned(),
    })
    .await?;
    let describe = client
        .describe_sobject(&coffer_core::SObjectName::new(sobject)?)
        .await?;
    Ok(serde_json::to_string(&describe)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_message_was_lost_is_published_again_and_the_backup_completes()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(5, 1, 100).await?;
    let tenant = env.create_tenant("acme", "").await?;
    env.connect_org("acme", &sim).await?;
    // A plan whose task message never reached the queue (its holder died after its duplicate
    // was acked, say): the task sits pending and nobody will deliver it.
    let job = JobId::generate();
    let (tenant_id, org_id) = (TenantId::new("acme")?, OrgId::new(TEST_ORG_ID)?);
    let backup = env
        .catalog
        .begin_backup(job, &tenant_id, &org_id, tenant.storage.storage_id, "full")
        .await?;
    let describe = sim_describe(&sim, "Contact").await?;
    env.catalog
        .plan_tasks(backup.backup_id, &[("Contact".to_owned(), describe)])
        .await?;
    let worker = start_worker(&env, small_part_settings(&env)).await?;
    let broker = env.broker().await?;
    let reaper = coffer_worker::Worker::new(env.catalog.clone(), small_part_settings(&env))
        .with_events(broker.publisher().await?);

    let idle = Duration::from_millis(500);
    tokio::time::sleep(idle * 2).await;
    assert_eq!(reaper.republish_stranded_tasks(idle).await?, 1);
    assert_eq!(
        reaper.republish_stranded_tasks(idle).await?,
        0,
        "a task just published is not published again at once"
    );
    let done = wait_for_backup(&env, job, WAIT).await?;
    worker.stop().await;
    let (_, contacts) = sim.table("Contact").expect("contacts");
    assert_eq!(done.record_count, contacts.len() as u64);
    assert_eq!(
        reaper.republish_stranded_tasks(Duration::ZERO).await?,
        0,
        "nothing of a complete backup is stranded"
    );
    sim.shutdown().await;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zstd_backup_writes_csv_zst_parts_that_decode_to_the_org() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(20, 2, 25).await?;
    env.create_tenant("acme", "").await?;
    env.connect_org("acme", &sim).await?;
    let settings = coffer_worker::WorkerSettings {
        compression: coffer_core::layout::Compression::Zstd,
        ..small_part_settings(&env)
    };
    let worker = start_worker(&env, settings).await?;
    let broker = env.broker().await?;
    let job = request_backup(&broker, "acme", TEST_ORG_ID).await?;
    let backup = wait_for_backup(&env, job, WAIT).await?;
    worker.stop().await;

    // Every records part is a .csv.zst that zstd (not Coffer's reader) decodes to the org's rows.
    let objects = env.catalog.backup_objects(backup.backup_id).await?;
    let mut tables = TablesByObject::new();
    for object in objects.iter().filter(|o| o.kind == ObjectKind::Records) {
        assert!(object.key.ends_with(".csv.zst"), "{}", object.key);
        let read = read_object(&env.s3_client, &env.bucket, &object.key).await?;
        let csv_bytes = zstd::decode_all(read.body.as_slice())?;
        let mut reader = csv::Reader::from_reader(csv_bytes.as_slice());
        let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
        let rows: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.map(|r| r.iter().map(str::to_owned).collect()))
            .collect::<Result<_, _>>()?;
        let entry = tables
            .entry(object.sobject.clone().unwrap_or_default())
            .or_insert_with(|| (header, Vec::new()));
        entry.1.extend(rows);
    }
    assert_tables_equal_org(&sim, tables);

    // The manifest says how parts are compressed; a record reads back through the index.
    let manifest_key = objects
        .iter()
        .find(|o| o.kind == ObjectKind::Manifest)
        .expect("manifest")
        .key
        .clone();
    let manifest: serde_json::Value = serde_json::from_slice(
        &read_object(&env.s3_client, &env.bucket, &manifest_key)
            .await?
            .body,
    )?;
    let formats: Vec<&str> = manifest["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|o| o["format"].as_str())
        .collect();
    assert!(!formats.is_empty() && formats.iter().all(|f| *f == "csv+zstd"));
    let (header, rows) = sim.table("Account").expect("accounts");
    let id = header.iter().position(|h| h == "Id").expect("Id");
    let name = header.iter().position(|h| h == "Name").expect("Name");
    let storage =
        coffer_worker::storage::StorageClients::new(env.s3.clone(), "coffer".to_owned(), None);
    let read = coffer_worker::lookup::record_as_of(
        &env.catalog,
        &storage,
        (&TenantId::new("acme")?, sim.org_id()),
        &rows[3][id],
        backup.completed_at.expect("completed"),
    )
    .await?
    .expect("the account");
    assert!(
        read.fields
            .contains(&("Name".to_owned(), rows[3][name].clone()))
    );
    sim.shutdown().await;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_salesforce_times_out_on_is_read_in_halves_of_its_id_range() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(20, 3, 25).await?;
    env.create_tenant("acme", "").await?;
    env.connect_org("acme", &sim).await?;
    // Salesforce gives up (QUERY_TIMEOUT) on any Bulk query over 15 rows.
    sim.query_timeout_above(Some(15));
    let worker = start_worker(&env, small_part_settings(&env)).await?;
    let broker = env.broker().await?;
    let job = request_backup(&broker, "acme", TEST_ORG_ID).await?;
    let backup = wait_for_backup(&env, job, WAIT).await?;
    worker.stop().await;
    sim.query_timeout_above(None);

    // Every object's rows, each once, though Contact (60 rows) took several halvings.
    let mut tables = TablesByObject::new();
    for object in env.catalog.backup_objects(backup.backup_id).await? {
        if object.kind != ObjectKind::Records {
            continue;
        }
        let read = read_object(&env.s3_client, &env.bucket, &object.key).await?;
        let (header, rows) = gunzip_csv(&read.body)?;
        let entry = tables
            .entry(object.sobject.clone().unwrap_or_default())
            .or_insert_with(|| (header, Vec::new()));
        entry.1.extend(rows);
    }
    assert_tables_equal_org(&sim, tables);
    assert!(
        sim.jobs_created() > 2 * sim.sobjects().len() as u64,
        "only {} query jobs: the reads were not split",
        sim.jobs_created()
    );
    assert!(broker.get_dead_letter().await?.is_none());
    sim.shutdown().await;
    env.cleanup().await
}
