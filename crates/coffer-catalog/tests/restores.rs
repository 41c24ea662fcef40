//! Restores against a real MariaDB (`scripts/stack up`): a restore begun once per job, its plan
//! recorded once, each record tracked from pending to written (with its new id) to linked or
//! failed; and the reads a restore is planned from, across a full backup and its incrementals.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use coffer_catalog::records::INDEX_BATCH_ROWS;
use coffer_catalog::{
    BackupRecord, Catalog, CatalogError, ChainRecord, IndexedRecord, NewRestore, PlannedRecord,
    RecordLink, RecordState, RestoreAction, RestoreCount, RestoreMode, RestoreRow, RestoreState,
};
use coffer_core::{BackupId, JobId, OrgId, TenantId};
use common::TestDb;
use time::OffsetDateTime;
use time::macros::datetime;

fn ids() -> (TenantId, OrgId) {
    (
        TenantId::new("acme").unwrap(),
        OrgId::new("00D000000000001AAA").unwrap(),
    )
}

fn sandbox() -> OrgId {
    OrgId::new("00D000000000002AAA").unwrap()
}

async fn storage(catalog: &Catalog) -> u64 {
    common::vendor_tenant(catalog, &ids().0).await
}

fn account(n: usize) -> String {
    format!("0010000000{n:05}AAA")
}

fn contact(n: usize) -> String {
    format!("0030000000{n:05}AAA")
}

fn target(n: usize) -> String {
    format!("001900000{n:06}AAA")
}

fn planned(
    id: &str,
    sobject: &str,
    action: RestoreAction,
    backup: BackupId,
    row: u32,
) -> PlannedRecord {
    PlannedRecord {
        source_id: id.to_owned(),
        sobject: sobject.to_owned(),
        action,
        backup_id: backup,
        part: 1,
        row_no: row,
    }
}

fn count(sobject: &str, action: RestoreAction, state: RecordState, count: u64) -> RestoreCount {
    RestoreCount {
        sobject: sobject.to_owned(),
        action,
        state,
        count,
    }
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

#[tokio::test]
async fn a_restore_is_begun_once_planned_once_and_tracks_every_record() {
    let db = TestDb::new().await;
    let c = &db.catalog;
    let (tenant, org) = ids();
    let storage_id = storage(c).await;
    let backup = c
        .begin_backup(JobId::generate(), &tenant, &org, storage_id, "full")
        .await
        .unwrap()
        .backup_id;
    let target_org = sandbox();
    let job = JobId::generate();
    let new = NewRestore {
        job_id: job,
        tenant_id: &tenant,
        org_id: &org,
        backup_id: backup,
        target_org_id: &target_org,
        mode: RestoreMode::Execute,
        request_json: r#"{"objects":["Account","Contact"]}"#,
    };

    // Begun once per job: a redelivered request gets the first row, request and all.
    let restore = c.begin_restore(&new).await.unwrap();
    assert_eq!(restore.restore_id.len(), 36);
    assert_eq!(
        (restore.job_id, restore.backup_id, &restore.target_org_id),
        (job, backup, &target_org)
    );
    assert_eq!(restore.org_id, org);
    assert_eq!(
        (restore.mode, restore.state),
        (RestoreMode::Execute, RestoreState::Planning)
    );
    assert_eq!(restore.request_json, new.request_json);
    assert_eq!(
        (restore.plan_json.as_deref(), restore.error.as_deref()),
        (None, None)
    );
    assert_eq!(restore.finished_at, None);
    let again = c
        .begin_restore(&NewRestore {
            request_json: "{}",
            ..new
        })
        .await
        .unwrap();
    assert_eq!(
        again, restore,
        "the redelivered request finds the first row"
    );
    assert_eq!(
        c.restore(&restore.restore_id).await.unwrap().as_ref(),
        Some(&restore)
    );
    assert_eq!(
        c.restore_of_job(job).await.unwrap().as_ref(),
        Some(&restore)
    );
    assert_eq!(c.restore_of_job(JobId::generate()).await.unwrap(), None);
    assert_eq!(c.restore("no-such-restore").await.unwrap(), None);
    let id = restore.restore_id.as_str();

    // The plan: three accounts and a contact to write, one account to leave.
    let plan = [
        planned(&account(1), "Account", RestoreAction::Insert, backup, 1),
        planned(&account(2), "Account", RestoreAction::Insert, backup, 2),
        planned(&account(3), "Account", RestoreAction::Update, backup, 3),
        planned(&account(4), "Account", RestoreAction::Skip, backup, 4),
        planned(&contact(1), "Contact", RestoreAction::Undelete, backup, 1),
    ];
    c.record_restore_plan(id, r#"{"plan":1}"#, &plan)
        .await
        .unwrap();
    // A re-plan after a crash, with other rows, keeps the first plan.
    let other = [planned(
        &account(9),
        "Account",
        RestoreAction::Insert,
        backup,
        9,
    )];
    c.record_restore_plan(id, r#"{"plan":2}"#, &other)
        .await
        .unwrap();
    let planned_restore = c.restore(id).await.unwrap().unwrap();
    assert_eq!(planned_restore.state, RestoreState::Planned);
    assert_eq!(planned_restore.plan_json.as_deref(), Some(r#"{"plan":1}"#));
    let rows = c.restore_rows(id, None, None).await.unwrap();
    let expected: Vec<RestoreRow> = plan
        .iter()
        .map(|p| RestoreRow {
            source_id: p.source_id.clone(),
            sobject: p.sobject.clone(),
            action: p.action,
            backup_id: p.backup_id,
            part: p.part,
            row_no: p.row_no,
            target_id: None,
            state: RecordState::Pending,
            error: None,
            sent_at: None,
        })
        .collect();
    assert_eq!(rows, expected);
    assert!(matches!(
        c.record_restore_plan("no-such-restore", "{}", &plan).await,
        Err(CatalogError::NotFound(_))
    ));
    let twice = [plan[0].clone(), plan[0].clone()];
    assert!(matches!(
        c.record_restore_plan(id, "{}", &twice).await,
        Err(CatalogError::Refused(_))
    ));

    c.set_restore_state(id, RestoreState::Running, None)
        .await
        .unwrap();
    // Account 1 written; account 2 refused; a late error for account 1 does not undo it.
    c.mark_written(id, &[pair(&account(1), &target(1))])
        .await
        .unwrap();
    c.mark_failed(
        id,
        &[
            pair(&account(2), "DUPLICATE_VALUE: duplicate value found"),
            pair(&account(1), "UNABLE_TO_LOCK_ROW"),
            pair(&contact(1), "ENTITY_IS_DELETED"),
        ],
    )
    .await
    .unwrap();
    // A retry writes account 2; account 1 keeps the id it got first.
    c.mark_written(
        id,
        &[
            pair(&account(1), &target(11)),
            pair(&account(2), &target(2)),
        ],
    )
    .await
    .unwrap();
    // The second pass links account 1; account 3, never written, stays pending.
    c.mark_linked(id, &[account(1), account(3), contact(1)])
        .await
        .unwrap();

    let state_of = |rows: &[RestoreRow], source: &str| {
        rows.iter()
            .find(|r| r.source_id == source)
            .map(|r| (r.state, r.target_id.clone(), r.error.clone()))
            .unwrap()
    };
    let rows = c.restore_rows(id, None, None).await.unwrap();
    assert_eq!(
        state_of(&rows, &account(1)),
        (RecordState::Linked, Some(target(1)), None)
    );
    assert_eq!(
        state_of(&rows, &account(2)),
        (RecordState::Written, Some(target(2)), None),
        "written after a failure: the error is cleared"
    );
    assert_eq!(
        state_of(&rows, &account(3)),
        (RecordState::Pending, None, None)
    );
    assert_eq!(
        state_of(&rows, &contact(1)),
        (
            RecordState::Failed,
            None,
            Some("ENTITY_IS_DELETED".to_owned())
        )
    );
    let pending: Vec<String> = c
        .restore_rows(id, Some("Account"), Some(RecordState::Pending))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.source_id)
        .collect();
    assert_eq!(pending, [account(3), account(4)]);

    // A create about to be sent stamps its pending rows (in doubt until answered); rows
    // already written are not in doubt.
    let before = c.now().await.unwrap();
    c.mark_sent(id, &[account(3), account(1)]).await.unwrap();
    let rows = c.restore_rows(id, Some("Account"), None).await.unwrap();
    let sent = |source: &str| rows.iter().find(|r| r.source_id == source).unwrap().sent_at;
    assert!(sent(&account(3)).is_some_and(|t| t >= before), "{rows:?}");
    assert_eq!(sent(&account(1)), None, "a written row is not in doubt");
    assert_eq!(sent(&account(4)), None, "a row never sent is not in doubt");
    let failed = c
        .restore_rows(id, None, Some(RecordState::Failed))
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].source_id, contact(1));
    assert!(
        c.restore_rows(id, Some("Contact"), Some(RecordState::Written))
            .await
            .unwrap()
            .is_empty()
    );

    let map = c
        .target_ids(id, &[account(1), account(2), account(3), account(9)])
        .await
        .unwrap();
    assert_eq!(
        map,
        HashMap::from([(account(1), target(1)), (account(2), target(2))])
    );
    assert_eq!(
        c.restore_counts(id).await.unwrap(),
        [
            count("Account", RestoreAction::Insert, RecordState::Written, 1),
            count("Account", RestoreAction::Insert, RecordState::Linked, 1),
            count("Account", RestoreAction::Update, RecordState::Pending, 1),
            count("Account", RestoreAction::Skip, RecordState::Pending, 1),
            count("Contact", RestoreAction::Undelete, RecordState::Failed, 1),
        ]
    );

    // Re-planning a running restore keeps it running.
    c.record_restore_plan(id, r#"{"plan":3}"#, &other)
        .await
        .unwrap();
    assert_eq!(
        c.restore(id).await.unwrap().unwrap().state,
        RestoreState::Running
    );
    // Failed, then run again and completed: finished_at and the error follow the state.
    c.set_restore_state(id, RestoreState::Failed, Some("salesforce unavailable"))
        .await
        .unwrap();
    let failed = c.restore(id).await.unwrap().unwrap();
    assert_eq!(failed.state, RestoreState::Failed);
    assert_eq!(failed.error.as_deref(), Some("salesforce unavailable"));
    assert!(failed.finished_at.is_some());
    c.set_restore_state(id, RestoreState::Running, None)
        .await
        .unwrap();
    let running = c.restore(id).await.unwrap().unwrap();
    assert_eq!((running.error, running.finished_at), (None, None));
    c.set_restore_state(id, RestoreState::Complete, None)
        .await
        .unwrap();
    let complete = c.restore(id).await.unwrap().unwrap();
    assert_eq!(complete.state, RestoreState::Complete);
    let finished = complete.finished_at.unwrap();
    assert!(finished >= complete.created_at);
    assert!(matches!(
        c.set_restore_state("no-such-restore", RestoreState::Failed, None)
            .await,
        Err(CatalogError::NotFound(_))
    ));

    // Another restore of the tenant: listed first; its rows are its own.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = c
        .begin_restore(&NewRestore {
            job_id: JobId::generate(),
            mode: RestoreMode::Plan,
            ..new
        })
        .await
        .unwrap();
    assert_ne!(second.restore_id, restore.restore_id);
    let listed: Vec<String> = c
        .restores_of(&tenant)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.restore_id)
        .collect();
    assert_eq!(
        listed,
        [second.restore_id.clone(), restore.restore_id.clone()]
    );
    assert!(
        c.restores_of(&TenantId::new("globex").unwrap())
            .await
            .unwrap()
            .is_empty()
    );

    // More records than one statement carries, planned and written in batches.
    let n = INDEX_BATCH_ROWS + 7;
    let many: Vec<PlannedRecord> = (0..n)
        .map(|i| {
            planned(
                &account(i),
                "Account",
                RestoreAction::Insert,
                backup,
                i as u32 + 1,
            )
        })
        .collect();
    let sid = second.restore_id.as_str();
    c.record_restore_plan(sid, "{}", &many).await.unwrap();
    let written: Vec<(String, String)> = (0..n).map(|i| (account(i), target(i))).collect();
    c.mark_written(sid, &written).await.unwrap();
    assert_eq!(
        c.restore_counts(sid).await.unwrap(),
        [count(
            "Account",
            RestoreAction::Insert,
            RecordState::Written,
            n as u64
        )]
    );
    let all: Vec<String> = (0..n).map(account).collect();
    let map = c.target_ids(sid, &all).await.unwrap();
    assert_eq!(map.len(), n);
    assert_eq!(map[&account(n - 1)], target(n - 1));
    assert_eq!(
        c.target_ids(id, &[account(3)]).await.unwrap(),
        HashMap::new(),
        "the first restore's account 3 was never written"
    );
    db.drop().await;
}

fn indexed(id: String, row: u32, stamp: OffsetDateTime, deleted: bool) -> IndexedRecord {
    IndexedRecord {
        record_id: id,
        part: 1,
        row,
        system_modstamp: Some(stamp),
        deleted,
    }
}

fn account_of(child: &str, parent: &str) -> (String, RecordLink) {
    (
        "Contact".to_owned(),
        RecordLink {
            child_id: child.to_owned(),
            field: "AccountId".to_owned(),
            parent_id: parent.to_owned(),
        },
    )
}

fn version(
    sobject: &str,
    id: String,
    backup: &BackupRecord,
    row: u32,
    stamp: OffsetDateTime,
    deleted: bool,
) -> ChainRecord {
    ChainRecord {
        sobject: sobject.to_owned(),
        record_id: id,
        backup_id: backup.backup_id,
        part: 1,
        row_no: row,
        system_modstamp: Some(stamp),
        deleted,
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn a_restore_reads_the_newest_version_of_each_record_across_the_chain() {
    let db = TestDb::new().await;
    let c = &db.catalog;
    let (tenant, org) = ids();
    let storage_id = storage(c).await;
    let old = datetime!(2024-05-01 10:00:00.000 UTC);
    let changed = datetime!(2024-06-01 10:00:00.000 UTC);
    let newest = datetime!(2024-07-01 10:00:00.000 UTC);

    // Full: accounts 0, 1, 2; contact 0 under account 0, contact 1 under account 2.
    let full = c
        .begin_backup(JobId::generate(), &tenant, &org, storage_id, "full")
        .await
        .unwrap();
    let accounts: Vec<_> = (0..3)
        .map(|i| indexed(account(i), i as u32 + 1, old, false))
        .collect();
    c.index_records(full.backup_id, "Account", &accounts, &[])
        .await
        .unwrap();
    c.index_records(
        full.backup_id,
        "Contact",
        &[
            indexed(contact(0), 1, old, false),
            indexed(contact(1), 2, old, false),
        ],
        &[
            account_of(&contact(0), &account(0)),
            account_of(&contact(1), &account(2)),
        ],
    )
    .await
    .unwrap();
    let full = c.complete_backup(full.backup_id).await.unwrap();

    // First incremental: account 0 changed, account 1 deleted, contact 0 moved to account 1.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let first = c
        .begin_incremental_backup(JobId::generate(), &tenant, &org, storage_id, full.backup_id)
        .await
        .unwrap();
    c.index_records(
        first.backup_id,
        "Account",
        &[
            indexed(account(0), 1, changed, false),
            indexed(account(1), 2, changed, true),
        ],
        &[],
    )
    .await
    .unwrap();
    c.index_records(
        first.backup_id,
        "Contact",
        &[indexed(contact(0), 1, changed, false)],
        &[account_of(&contact(0), &account(1))],
    )
    .await
    .unwrap();
    let first = c.complete_backup(first.backup_id).await.unwrap();

    // Second incremental: a new contact 2 under account 2.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = c
        .begin_incremental_backup(
            JobId::generate(),
            &tenant,
            &org,
            storage_id,
            first.backup_id,
        )
        .await
        .unwrap();
    c.index_records(
        second.backup_id,
        "Contact",
        &[indexed(contact(2), 1, newest, false)],
        &[account_of(&contact(2), &account(2))],
    )
    .await
    .unwrap();
    let second = c.complete_backup(second.backup_id).await.unwrap();

    // The chain: the backup and its bases, newest first.
    let chain_of = |b: BackupId| async move {
        c.backup_chain(b)
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.backup_id)
            .collect::<Vec<_>>()
    };
    let chain = chain_of(second.backup_id).await;
    assert_eq!(chain, [second.backup_id, first.backup_id, full.backup_id]);
    assert_eq!(
        chain_of(first.backup_id).await,
        [first.backup_id, full.backup_id]
    );
    assert_eq!(chain_of(full.backup_id).await, [full.backup_id]);
    assert_eq!(c.backup_chain(second.backup_id).await.unwrap()[1], first);
    assert!(matches!(
        c.backup_chain(BackupId::generate()).await,
        Err(CatalogError::NotFound(_))
    ));

    // By ids: each record's newest version, wherever in the chain it is.
    let asked = [account(0), account(1), account(2), contact(0), account(7)];
    let by_ids = c.chain_records(&chain, None, Some(&asked)).await.unwrap();
    let a0 = version("Account", account(0), &first, 1, changed, false);
    let a1 = version("Account", account(1), &first, 2, changed, true);
    let a2 = version("Account", account(2), &full, 3, old, false);
    let c0 = version("Contact", contact(0), &first, 1, changed, false);
    let c1 = version("Contact", contact(1), &full, 2, old, false);
    let c2 = version("Contact", contact(2), &second, 1, newest, false);
    // By sObject, then backup (the full one was created first), part and row.
    assert_eq!(by_ids, [a2.clone(), a0.clone(), a1.clone(), c0.clone()]);

    // By sObject: every record of the objects asked for, newest versions only.
    let by_object = c
        .chain_records(&chain, Some(&strings(&["Account"])), None)
        .await
        .unwrap();
    assert_eq!(by_object, [a2.clone(), a0.clone(), a1.clone()]);
    let everything = c.chain_records(&chain, None, None).await.unwrap();
    assert_eq!(
        everything,
        [
            a2.clone(),
            a0.clone(),
            a1.clone(),
            c1.clone(),
            c0.clone(),
            c2.clone()
        ]
    );
    // Both: the ids asked for, of the objects asked for.
    let contacts_asked = c
        .chain_records(
            &chain,
            Some(&strings(&["Contact"])),
            Some(&[account(0), contact(1), contact(2)]),
        )
        .await
        .unwrap();
    assert_eq!(contacts_asked, [c1.clone(), c2.clone()]);
    // As of the full backup alone, account 0 is its old version and account 1 is not deleted.
    let as_of_full = c
        .chain_records(&[full.backup_id], None, Some(&[account(0), account(1)]))
        .await
        .unwrap();
    assert_eq!(
        as_of_full,
        [
            version("Account", account(0), &full, 1, old, false),
            version("Account", account(1), &full, 2, old, false),
        ]
    );

    // The links of exactly the versions asked for: contact 0 as the first incremental read it.
    let links = c
        .version_links(&[
            (first.backup_id, contact(0)),
            (full.backup_id, contact(1)),
            (full.backup_id, account(0)),
        ])
        .await
        .unwrap();
    assert_eq!(
        links,
        [
            (contact(0), "AccountId".to_owned(), account(1)),
            (contact(1), "AccountId".to_owned(), account(2)),
        ]
    );
    let old_links = c
        .version_links(&[(full.backup_id, contact(0))])
        .await
        .unwrap();
    assert_eq!(
        old_links,
        [(contact(0), "AccountId".to_owned(), account(0))]
    );

    // Children across the chain, each once.
    let contact_of = |n: usize| (contact(n), "Contact".to_owned());
    assert_eq!(
        c.chain_children(&chain, &[account(2)]).await.unwrap(),
        [contact_of(1), contact_of(2)]
    );
    assert_eq!(
        c.chain_children(&chain, &[account(0), account(1)])
            .await
            .unwrap(),
        [contact_of(0)],
        "contact 0 pointed at account 0, then at account 1: listed once"
    );
    assert!(
        c.chain_children(&[second.backup_id, first.backup_id], &[account(0)])
            .await
            .unwrap()
            .is_empty(),
        "only the full backup saw contact 0 under account 0"
    );
    assert!(
        c.chain_children(&chain, &[contact(0)])
            .await
            .unwrap()
            .is_empty()
    );
    db.drop().await;
}

#[tokio::test]
async fn one_process_holds_a_restore_at_a_time_until_it_lets_go() {
    let db = TestDb::new().await;
    let c = &db.catalog;
    let id = uuid::Uuid::new_v4().to_string();
    let first = c.hold_restore(&id).await.unwrap();
    assert!(first.is_some());
    assert!(
        c.hold_restore(&id).await.unwrap().is_none(),
        "a second delivery took a held restore"
    );
    assert!(
        c.hold_restore(&uuid::Uuid::new_v4().to_string())
            .await
            .unwrap()
            .is_some()
    );
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        again = c.hold_restore(&id).await.unwrap();
        if again.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a dropped hold was not released");
    db.drop().await;
}
