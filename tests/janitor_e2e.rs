//! The retention janitor through the real bucket, catalog and queue, over real backups of a
//! simulated org, back-dated: what the policy drops goes (objects, rows, file bodies no kept
//! backup references, uploads left open, orphans); what is kept (held, newest, within the
//! policy) keeps every object and body it needs; a mark waits out the grace period and a hold
//! placed meanwhile saves the backup; on a versioned bucket the versions go when the tenant
//! allows it. Every sweep ends with the bucket and the catalog agreeing.

use std::time::Duration;

use coffer_catalog::{BackupRecord, HoldScope};
use coffer_core::layout::{BasePath, OrgPrefix};
use coffer_core::retention::{Decision, Policy};
use coffer_core::sweep::MarkStage;
use coffer_core::{BackupId, JobId, OrgId, TenantId};
use coffer_e2e::*;
use coffer_proto::v1::{JobEnvelope, RetentionSweepRequested, job_envelope::Job};
use coffer_queue::OutgoingJob;
use coffer_sfsim::SimHandle;
use coffer_testkit::{TestEnv, consistency, start_sim};
use coffer_worker::janitor::sweep::{Janitor, OrgSweep, SweepSettings, sweep_org};
use coffer_worker::storage::StorageClients;

const WAIT: Duration = Duration::from_secs(120);

struct Fixture {
    env: TestEnv,
    sim: SimHandle,
    tenant: TenantId,
    org: OrgId,
    clients: StorageClients,
}

impl Fixture {
    async fn new(accounts: usize) -> anyhow::Result<Fixture> {
        let env = TestEnv::new().await?;
        let sim = start_sim(accounts, 2, 25).await?;
        // SSE-S3: these tests read objects back while others write (see create_tenant_with).
        env.create_tenant_with("acme", "coffer", coffer_catalog::Sse::S3)
            .await?;
        env.connect_org("acme", &sim).await?;
        let clients = StorageClients::new(env.s3.clone(), "coffer".to_owned(), None);
        let org = sim.org_id().clone();
        Ok(Fixture {
            env,
            sim,
            tenant: TenantId::new("acme")?,
            org,
            clients,
        })
    }

    /// What the erasure runs with (as `coffer erase` builds it).
    fn context(&self) -> coffer_worker::backup::BackupContext {
        coffer_worker::backup::BackupContext {
            worker_name: "erase-test".to_owned(),
            catalog: self.env.catalog.clone(),
            storage: StorageClients::new(self.env.s3.clone(), "coffer".to_owned(), None),
            settings: small_part_settings(&self.env),
        }
    }

    fn prefix(&self) -> OrgPrefix {
        OrgPrefix::new(
            &BasePath::new("coffer").expect("a valid base path"),
            &self.tenant,
            &self.org,
        )
    }

    async fn backup(&self, days_ago: u32) -> anyhow::Result<BackupRecord> {
        let broker = self.env.broker().await?;
        let job = request_backup(&broker, "acme", self.org.as_str()).await?;
        let backup = wait_for_backup(&self.env, job, WAIT).await?;
        coffer_testkit::history::back_date(&self.env.catalog, backup.backup_id, days_ago).await?;
        Ok(backup)
    }

    async fn sweep(&self, settings: SweepSettings) -> anyhow::Result<OrgSweep> {
        let janitor = Janitor {
            catalog: &self.env.catalog,
            storage: &self.clients,
            settings: &settings,
            name: "janitor-test",
        };
        Ok(sweep_org(&janitor, &self.tenant, &self.org).await?)
    }

    async fn keys_of(&self, backup: BackupId) -> anyhow::Result<Vec<String>> {
        list_keys(
            &self.env.s3_client,
            &self.env.bucket,
            &self.prefix().backup_prefix(&backup),
        )
        .await
    }

    /// Every object and body a backup's catalog rows name is in the bucket with its size.
    async fn assert_restorable(&self, backup: BackupId) -> anyhow::Result<()> {
        let c = &self.env.catalog;
        let storage_id = c.backup(backup).await?.expect("backup row").storage_id;
        let bucket = c.storage(storage_id).await?.settings.bucket;
        let objects = c.backup_objects(backup).await?;
        assert!(!objects.is_empty(), "backup {backup} has objects");
        for object in objects {
            let read = read_object(&self.env.s3_client, &bucket, &object.key).await?;
            assert_eq!(read.length as u64, object.size, "{}", object.key);
        }
        for sha in self.referenced_bodies(backup).await? {
            let body = c
                .file_object(&self.tenant, &self.org, storage_id, &sha)
                .await?;
            let body = body.unwrap_or_else(|| panic!("body {sha} of backup {backup} lost its row"));
            read_object(&self.env.s3_client, &bucket, &body.key).await?;
        }
        Ok(())
    }

    async fn referenced_bodies(&self, backup: BackupId) -> anyhow::Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT sha256 FROM backup_files WHERE backup_id = ?")
                .bind(backup.to_string())
                .fetch_all(self.env.catalog.pool())
                .await?,
        )
    }

    async fn assert_consistent(&self) -> anyhow::Result<()> {
        let problems = consistency::problems(
            &self.env.catalog,
            &self.env.s3_client,
            &self.env.bucket,
            &BasePath::new("coffer")?,
            &self.tenant,
            &self.org,
        )
        .await?;
        assert!(
            problems.is_empty(),
            "bucket and catalog disagree: {problems:#?}"
        );
        Ok(())
    }

    async fn assert_gone(&self, backup: BackupId) -> anyhow::Result<()> {
        assert!(
            self.env.catalog.backup(backup).await?.is_none(),
            "backup {backup} row"
        );
        assert!(
            self.keys_of(backup).await?.is_empty(),
            "objects of {backup}"
        );
        let marks = self.env.catalog.retention_marks(&self.tenant).await?;
        let mark = marks
            .iter()
            .find(|m| m.backup_id == backup)
            .expect("a mark");
        assert_eq!(mark.stage, MarkStage::Deleted);
        assert!(mark.deleted_at.is_some());
        Ok(())
    }
}

fn at_once() -> SweepSettings {
    SweepSettings {
        grace: Duration::ZERO,
        stale_upload_age: Duration::ZERO,
        ..SweepSettings::default()
    }
}

async fn open_upload(env: &TestEnv, key: &str) -> anyhow::Result<()> {
    env.s3_client
        .create_multipart_upload()
        .bucket(&env.bucket)
        .key(key)
        .send()
        .await?;
    Ok(())
}

async fn put(env: &TestEnv, key: &str, body: &'static [u8]) -> anyhow::Result<()> {
    env.s3_client
        .put_object()
        .bucket(&env.bucket)
        .key(key)
        .body(body.to_vec().into())
        .send()
        .await?;
    Ok(())
}

fn expired(sweep: &OrgSweep) -> Vec<BackupId> {
    let mut ids: Vec<BackupId> = sweep.expired.iter().map(|e| e.backup_id).collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<BackupId>) -> Vec<BackupId> {
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_deletes_what_the_policy_drops_and_keeps_all_a_kept_backup_needs()
-> anyhow::Result<()> {
    let f = Fixture::new(30).await?;
    let env = &f.env;
    let c = &env.catalog;
    let worker = start_worker(
        env,
        coffer_worker::WorkerSettings {
            retention: at_once(),
            ..small_part_settings(env)
        },
    )
    .await?;
    let held = f.backup(40).await?;
    // An attachment changes: its old body is referenced by the held backup only.
    let (header, rows) = f.sim.table("Attachment").expect("attachments");
    let id = header.iter().position(|h| h == "Id").unwrap();
    let changed = rows[0][id].clone();
    let old_body = f.sim.blob("Attachment", &changed, "Body").unwrap();
    f.sim.set_blob(
        "Attachment",
        &changed,
        "Body",
        b"a new body for the attachment",
    )?;
    let dropped = f.backup(30).await?;
    let newest = f.backup(0).await?;
    // A failed backup of three days ago left a part, and an upload, under its prefix.
    let failed = c
        .begin_backup(
            JobId::generate(),
            &f.tenant,
            &f.org,
            held.storage_id,
            "full",
        )
        .await?;
    c.fail_backup(failed.backup_id, "gave up").await?;
    coffer_testkit::history::back_date(c, failed.backup_id, 3).await?;
    let failed_prefix = f.prefix().backup_prefix(&failed.backup_id);
    put(
        env,
        &format!("{failed_prefix}records/Account/part-00001.csv.gz"),
        b"partial",
    )
    .await?;
    open_upload(
        env,
        &format!("{failed_prefix}records/Contact/part-00001.csv.gz"),
    )
    .await?;
    // A body a crashed backup stored without recording it, and an upload a crash left open.
    let orphan = format!("{}ff/{}", f.prefix().files_prefix(), "f".repeat(64));
    put(env, &orphan, b"orphan body").await?;
    open_upload(
        env,
        &format!(
            "{}records/Account/part-00099.csv.gz",
            f.prefix().backup_prefix(&newest.backup_id)
        ),
    )
    .await?;
    let old_sha = hex_sha256(&old_body);
    let old_key = f.prefix().file_key(&old_sha)?;
    assert!(
        f.referenced_bodies(held.backup_id)
            .await?
            .contains(&old_sha)
    );
    assert!(
        !f.referenced_bodies(newest.backup_id)
            .await?
            .contains(&old_sha)
    );

    c.put_retention_policy(
        &f.tenant,
        None,
        &Policy {
            keep_last: Some(1),
            ..Policy::default()
        },
    )
    .await?;
    c.place_hold(
        &f.tenant,
        &HoldScope::Backup(held.backup_id),
        "litigation 7",
    )
    .await?;

    let first = f.sweep(at_once()).await?;
    assert!(first.failures.is_empty(), "{:?}", first.failures);
    assert_eq!(
        expired(&first),
        sorted(vec![dropped.backup_id, failed.backup_id])
    );
    // The plan is stored, with the rule behind each decision.
    let stored = c.sweep_plan(first.sweep_id).await?.expect("stored plan");
    assert!(
        stored.contains("\"hold\"")
            && stored.contains("\"newest\"")
            && stored.contains("\"failed\""),
        "{stored}"
    );
    for gone in [dropped.backup_id, failed.backup_id] {
        f.assert_gone(gone).await?;
    }
    for kept in [held.backup_id, newest.backup_id] {
        f.assert_restorable(kept).await?;
    }
    // The old body stays: the held backup references it. The orphan and the uploads are gone.
    read_object(&env.s3_client, &env.bucket, &old_key).await?;
    let files = first.files.as_ref().expect("file sweep ran");
    assert_eq!(files.orphans, 1);
    assert!(
        list_keys(&env.s3_client, &env.bucket, &orphan)
            .await?
            .is_empty()
    );
    assert_eq!(first.uploads_aborted, 1);
    assert_eq!(
        first.expired.iter().map(|e| e.uploads_aborted).sum::<u64>(),
        1
    );
    f.assert_consistent().await?;

    // The hold is released; the next sweep comes as a message to the worker.
    let hold = c.holds(&f.tenant).await?[0].hold_id;
    c.release_hold(&f.tenant, hold).await?;
    request_sweep(env, "acme").await?;
    eventually("the released backup deleted", WAIT, || async {
        Ok(c.backup(held.backup_id).await?.is_none().then_some(()))
    })
    .await?;
    f.assert_gone(held.backup_id).await?;
    eventually("its body deleted", WAIT, || async {
        let row = c
            .file_object(&f.tenant, &f.org, held.storage_id, &old_sha)
            .await?;
        Ok(row.is_none().then_some(()))
    })
    .await?;
    assert!(
        list_keys(&env.s3_client, &env.bucket, &old_key)
            .await?
            .is_empty()
    );
    f.assert_restorable(newest.backup_id).await?;
    f.assert_consistent().await?;
    let plan = c.retention_facts(&f.tenant, &f.org).await?;
    assert_eq!(plan.len(), 1, "only the newest backup is left");
    worker.stop().await;
    f.env.cleanup().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mark_waits_out_the_grace_period_and_a_hold_placed_meanwhile_saves_the_backup()
-> anyhow::Result<()> {
    let f = Fixture::new(6).await?;
    let c = &f.env.catalog;
    let worker = start_worker(&f.env, small_part_settings(&f.env)).await?;
    let old = f.backup(10).await?;
    f.backup(0).await?;
    c.put_retention_policy(
        &f.tenant,
        None,
        &Policy {
            keep_days: Some(7),
            ..Policy::default()
        },
    )
    .await?;
    let grace = SweepSettings {
        grace: Duration::from_secs(3600),
        ..SweepSettings::default()
    };
    let dry = f
        .sweep(SweepSettings {
            dry_run: true,
            ..grace.clone()
        })
        .await?;
    assert!(
        dry.plan.decisions.iter().any(
            |d| matches!(d, Decision::Delete { backup_id, .. } if *backup_id == old.backup_id)
        )
    );
    assert!(dry.marked.is_empty(), "a dry run marks nothing");

    let marked = f.sweep(grace.clone()).await?;
    assert_eq!(marked.marked, vec![old.backup_id]);
    assert!(
        marked.expired.is_empty(),
        "nothing goes before the grace period is over"
    );
    f.assert_restorable(old.backup_id).await?;

    let hold = c
        .place_hold(&f.tenant, &HoldScope::Org(f.org.clone()), "audit")
        .await?;
    let saved = f.sweep(grace.clone()).await?;
    assert_eq!(
        saved.unmarked,
        vec![old.backup_id],
        "the hold lifts the mark"
    );
    c.release_hold(&f.tenant, hold).await?;
    let again = f.sweep(grace.clone()).await?;
    assert_eq!(
        again.marked,
        vec![old.backup_id],
        "marked again, with a new grace period"
    );
    let waiting = f.sweep(grace.clone()).await?;
    assert!(waiting.marked.is_empty() && waiting.expired.is_empty());
    f.assert_restorable(old.backup_id).await?;

    sqlx::query("UPDATE retention_marks SET marked_at = CURRENT_TIMESTAMP(6) - INTERVAL 2 HOUR")
        .execute(c.pool())
        .await?;
    let due = f.sweep(grace).await?;
    assert_eq!(expired(&due), vec![old.backup_id]);
    f.assert_gone(old.backup_id).await?;
    f.assert_consistent().await?;
    worker.stop().await;
    f.env.cleanup().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_versioned_bucket_the_versions_go_only_when_the_tenant_allows_it() -> anyhow::Result<()>
{
    let f = Fixture::new(6).await?;
    let (env, c) = (&f.env, &f.env.catalog);
    env.enable_versioning(&env.bucket).await?;
    let worker = start_worker(env, small_part_settings(env)).await?;
    let first = f.backup(20).await?;
    let second = f.backup(10).await?;
    f.backup(0).await?;
    let versions = |b: BackupId| {
        let prefix = f.prefix().backup_prefix(&b);
        async move { coffer_storage::list::list_versions(&env.s3_client, &env.bucket, &prefix).await }
    };

    // Markers only (the default): the current objects are gone, their versions stay.
    c.put_retention_policy(
        &f.tenant,
        None,
        &Policy {
            keep_days: Some(15),
            ..Policy::default()
        },
    )
    .await?;
    let swept = f.sweep(at_once()).await?;
    assert_eq!(expired(&swept), vec![first.backup_id]);
    assert!(f.keys_of(first.backup_id).await?.is_empty());
    let left = versions(first.backup_id).await?;
    assert!(
        left.iter().any(|v| v.version_id.is_some()),
        "old versions stay behind markers"
    );

    // With the tenant's consent every version goes.
    c.put_retention_policy(
        &f.tenant,
        None,
        &Policy {
            keep_days: Some(5),
            delete_versions: true,
            ..Policy::default()
        },
    )
    .await?;
    let swept = f.sweep(at_once()).await?;
    assert_eq!(expired(&swept), vec![second.backup_id]);
    assert!(
        versions(second.backup_id).await?.is_empty(),
        "no version of the deleted backup is left"
    );
    f.assert_consistent().await?;

    // An erasure leaves no older version of a rewritten part behind.
    let (header, rows) = f.sim.table("Contact").expect("contacts");
    let person = rows[0][header.iter().position(|h| h == "Id").unwrap()].clone();
    let erased = coffer_worker::janitor::erase::erase_records(
        &f.context(),
        &f.tenant,
        &f.org,
        &[person],
        "ticket 9",
    )
    .await?;
    assert_eq!(erased.backups, 1);
    let newest = c.backups_of(&f.tenant, &f.org).await?[0].backup_id;
    for object in c.backup_objects(newest).await? {
        let all =
            coffer_storage::list::list_versions(&env.s3_client, &env.bucket, &object.key).await?;
        let of_key: Vec<_> = all.iter().filter(|v| v.key == object.key).collect();
        assert_eq!(
            of_key.len(),
            1,
            "{} keeps one version: {of_key:?}",
            object.key
        );
    }
    f.assert_consistent().await?;
    worker.stop().await;
    f.env.cleanup().await?;
    Ok(())
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

async fn request_sweep(env: &TestEnv, tenant: &str) -> anyhow::Result<()> {
    let envelope = JobEnvelope {
        schema_version: coffer_proto::CURRENT_SCHEMA_VERSION,
        job_id: JobId::generate().to_string(),
        requested_at_unix_ms: 0,
        requested_by: "test".to_owned(),
        traceparent: String::new(),
        job: Some(Job::RetentionSweepRequested(RetentionSweepRequested {
            tenant_id: tenant.to_owned(),
            dry_run: false,
        })),
    };
    let payload = coffer_proto::encode(&envelope);
    let broker = env.broker().await?;
    broker
        .publisher()
        .await?
        .publish_job(OutgoingJob {
            message_id: &envelope.job_id,
            kind: "retention_sweep_requested",
            tenant: None,
            payload: &payload,
        })
        .await?;
    Ok(())
}

/// Every decompressed records part of `sobject` in `backup`, as (header, rows).
async fn parts_of(
    f: &Fixture,
    backup: BackupId,
    sobject: &str,
) -> anyhow::Result<Vec<(Vec<String>, Vec<Vec<String>>)>> {
    let mut parts = Vec::new();
    for object in f.env.catalog.backup_objects(backup).await? {
        if object.sobject.as_deref() == Some(sobject) {
            let read = read_object(&f.env.s3_client, &f.env.bucket, &object.key).await?;
            parts.push(gunzip_csv(&read.body)?);
        }
    }
    Ok(parts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_contact_leaves_every_kept_backup_and_is_never_restored() -> anyhow::Result<()> {
    let f = Fixture::new(6).await?;
    let c = &f.env.catalog;
    let worker = start_worker(&f.env, small_part_settings(&f.env)).await?;
    let (header, rows) = f.sim.table("Contact").expect("contacts");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let person = rows[0][col("Id")].clone();
    let account = rows[0][col("AccountId")].clone();
    let first = f.backup(2).await?;
    // The person changes: the incremental holds them too.
    f.sim.update(
        "Contact",
        &person,
        &[("LastName", Some("Forgotten-Person-Name"))],
    )?;
    let broker = f.env.broker().await?;
    let job = request_backup_of_kind(
        &broker,
        "acme",
        f.org.as_str(),
        coffer_proto::v1::BackupKind::Incremental,
    )
    .await?;
    let incremental = wait_for_backup(&f.env, job, WAIT).await?;
    assert_eq!(incremental.base_backup_id, Some(first.backup_id));

    let ctx = f.context();
    let erased = coffer_worker::janitor::erase::erase_records(
        &ctx,
        &f.tenant,
        &f.org,
        std::slice::from_ref(&person),
        "ticket 42",
    )
    .await?;
    assert_eq!(erased.new_tombstones, 1);
    assert_eq!(erased.backups, 2, "both backups held the person");
    assert!(erased.pending.is_empty());

    for backup in [first.backup_id, incremental.backup_id] {
        let mut others_kept = 0;
        for (header, rows) in parts_of(&f, backup, "Contact").await? {
            let id = header.iter().position(|h| h == "Id").unwrap();
            for row in rows {
                if row[id] == person {
                    let values: Vec<&String> = row
                        .iter()
                        .enumerate()
                        .filter(|(i, v)| *i != id && !v.is_empty())
                        .map(|(_, v)| v)
                        .collect();
                    assert!(
                        values.is_empty(),
                        "erased row of {backup} still holds {values:?}"
                    );
                } else if row.iter().filter(|v| !v.is_empty()).count() > 1 {
                    others_kept += 1;
                }
            }
        }
        // The incremental holds only the person; the full backup holds the others too.
        if backup == first.backup_id {
            assert!(
                others_kept > 0,
                "the other contacts of {backup} keep their values"
            );
        }
        let manifest_key = f.prefix().manifest_key(&backup);
        let manifest = read_object(&f.env.s3_client, &f.env.bucket, &manifest_key).await?;
        let manifest: serde_json::Value = serde_json::from_slice(&manifest.body)?;
        for object in c.backup_objects(backup).await? {
            if object.key == manifest_key {
                continue;
            }
            let listed = manifest["objects"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["key"] == object.key.as_str());
            assert_eq!(
                listed.and_then(|o| o["sha256"].as_str()),
                Some(object.sha256.as_str()),
                "manifest of {backup} for {}",
                object.key
            );
        }
    }
    f.assert_consistent().await?;
    assert!(c.erased_records(&f.tenant, &f.org).await?.contains(&person));
    assert!(c.pending_erasures(&f.tenant, &f.org).await?.is_empty());
    let again = coffer_worker::janitor::erase::erase_records(
        &ctx,
        &f.tenant,
        &f.org,
        std::slice::from_ref(&person),
        "ticket 42",
    )
    .await?;
    assert_eq!(
        (again.new_tombstones, again.parts_rewritten),
        (0, 0),
        "erasing twice changes nothing"
    );

    // A restore of the person's account with its children leaves the person out, and says so.
    let later = f.backup(0).await?;
    let restore = coffer_proto::v1::RestoreRequested {
        tenant_id: "acme".to_owned(),
        org_id: f.org.to_string(),
        backup_id: later.backup_id.to_string(),
        as_of_unix_ms: 0,
        target_org_id: String::new(),
        scope: Some(coffer_proto::v1::RestoreScope {
            sobjects: Vec::new(),
            record_ids: vec![account],
            child_depth: 2,
            parent_depth: 0,
        }),
        mode: coffer_proto::v1::RestoreMode::PlanOnly as i32,
    };
    let restore = wait_for_restore(&f.env, request_restore(&broker, restore).await?, WAIT).await?;
    let planned = c
        .restore_rows(&restore.restore_id, Some("Contact"), None)
        .await?;
    assert!(
        !planned.is_empty(),
        "the account's other contacts are planned"
    );
    assert!(
        planned.iter().all(|r| r.source_id != person),
        "the erased person is never planned"
    );
    let plan: serde_json::Value =
        serde_json::from_str(restore.plan_json.as_deref().expect("plan"))?;
    assert_eq!(plan["left_out"]["Contact (erased)"]["records"], 1, "{plan}");
    worker.stop().await;
    f.env.cleanup().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_that_moved_storage_is_swept_where_each_backup_lives() -> anyhow::Result<()> {
    use coffer_catalog::{NewStorage, Sse, StorageAccess};
    use coffer_testkit::history;
    let f = Fixture::new(2).await?;
    let (env, c) = (&f.env, &f.env.catalog);
    let (tenant, org) = (&f.tenant, &f.org);
    let body_a = history::body(env, tenant, org, 1).await?;
    let old = [
        history::backup(env, tenant, org, 40, 10, std::slice::from_ref(&body_a), 30).await?,
        history::backup(env, tenant, org, 40, 10, std::slice::from_ref(&body_a), 20).await?,
    ];
    // The tenant moves to another bucket; its next backups go there.
    let second = format!("{}-moved", env.bucket);
    coffer_storage::provision::ensure_bucket(&env.s3_client, &second, &env.stack.region).await?;
    let moved = NewStorage {
        bucket: second.clone(),
        region: env.stack.region.clone(),
        endpoint: None,
        base_path: BasePath::new("coffer")?,
        sse: Sse::S3,
        access: StorageAccess::Vendor,
    };
    c.put_tenant(tenant, "Tenant acme", &moved).await?;
    let body_b = history::body(env, tenant, org, 1).await?;
    assert_eq!(
        body_a, body_b,
        "the same body, stored again in the new bucket"
    );
    let new = [
        history::backup(env, tenant, org, 40, 10, std::slice::from_ref(&body_b), 5).await?,
        history::backup(env, tenant, org, 40, 10, std::slice::from_ref(&body_b), 0).await?,
    ];
    c.put_retention_policy(
        tenant,
        None,
        &Policy {
            keep_last: Some(2),
            ..Policy::default()
        },
    )
    .await?;

    let swept = f.sweep(at_once()).await?;
    assert!(swept.failures.is_empty(), "{:?}", swept.failures);
    assert_eq!(expired(&swept), sorted(old.to_vec()));
    let org_prefix = f.prefix();
    assert!(
        list_keys(&env.s3_client, &env.bucket, org_prefix.as_str())
            .await?
            .is_empty(),
        "nothing of the org is left in the old bucket (its body was referenced there only by the old backups)"
    );
    for backup in new {
        f.assert_restorable(backup).await?;
    }
    assert_eq!(swept.files.as_ref().map(|f| f.deleted), Some(1));
    for bucket in [&env.bucket, &second] {
        let problems = consistency::problems(
            c,
            &env.s3_client,
            bucket,
            &BasePath::new("coffer")?,
            tenant,
            org,
        )
        .await?;
        assert!(problems.is_empty(), "{bucket}: {problems:#?}");
    }
    f.env.cleanup().await?;
    Ok(())
}
