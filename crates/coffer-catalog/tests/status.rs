//! `coffer status`'s queries: running backups with their task progress, restores in flight,
//! workers holding live leases, erasures not yet carried through.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use coffer_catalog::{NewRestore, RestoreMode};
use coffer_core::{JobId, OrgId, TenantId};
use common::{backup, fresh_catalog, vendor_tenant};

#[tokio::test]
async fn running_backups_show_their_tasks_and_records_and_who_holds_them() {
    let db = fresh_catalog().await;
    let c = &db.catalog;
    let tenant = TenantId::new("acme").unwrap();
    let org = OrgId::new("00D000000000001AAA").unwrap();
    let storage = vendor_tenant(c, &tenant).await;
    // A complete backup is not running.
    backup(c, (&tenant, &org), storage, 1, None).await;
    let job = JobId::generate();
    let b = c
        .begin_backup(job, &tenant, &org, storage, "full")
        .await
        .unwrap();
    let plan: Vec<(String, String)> = ["Account", "Contact", "Case"]
        .iter()
        .map(|s| ((*s).to_owned(), "{}".to_owned()))
        .collect();
    c.plan_tasks(b.backup_id, &plan).await.unwrap();
    let lease = Duration::from_secs(60);
    c.acquire_task(b.backup_id, 1, "host-a:7/one", lease)
        .await
        .unwrap();
    assert!(
        c.complete_task(b.backup_id, 1, "host-a:7/one", (2, 120), None)
            .await
            .unwrap()
    );
    c.acquire_task(b.backup_id, 2, "host-a:7/two", lease)
        .await
        .unwrap();
    c.acquire_task(b.backup_id, 3, "host-b:9/three", lease)
        .await
        .unwrap();

    let running = c.running_backups(100).await.unwrap();
    assert_eq!(running.len(), 1, "{running:?}");
    let r = &running[0];
    assert_eq!((r.backup_id, r.job_id), (b.backup_id, job));
    assert_eq!((&r.tenant_id, &r.org_id), (&tenant, &org));
    assert_eq!(
        (r.tasks_total, r.tasks_done, r.tasks_running, r.records),
        (3, 1, 2, 120)
    );

    let holders = c.lease_holders().await.unwrap();
    let seen: Vec<(&str, u32)> = holders
        .iter()
        .map(|h| (h.worker.as_str(), h.tasks))
        .collect();
    assert_eq!(seen, [("host-a:7", 1), ("host-b:9", 1)]);
    db.drop().await;
}

#[tokio::test]
async fn restores_in_flight_and_pending_erasures_are_counted() {
    let db = fresh_catalog().await;
    let c = &db.catalog;
    let tenant = TenantId::new("acme").unwrap();
    let org = OrgId::new("00D000000000001AAA").unwrap();
    let storage = vendor_tenant(c, &tenant).await;
    let (backup_id, _) = backup(c, (&tenant, &org), storage, 1, None).await;
    assert!(c.running_restores(10).await.unwrap().is_empty());
    let job = JobId::generate();
    let restore = c
        .begin_restore(&NewRestore {
            job_id: job,
            tenant_id: &tenant,
            org_id: &org,
            backup_id,
            target_org_id: &org,
            mode: RestoreMode::Execute,
            request_json: "{}",
        })
        .await
        .unwrap();
    let running = c.running_restores(10).await.unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].restore_id, restore.restore_id);
    assert_eq!(running[0].state, "planning");
    assert_eq!(running[0].records_total, 0);

    assert_eq!(c.erasures_pending().await.unwrap(), 0);
    c.record_erasure(&tenant, &org, &["003000000000001AAA".to_owned()], "DSR-1")
        .await
        .unwrap();
    assert_eq!(c.erasures_pending().await.unwrap(), 1);
    db.drop().await;
}

#[tokio::test]
async fn an_orgs_api_usage_keeps_the_latest_report_and_shows_a_pause_in_force() {
    let db = fresh_catalog().await;
    let c = &db.catalog;
    let tenant = TenantId::new("acme").unwrap();
    vendor_tenant(c, &tenant).await;
    let (near, far) = (
        OrgId::new("00D000000000001AAA").unwrap(),
        OrgId::new("00D000000000002AAA").unwrap(),
    );
    for org in [&near, &far] {
        c.put_org(&coffer_catalog::OrgRecord {
            tenant_id: tenant.clone(),
            org_id: org.clone(),
            login_url: "https://login.example.com".to_owned(),
            client_id: "id".to_owned(),
            client_secret: secrecy::SecretString::from("secret".to_owned()),
            api_version: "62.0".to_owned(),
        })
        .await
        .unwrap();
    }
    let now = time::OffsetDateTime::now_utc();
    let earlier = now - time::Duration::minutes(5);
    c.record_api_usage(&tenant, &near, 900, 1000, now)
        .await
        .unwrap();
    // a worker that finished later reports an older response: it is ignored
    c.record_api_usage(&tenant, &near, 850, 1000, earlier)
        .await
        .unwrap();
    c.record_api_usage(&tenant, &far, 10, 1000, earlier)
        .await
        .unwrap();
    c.pause_org(&tenant, &near, Duration::from_secs(3600), "budget")
        .await
        .unwrap();

    let usage = c.api_usage(10).await.unwrap();
    let seen: Vec<(&str, u64, bool)> = usage
        .iter()
        .map(|u| (u.org_id.as_str(), u.used, u.paused_until.is_some()))
        .collect();
    assert_eq!(
        seen,
        [(near.as_str(), 900, true), (far.as_str(), 10, false)],
        "highest share first, the latest report kept, the pause shown"
    );
    assert!((usage[0].share() - 0.9).abs() < 1e-9);
    assert_eq!(c.api_usage(1).await.unwrap().len(), 1, "the limit holds");
    db.drop().await;
}
