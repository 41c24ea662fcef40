//! Retention against a real MariaDB: policies (the org's over its tenant's), legal holds on a
//! tenant, an org and a backup, and the facts the planner decides on, over a back-dated
//! history of backups, with the plan they lead to.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use coffer_catalog::{Catalog, HoldScope};
use coffer_core::retention::{BackupStage, Decision, KeepReason, Policy, plan};
use coffer_core::{BackupId, JobId, OrgId, TenantId};
use common::TestDb;

fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn org() -> OrgId {
    OrgId::new("00D000000000001AAA").unwrap()
}

async fn storage(catalog: &Catalog) -> u64 {
    common::vendor_tenant(catalog, &tenant()).await
}

/// A backup completed `days` days ago (an incremental of `base` when given), back-dated.
async fn backup(c: &Catalog, storage_id: u64, days: u32, base: Option<BackupId>) -> BackupId {
    common::backup(c, (&tenant(), &org()), storage_id, days, base)
        .await
        .0
}

async fn back_date(c: &Catalog, id: BackupId, days: u32) {
    common::back_date(c, id, days).await;
}

async fn decide(c: &Catalog) -> Vec<Decision> {
    let policy = c.retention_policy(&tenant(), &org()).await.unwrap();
    let facts = c.retention_facts(&tenant(), &org()).await.unwrap();
    plan(&policy.unwrap_or_default(), &facts, c.now().await.unwrap())
}

fn kept(decisions: &[Decision]) -> BTreeSet<BackupId> {
    decisions
        .iter()
        .filter(|d| !d.deletes())
        .map(Decision::backup_id)
        .collect()
}

#[tokio::test]
async fn policies_holds_and_chains_decide_a_back_dated_history() {
    let db = TestDb::new().await;
    let c = &db.catalog;
    let storage_id = storage(c).await;
    // Forty daily full backups (index = age in days), then today's incremental on the backup
    // of 20 days ago, a failed one of 3 days ago and a running one.
    let mut daily = Vec::new();
    for days in 0..40 {
        daily.push(backup(c, storage_id, days, None).await);
    }
    let incremental = backup(c, storage_id, 0, Some(daily[20])).await;
    let failed = c
        .begin_backup(JobId::generate(), &tenant(), &org(), storage_id, "full")
        .await
        .unwrap()
        .backup_id;
    c.fail_backup(failed, "gave up").await.unwrap();
    back_date(c, failed, 3).await;
    let running = c
        .begin_backup(JobId::generate(), &tenant(), &org(), storage_id, "full")
        .await
        .unwrap()
        .backup_id;

    // The facts: stages, bases and times as stored.
    let facts = c.retention_facts(&tenant(), &org()).await.unwrap();
    assert_eq!(facts.len(), 43);
    let fact = |id: BackupId| facts.iter().find(|f| f.backup_id == id).unwrap();
    assert_eq!(fact(incremental).base, Some(daily[20]));
    assert_eq!(fact(failed).stage, BackupStage::Failed);
    assert_eq!(fact(running).stage, BackupStage::Running);
    assert!(fact(daily[10]).at > fact(daily[11]).at);

    // No policy: nothing goes.
    assert!(decide(c).await.iter().all(|d| !d.deletes()));

    // The tenant keeps 7 days: the week, the incremental and its base, the running backup.
    let week = Policy {
        keep_days: Some(7),
        ..Policy::default()
    };
    c.put_retention_policy(&tenant(), None, &week)
        .await
        .unwrap();
    let decisions = decide(c).await;
    let mut want: BTreeSet<BackupId> = daily[..7].iter().copied().collect();
    want.extend([incremental, daily[20], running]);
    assert_eq!(kept(&decisions), want);
    assert!(decisions.contains(&Decision::Delete {
        backup_id: failed,
        reason: coffer_core::retention::DeleteReason::Failed,
    }));

    // The org's own policy wins over its tenant's.
    let last_two = Policy {
        keep_last: Some(2),
        ..Policy::default()
    };
    c.put_retention_policy(&tenant(), Some(&org()), &last_two)
        .await
        .unwrap();
    assert_eq!(
        c.retention_policy(&tenant(), &org()).await.unwrap(),
        Some(last_two)
    );
    let decisions = decide(c).await;
    let newest_two: BTreeSet<BackupId> = [daily[0], incremental].into();
    assert!(newest_two.is_subset(&kept(&decisions)), "{decisions:?}");
    assert!(!kept(&decisions).contains(&daily[5]));

    // A hold on one old backup keeps it; on the org, everything; released, the policy again.
    let one = c
        .place_hold(&tenant(), &HoldScope::Backup(daily[30]), "case 41")
        .await
        .unwrap();
    let decisions = decide(c).await;
    let reasons = decisions.iter().find_map(|d| match d {
        Decision::Keep { backup_id, reasons } if *backup_id == daily[30] => Some(reasons.clone()),
        _ => None,
    });
    assert_eq!(reasons, Some(vec![KeepReason::Hold]));
    let whole_org = c
        .place_hold(&tenant(), &HoldScope::Org(org()), "litigation")
        .await
        .unwrap();
    assert!(decide(c).await.iter().all(|d| !d.deletes()));
    assert!(c.release_hold(&tenant(), whole_org).await.unwrap());
    assert!(
        !c.release_hold(&tenant(), whole_org).await.unwrap(),
        "released once"
    );
    let tenant_hold = c
        .place_hold(&tenant(), &HoldScope::Tenant, "audit")
        .await
        .unwrap();
    assert!(decide(c).await.iter().all(|d| !d.deletes()));
    c.release_hold(&tenant(), tenant_hold).await.unwrap();
    assert!(decide(c).await.iter().any(|d| d.deletes()));
    let holds = c.holds(&tenant()).await.unwrap();
    assert_eq!(holds.len(), 3);
    assert_eq!(holds[0].hold_id, one);
    assert!(holds[0].released_at.is_none() && holds[1].released_at.is_some());
    assert_eq!(holds[1].scope, HoldScope::Org(org()));

    // Whatever the policy, the newest complete backup stays.
    sqlx::query("UPDATE backups SET state = 'failed' WHERE backup_id IN (?, ?)")
        .bind(daily[0].to_string())
        .bind(incremental.to_string())
        .execute(c.pool())
        .await
        .unwrap();
    let decisions = decide(c).await;
    let newest = decisions.iter().find_map(|d| match d {
        Decision::Keep { backup_id, reasons } if reasons.contains(&KeepReason::Newest) => {
            Some(*backup_id)
        }
        _ => None,
    });
    assert_eq!(newest, Some(daily[1]));
    db.drop().await;
}
