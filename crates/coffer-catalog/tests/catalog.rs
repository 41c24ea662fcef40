//! The catalog against a real MariaDB: each test migrates its own fresh database.

mod common;

use coffer_catalog::{BackupState, NewObject, NewStorage, ObjectKind, Sse, StorageAccess};
use coffer_core::layout::BasePath;
use coffer_core::{JobId, OrgId, TenantId};
use common::fresh_catalog;
use secrecy::SecretString;

fn storage(bucket: &str) -> NewStorage {
    NewStorage {
        bucket: bucket.to_owned(),
        region: "us-east-1".to_owned(),
        endpoint: None,
        base_path: BasePath::new("coffer").expect("test setup"),
        sse: Sse::Kms {
            key_id: "key-1".to_owned(),
            bucket_key: true,
        },
        access: StorageAccess::Vendor,
    }
}

fn part(key: &str, rows: u64, size: u64) -> NewObject {
    NewObject {
        key: key.to_owned(),
        kind: ObjectKind::Records,
        sobject: Some("Account".to_owned()),
        part: Some(1),
        size,
        sha256: "ab".repeat(32),
        rows,
    }
}

#[tokio::test]
async fn a_job_has_one_backup_however_often_it_begins() {
    let db = fresh_catalog().await;
    let catalog = &db.catalog;
    let (tenant, org) = (
        TenantId::new("acme").unwrap(),
        OrgId::new("00D000000000001AAA").unwrap(),
    );
    let record = catalog
        .put_tenant(&tenant, "Acme", &storage("bucket-1"))
        .await
        .unwrap();
    let job = JobId::generate();
    let first = catalog
        .begin_backup(job, &tenant, &org, record.storage.storage_id, "full")
        .await
        .unwrap();
    let again = catalog
        .begin_backup(job, &tenant, &org, record.storage.storage_id, "full")
        .await
        .unwrap();
    assert_eq!(first.backup_id, again.backup_id);
    assert_eq!(catalog.backups_of(&tenant, &org).await.unwrap().len(), 1);
    assert_eq!(first.state, BackupState::Running);
    db.drop().await;
}

#[tokio::test]
async fn object_rows_upsert_and_completion_totals_them() {
    let db = fresh_catalog().await;
    let catalog = &db.catalog;
    let (tenant, org) = (
        TenantId::new("acme").unwrap(),
        OrgId::new("00D000000000001AAA").unwrap(),
    );
    let record = catalog
        .put_tenant(&tenant, "Acme", &storage("bucket-1"))
        .await
        .unwrap();
    let backup = catalog
        .begin_backup(
            JobId::generate(),
            &tenant,
            &org,
            record.storage.storage_id,
            "full",
        )
        .await
        .unwrap();
    catalog
        .record_object(backup.backup_id, &part("k/part-00001.csv.gz", 10, 100))
        .await
        .unwrap();
    catalog
        .record_object(backup.backup_id, &part("k/part-00001.csv.gz", 12, 120))
        .await
        .unwrap();
    catalog
        .record_object(backup.backup_id, &part("k/part-00002.csv.gz", 5, 50))
        .await
        .unwrap();
    let done = catalog.complete_backup(backup.backup_id).await.unwrap();
    assert_eq!(done.state, BackupState::Complete);
    assert_eq!((done.objects, done.record_count, done.bytes), (2, 17, 170));
    let objects = catalog.backup_objects(backup.backup_id).await.unwrap();
    assert_eq!(objects[0], part("k/part-00001.csv.gz", 12, 120));
    db.drop().await;
}

#[tokio::test]
async fn a_backup_keeps_its_storage_after_the_tenant_moves() {
    let db = fresh_catalog().await;
    let catalog = &db.catalog;
    let (tenant, org) = (
        TenantId::new("acme").unwrap(),
        OrgId::new("00D000000000001AAA").unwrap(),
    );
    let old = catalog
        .put_tenant(&tenant, "Acme", &storage("old-bucket"))
        .await
        .unwrap();
    let backup = catalog
        .begin_backup(
            JobId::generate(),
            &tenant,
            &org,
            old.storage.storage_id,
            "full",
        )
        .await
        .unwrap();
    let moved = catalog
        .put_tenant(&tenant, "Acme", &storage("new-bucket"))
        .await
        .unwrap();
    assert_ne!(old.storage.storage_id, moved.storage.storage_id);
    let tenant_now = catalog.tenant(&tenant).await.unwrap().unwrap();
    assert_eq!(tenant_now.storage.settings.bucket, "new-bucket");
    let backup_storage = catalog.storage(backup.storage_id).await.unwrap();
    assert_eq!(backup_storage.settings.bucket, "old-bucket");
    assert_eq!(
        backup_storage.settings.sse,
        Sse::Kms {
            key_id: "key-1".to_owned(),
            bucket_key: true
        }
    );
    db.drop().await;
}

#[tokio::test]
async fn unknown_tenants_and_orgs_are_absent_and_org_secrets_round_trip_redacted() {
    let db = fresh_catalog().await;
    let catalog = &db.catalog;
    let tenant = TenantId::new("acme").unwrap();
    assert!(catalog.tenant(&tenant).await.unwrap().is_none());
    catalog
        .put_tenant(&tenant, "Acme", &storage("bucket-b"))
        .await
        .unwrap();
    let org = coffer_catalog::OrgRecord {
        tenant_id: tenant.clone(),
        org_id: OrgId::new("00D000000000001AAA").unwrap(),
        login_url: "https://acme.my.salesforce.com".to_owned(),
        client_id: "cid".to_owned(),
        client_secret: SecretString::from("s3cr3t-value".to_owned()),
        api_version: "62.0".to_owned(),
    };
    catalog.put_org(&org).await.unwrap();
    let back = catalog.org(&tenant, &org.org_id).await.unwrap().unwrap();
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&back.client_secret),
        "s3cr3t-value"
    );
    assert!(
        !format!("{back:?}").contains("s3cr3t"),
        "org debug output leaks the secret"
    );
    assert!(
        catalog
            .org(&TenantId::new("other").unwrap(), &org.org_id)
            .await
            .unwrap()
            .is_none()
    );
    db.drop().await;
}

fn own_storage(bucket: &str) -> NewStorage {
    NewStorage {
        access: StorageAccess::AccessKeys {
            access_key_id: "AKIAEXAMPLE".to_owned(),
            secret_sealed: "v1.fingerprint.wrapped.sealed".to_owned(),
        },
        ..storage(bucket)
    }
}

#[tokio::test]
async fn an_own_storage_takes_new_backups_only_once_tested_and_enabled() {
    let db = fresh_catalog().await;
    let c = &db.catalog;
    let tenant = TenantId::new("acme").expect("id");
    let org = OrgId::new("00D000000000001AAA").expect("id");
    let default = c
        .put_tenant(&tenant, "Acme", &storage("vendor-bucket"))
        .await
        .expect("tenant");
    let old_backup = c
        .begin_backup(
            JobId::generate(),
            &tenant,
            &org,
            default.storage.storage_id,
            "full",
        )
        .await
        .expect("backup");

    let own = c
        .set_own_storage(&tenant, &own_storage("customer-bucket"))
        .await
        .expect("set");
    assert_eq!(own.settings, own_storage("customer-bucket"), "round trip");
    let t = c.tenant(&tenant).await.expect("read").expect("tenant");
    assert_eq!(
        t.storage.settings.bucket, "vendor-bucket",
        "not enabled yet"
    );
    assert_eq!(t.own.as_ref().map(|o| o.enabled), Some(false));

    let never = c.enable_own_storage(&tenant).await.expect_err("untested");
    assert!(never.to_string().contains("coffer storage test"), "{never}");
    c.record_storage_test(own.storage_id, false, r#"{"ok":false}"#)
        .await
        .expect("record");
    let failed = c
        .enable_own_storage(&tenant)
        .await
        .expect_err("failed test");
    assert!(failed.to_string().contains("failed"), "{failed}");
    assert_eq!(
        c.tenant(&tenant)
            .await
            .expect("read")
            .expect("t")
            .storage
            .settings
            .bucket,
        "vendor-bucket"
    );

    c.record_storage_test(own.storage_id, true, r#"{"ok":true}"#)
        .await
        .expect("record");
    c.enable_own_storage(&tenant).await.expect("enable");
    let t = c.tenant(&tenant).await.expect("read").expect("tenant");
    assert_eq!(
        t.storage.storage_id, own.storage_id,
        "new backups go to own"
    );
    let test = t.storage.last_test.expect("test recorded");
    assert!(test.ok);
    assert_eq!(test.report, r#"{"ok":true}"#);

    c.disable_own_storage(&tenant).await.expect("disable");
    let t = c.tenant(&tenant).await.expect("read").expect("tenant");
    assert_eq!(t.storage.storage_id, default.storage.storage_id);
    assert!(t.own.is_some(), "disable keeps the configuration");

    c.reset_storage(&tenant).await.expect("reset");
    let t = c.tenant(&tenant).await.expect("read").expect("tenant");
    assert_eq!(t.storage.storage_id, default.storage.storage_id);
    assert!(t.own.is_none(), "reset forgets the own storage");
    let kept = c
        .backup(old_backup.backup_id)
        .await
        .expect("read")
        .expect("b");
    assert_eq!(kept.storage_id, default.storage.storage_id);
    assert_eq!(
        c.storage(own.storage_id)
            .await
            .expect("row kept")
            .settings
            .bucket,
        "customer-bucket",
        "storage rows outlive the switch, for the backups written there"
    );

    let nobody = TenantId::new("nobody").expect("id");
    assert!(
        c.set_own_storage(&nobody, &own_storage("bucket-b"))
            .await
            .is_err()
    );
    assert!(c.enable_own_storage(&nobody).await.is_err());
    db.drop().await;
}

#[tokio::test]
async fn a_task_has_one_live_holder_and_an_expired_lease_is_taken_over() {
    use coffer_catalog::TaskLease;
    use std::time::Duration;
    let db = fresh_catalog().await;
    let c = &db.catalog;
    let tenant = TenantId::new("acme").expect("id");
    let org = OrgId::new("00D000000000001AAA").expect("id");
    let t = c
        .put_tenant(&tenant, "Acme", &storage("bucket-b"))
        .await
        .expect("tenant");
    let b = c
        .begin_backup(
            JobId::generate(),
            &tenant,
            &org,
            t.storage.storage_id,
            "full",
        )
        .await
        .expect("backup");
    let plan = vec![
        ("Account".to_owned(), "{}".to_owned()),
        ("Contact".to_owned(), "{}".to_owned()),
    ];
    let tasks = c.plan_tasks(b.backup_id, &plan).await.expect("plan");
    assert_eq!(tasks.len(), 2);
    let again = c
        .plan_tasks(b.backup_id, &plan[..1])
        .await
        .expect("re-plan");
    assert_eq!(again.len(), 2, "a recorded plan is kept");

    let long = Duration::from_secs(60);
    let short = Duration::from_millis(300);
    assert!(matches!(
        c.acquire_task(b.backup_id, 1, "w1", short)
            .await
            .expect("acquire"),
        TaskLease::Acquired(_)
    ));
    match c
        .acquire_task(b.backup_id, 1, "w2", long)
        .await
        .expect("acquire")
    {
        TaskLease::Held { owner, remaining } => {
            assert_eq!(owner, "w1");
            assert!(remaining <= short);
        }
        other => panic!("a live lease must hold: {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        matches!(
            c.acquire_task(b.backup_id, 1, "w2", long).await.expect("acquire"),
            TaskLease::Acquired(ref t) if t.attempts == 2
        ),
        "an expired lease is taken over"
    );
    assert!(
        !c.renew_task_lease(b.backup_id, 1, "w1", long)
            .await
            .expect("renew")
    );
    assert!(
        !c.complete_task(b.backup_id, 1, "w1", (1, 10), None)
            .await
            .expect("complete"),
        "the old holder cannot complete"
    );
    assert!(
        c.renew_task_lease(b.backup_id, 1, "w2", long)
            .await
            .expect("renew")
    );
    assert!(
        c.complete_task(b.backup_id, 1, "w2", (1, 10), None)
            .await
            .expect("complete")
    );
    assert_eq!(
        c.acquire_task(b.backup_id, 1, "w3", long)
            .await
            .expect("acquire"),
        TaskLease::Done
    );
    let counts = c.task_counts(b.backup_id).await.expect("counts");
    assert_eq!(
        (counts.total, counts.done, counts.all_done()),
        (2, 1, false)
    );
    db.drop().await;
}

#[tokio::test]
async fn a_paused_org_stays_paused_until_its_time_and_its_tasks_are_not_stranded() {
    use std::time::Duration;
    let db = fresh_catalog().await;
    let c = &db.catalog;
    let tenant = TenantId::new("acme").unwrap();
    let t = c
        .put_tenant(&tenant, "Acme", &storage("bucket-b"))
        .await
        .unwrap();
    let org = coffer_catalog::OrgRecord {
        tenant_id: tenant.clone(),
        org_id: OrgId::new("00D000000000001AAA").unwrap(),
        login_url: "https://acme.my.salesforce.com".to_owned(),
        client_id: "cid".to_owned(),
        client_secret: SecretString::from("s".to_owned()),
        api_version: "62.0".to_owned(),
    };
    c.put_org(&org).await.unwrap();
    let org = org.org_id;
    assert_eq!(c.org_pause(&tenant, &org).await.unwrap(), None);

    let b = c
        .begin_backup(
            JobId::generate(),
            &tenant,
            &org,
            t.storage.storage_id,
            "full",
        )
        .await
        .unwrap();
    c.plan_tasks(b.backup_id, &[("Account".to_owned(), "{}".to_owned())])
        .await
        .unwrap();

    let long = c
        .pause_org(&tenant, &org, Duration::from_secs(3600), "limit exceeded")
        .await
        .unwrap();
    assert_eq!(long.reason, "limit exceeded");
    // A shorter pause does not shorten the one in force.
    let again = c
        .pause_org(&tenant, &org, Duration::from_secs(1), "budget")
        .await
        .unwrap();
    assert_eq!(again, long);
    assert_eq!(c.org_pause(&tenant, &org).await.unwrap(), Some(long));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        c.stranded_tasks(Duration::from_millis(1), 10)
            .await
            .unwrap()
            .is_empty(),
        "a paused org's task is republished"
    );

    assert!(c.resume_org(&tenant, &org).await.unwrap());
    assert_eq!(c.org_pause(&tenant, &org).await.unwrap(), None);
    assert!(!c.resume_org(&tenant, &org).await.unwrap());
    assert_eq!(
        c.stranded_tasks(Duration::from_millis(1), 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // A pause ends on its own.
    c.pause_org(&tenant, &org, Duration::from_millis(200), "budget")
        .await
        .unwrap();
    assert!(c.org_pause(&tenant, &org).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.org_pause(&tenant, &org).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_is_a_retryable_lock_conflict() {
    use coffer_core::{Classify, ErrorClass};
    use sqlx::Acquire as _;
    // Two transactions take two rows in opposite order; InnoDB rolls one back with error 1213
    // (SQLSTATE 40001). The catalog must see a lock conflict, worth running again.
    let db = fresh_catalog().await;
    let pool = db.catalog.pool();
    sqlx::query("CREATE TABLE locks (id INT PRIMARY KEY, n INT NOT NULL) ENGINE = InnoDB")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO locks VALUES (1, 0), (2, 0)")
        .execute(pool)
        .await
        .unwrap();
    let (mut a, mut b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    let mut ta = a.begin().await.unwrap();
    let mut tb = b.begin().await.unwrap();
    let take = |id: i32| sqlx::query("UPDATE locks SET n = n + 1 WHERE id = ?").bind(id);
    take(1).execute(&mut *ta).await.unwrap();
    take(2).execute(&mut *tb).await.unwrap();
    // Each now waits for the other's row; one of the two is chosen as the victim.
    let (ra, rb) = tokio::join!(take(2).execute(&mut *ta), take(1).execute(&mut *tb));
    let error = match (ra, rb) {
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => coffer_catalog::CatalogError::from(e),
        other => panic!("expected exactly one deadlock victim, got {other:?}"),
    };
    assert!(error.is_lock_conflict(), "{error}");
    assert_eq!(error.class(), ErrorClass::Retryable, "{error}");
    assert!(error.to_string().contains("1213"), "{error}");
    drop((ta, tb));
    drop((a, b));
    db.drop().await;
}
