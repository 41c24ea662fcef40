//! Retention sweeps against a real MariaDB: the locked re-check before a backup is deleted
//! (the newest, a hold, an incremental's base, a restore, a failed backup revived by its
//! replayed job), the removal of every row with the mark kept as the record, unreferenced file
//! bodies, and the fence that keeps backups out while they are deleted.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use coffer_catalog::{
    BackupFile, BackupState, Catalog, CatalogError, Expiry, FilesFence, HoldScope, NewFileObject,
    NewObject, ObjectKind, OrgRecord,
};
use coffer_core::retention::DeleteReason;
use coffer_core::sweep::MarkStage;
use coffer_core::{BackupId, Classify, ErrorClass, JobId, OrgId, TenantId};
use common::TestDb;
use secrecy::SecretString;

fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn org() -> OrgId {
    OrgId::new("00D000000000001AAA").unwrap()
}

async fn setup(c: &Catalog) -> u64 {
    let storage_id = common::vendor_tenant(c, &tenant()).await;
    c.put_org(&OrgRecord {
        tenant_id: tenant(),
        org_id: org(),
        login_url: "https://login.example".to_owned(),
        client_id: "id".to_owned(),
        client_secret: SecretString::from("s".to_owned()),
        api_version: "62.0".to_owned(),
    })
    .await
    .unwrap();
    storage_id
}

/// A complete backup `days` days old (an incremental of `base` when given), with its job.
async fn backup(
    c: &Catalog,
    storage_id: u64,
    days: u32,
    base: Option<BackupId>,
) -> (BackupId, JobId) {
    common::backup(c, (&tenant(), &org()), storage_id, days, base).await
}

async fn expiry(c: &Catalog, id: BackupId) -> Expiry {
    c.mark_backup(id, 1, &DeleteReason::Failed, 0)
        .await
        .unwrap();
    c.begin_expiry(id).await.unwrap()
}

fn refused_because(e: Expiry, why: &str) {
    match e {
        Expiry::Refused(reason) => {
            assert!(reason.contains(why), "refused for {reason:?}, not {why:?}")
        }
        Expiry::Started => panic!("expiry started; expected it refused because {why}"),
    }
}

async fn state(c: &Catalog, id: BackupId) -> Option<BackupState> {
    c.backup(id).await.unwrap().map(|b| b.state)
}

#[tokio::test]
async fn the_last_check_before_deletion_keeps_what_became_needed() {
    let db = TestDb::new().await;
    let c = &db.catalog;
    let s = setup(c).await;
    let (old, old_job) = backup(c, s, 30, None).await;
    let (base, _) = backup(c, s, 20, None).await;
    let (_incremental, _) = backup(c, s, 10, Some(base)).await;
    let (read, _) = backup(c, s, 5, None).await;
    let (newest, _) = backup(c, s, 1, None).await;

    refused_because(expiry(c, newest).await, "newest complete backup");
    refused_because(expiry(c, base).await, "an incremental continues from it");

    sqlx::query(
        "INSERT INTO restores (restore_id, job_id, tenant_id, org_id, backup_id, target_org_id, mode, state, request_json) \
         VALUES (UUID(), UUID(), ?, ?, ?, ?, 'execute', 'running', '{}')",
    )
    .bind(tenant().as_str())
    .bind(org().as_str())
    .bind(read.to_string())
    .bind(org().as_str())
    .execute(c.pool())
    .await
    .unwrap();
    refused_because(expiry(c, read).await, "a restore in progress reads it");

    let hold = c
        .place_hold(&tenant(), &HoldScope::Org(org()), "case 7")
        .await
        .unwrap();
    refused_because(expiry(c, old).await, "a legal hold covers it");
    assert_eq!(state(c, old).await, Some(BackupState::Complete));
    c.release_hold(&tenant(), hold).await.unwrap();

    assert_eq!(expiry(c, old).await, Expiry::Started);
    assert_eq!(state(c, old).await, Some(BackupState::Expiring));
    let marks = c.open_marks(&tenant(), &org()).await.unwrap();
    let mark = marks.iter().find(|m| m.backup_id == old).unwrap();
    assert_eq!(mark.stage, MarkStage::Deleting);
    // A replayed job of an expiring backup finds it expiring: never revived, never resumed.
    let again = c
        .begin_backup(old_job, &tenant(), &org(), s, "full")
        .await
        .unwrap();
    assert_eq!((again.backup_id, again.state), (old, BackupState::Expiring));
    c.fail_backup(old, "late failure").await.unwrap();
    c.complete_backup(old).await.unwrap();
    assert_eq!(state(c, old).await, Some(BackupState::Expiring));
    // An expiring backup is past deciding: the planner no longer sees it.
    let facts = c.retention_facts(&tenant(), &org()).await.unwrap();
    assert!(facts.iter().all(|f| f.backup_id != old));
    db.drop().await;
}

#[tokio::test]
async fn a_failed_backup_revived_by_its_replayed_job_is_not_deleted() {
    let db = TestDb::new().await;
    let c = &db.catalog;
    let s = setup(c).await;
    backup(c, s, 0, None).await;
    let job = JobId::generate();
    let failed = c
        .begin_backup(job, &tenant(), &org(), s, "full")
        .await
        .unwrap()
        .backup_id;
    c.fail_backup(failed, "gave up").await.unwrap();
    c.mark_backup(failed, 1, &DeleteReason::Failed, 0)
        .await
        .unwrap();
    // The job is replayed before the janitor gets to it.
    let revived = c
        .begin_backup(job, &tenant(), &org(), s, "full")
        .await
        .unwrap();
    assert_eq!(revived.state, BackupState::Running);
    refused_because(c.begin_expiry(failed).await.unwrap(), "it is running");
    assert_eq!(state(c, failed).await, Some(BackupState::Running));
    db.drop().await;
}

#[tokio::test]
async fn removing_a_backup_removes_every_row_and_keeps_the_mark_as_the_record() {
    let db = TestDb::new().await;
    let c = &db.catalog;
    let s = setup(c).await;
    let (old, _) = backup(c, s, 30, None).await;
    let (kept, _) = backup(c, s, 0, None).await;
    for id in [old, kept] {
        fill(c, id).await;
    }
    let err = c.remove_backup_rows(old).await.unwrap_err();
    assert!(matches!(err, CatalogError::Refused(_)), "{err}");

    let reason = DeleteReason::Expired {
        policy: "7 days".to_owned(),
    };
    c.mark_backup(old, 9, &reason, 0).await.unwrap();
    assert_eq!(c.begin_expiry(old).await.unwrap(), Expiry::Started);
    c.note_deletion(old, 3, None).await.unwrap();
    let removed = c.remove_backup_rows(old).await.unwrap();
    assert_eq!(
        removed,
        1 + 2 + 1 + 1 + 1,
        "records, links, files, objects, backup"
    );
    assert_eq!(state(c, old).await, None);
    for table in [
        "backup_records",
        "backup_links",
        "backup_files",
        "backup_objects",
    ] {
        assert_eq!(
            rows(c, table, old).await,
            0,
            "{table} of the deleted backup"
        );
        assert!(rows(c, table, kept).await > 0, "{table} of the kept backup");
    }
    assert!(c.open_marks(&tenant(), &org()).await.unwrap().is_empty());
    let record = c.retention_marks(&tenant()).await.unwrap();
    assert_eq!(record.len(), 1);
    assert_eq!(record[0].backup_id, old);
    assert_eq!(record[0].stage, MarkStage::Deleted);
    assert_eq!(record[0].reason, reason);
    assert_eq!(record[0].sweep_id, 9);
    assert_eq!(record[0].objects_deleted, 3);
    assert!(record[0].deleted_at.is_some());
    // Running it again (a janitor killed after the commit) changes nothing.
    assert_eq!(c.remove_backup_rows(old).await.unwrap(), 0);
    db.drop().await;
}

#[tokio::test]
async fn a_file_body_is_unreferenced_once_no_backup_of_its_storage_holds_it() {
    let db = TestDb::new().await;
    let c = &db.catalog;
    let s = setup(c).await;
    let (old, _) = backup(c, s, 30, None).await;
    let (kept, _) = backup(c, s, 0, None).await;
    for sha in ["1", "2", "3"] {
        c.record_file_object(&tenant(), &org(), &body(s, sha))
            .await
            .unwrap();
    }
    c.record_backup_files(old, &[reference("1"), reference("2")])
        .await
        .unwrap();
    c.record_backup_files(kept, &[reference("2")])
        .await
        .unwrap();
    assert_eq!(unreferenced(c).await, vec![sha("3")]);

    c.mark_backup(old, 1, &DeleteReason::Failed, 0)
        .await
        .unwrap();
    c.begin_expiry(old).await.unwrap();
    c.remove_backup_rows(old).await.unwrap();
    assert_eq!(unreferenced(c).await, vec![sha("1"), sha("3")]);
    c.forget_file_objects(&tenant(), &org(), s, &[sha("1"), sha("3")])
        .await
        .unwrap();
    assert!(unreferenced(c).await.is_empty());
    assert_eq!(
        c.file_shas(&tenant(), &org(), s).await.unwrap(),
        vec![sha("2")]
    );
    db.drop().await;
}

#[tokio::test]
async fn the_files_fence_waits_for_running_backups_and_keeps_new_ones_out() {
    let db = TestDb::new().await;
    let c = &db.catalog;
    let s = setup(c).await;
    let running = c
        .begin_backup(JobId::generate(), &tenant(), &org(), s, "full")
        .await
        .unwrap()
        .backup_id;
    assert_eq!(
        c.begin_files_sweep(&tenant(), &org(), "j1", 60)
            .await
            .unwrap(),
        FilesFence::BackupRunning(running)
    );
    c.complete_backup(running).await.unwrap();
    assert_eq!(
        c.begin_files_sweep(&tenant(), &org(), "j1", 60)
            .await
            .unwrap(),
        FilesFence::Held
    );
    let refused = c
        .begin_backup(JobId::generate(), &tenant(), &org(), s, "full")
        .await
        .unwrap_err();
    assert!(matches!(refused, CatalogError::Busy(_)), "{refused}");
    assert_eq!(refused.class(), ErrorClass::Retryable);
    assert!(
        c.renew_files_sweep(&tenant(), &org(), "j1", 60)
            .await
            .unwrap()
    );
    assert!(
        !c.renew_files_sweep(&tenant(), &org(), "someone else", 60)
            .await
            .unwrap()
    );
    c.end_files_sweep(&tenant(), &org(), "j1").await.unwrap();
    c.begin_backup(JobId::generate(), &tenant(), &org(), s, "full")
        .await
        .unwrap();

    // A fence whose janitor died runs out with its lease.
    sqlx::query("UPDATE backups SET state = 'complete' WHERE state = 'running'")
        .execute(c.pool())
        .await
        .unwrap();
    assert_eq!(
        c.begin_files_sweep(&tenant(), &org(), "j2", 1)
            .await
            .unwrap(),
        FilesFence::Held
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(
        !c.renew_files_sweep(&tenant(), &org(), "j2", 60)
            .await
            .unwrap()
    );
    c.begin_backup(JobId::generate(), &tenant(), &org(), s, "full")
        .await
        .unwrap();
    db.drop().await;
}

fn sha(n: &str) -> String {
    n.repeat(64)
}

fn body(storage_id: u64, n: &str) -> NewFileObject {
    NewFileObject {
        storage_id,
        sha256: sha(n),
        key: format!("files/{}/{}", &sha(n)[..2], sha(n)),
        size: 10,
        md5: "0".repeat(32),
    }
}

fn reference(n: &str) -> BackupFile {
    BackupFile {
        source: "Attachment".to_owned(),
        record_id: format!("00P00000000000{n}AAA"),
        content_document_id: None,
        parent_id: None,
        sha256: sha(n),
        size: 10,
        md5: "0".repeat(32),
        modstamp: None,
    }
}

async fn unreferenced(c: &Catalog) -> Vec<String> {
    c.unreferenced_files(&tenant(), &org(), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.sha256)
        .collect()
}

/// One record, two links, one file reference and one object row.
async fn fill(c: &Catalog, id: BackupId) {
    let b = id.to_string();
    sqlx::query("INSERT INTO backup_records (backup_id, record_id, sobject, part, row_no) VALUES (?, '001000000000001AAA', 'Account', 1, 1)")
        .bind(&b)
        .execute(c.pool())
        .await
        .unwrap();
    for field in ["ParentId", "OwnerId"] {
        sqlx::query("INSERT INTO backup_links (backup_id, child_id, field, parent_id, sobject) VALUES (?, '001000000000001AAA', ?, '001000000000002AAA', 'Account')")
            .bind(&b)
            .bind(field)
            .execute(c.pool())
            .await
            .unwrap();
    }
    c.record_backup_files(id, &[reference("4")]).await.unwrap();
    c.record_object(
        id,
        &NewObject {
            key: format!("acme/00D000000000001AAA/backups/{b}/records/Account/part-00001.csv.gz"),
            kind: ObjectKind::Records,
            sobject: Some("Account".to_owned()),
            part: Some(1),
            size: 100,
            sha256: "a".repeat(64),
            rows: 1,
        },
    )
    .await
    .unwrap();
}

async fn rows(c: &Catalog, table: &str, id: BackupId) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {table} WHERE backup_id = ?"
    )))
    .bind(id.to_string())
    .fetch_one(c.pool())
    .await
    .unwrap()
}
