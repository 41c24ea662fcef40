//! The record index and links against a real MariaDB (`scripts/stack up`): batches larger than
//! one statement, a retried task's index removed, overlap rows recognised, and the state of a
//! record as of a time across a full backup and its incremental.

#![allow(clippy::unwrap_used)]

mod common;

use coffer_catalog::records::INDEX_BATCH_ROWS;
use coffer_catalog::{BackupRecord, Catalog, IndexedRecord, NewObject, ObjectKind, RecordLink};
use coffer_core::{JobId, OrgId, TenantId};
use common::TestDb;
use time::OffsetDateTime;
use time::macros::datetime;

fn ids() -> (TenantId, OrgId) {
    (
        TenantId::new("acme").unwrap(),
        OrgId::new("00D000000000001AAA").unwrap(),
    )
}

async fn storage(catalog: &Catalog) -> u64 {
    common::vendor_tenant(catalog, &ids().0).await
}

fn account(n: usize) -> String {
    format!("0010000000{n:05}AAA")
}

fn indexed(n: usize, part: u32, row: u32, stamp: OffsetDateTime, deleted: bool) -> IndexedRecord {
    IndexedRecord {
        record_id: account(n),
        part,
        row,
        system_modstamp: Some(stamp),
        deleted,
    }
}

fn part_object(backup: &BackupRecord, part: u32, rows: u64) -> NewObject {
    NewObject {
        key: format!(
            "acme/org/backups/{}/records/Account/part-{part:05}.csv.gz",
            backup.backup_id
        ),
        kind: ObjectKind::Records,
        sobject: Some("Account".to_owned()),
        part: Some(part),
        size: 10,
        sha256: "0".repeat(64),
        rows,
    }
}

#[tokio::test]
async fn the_index_holds_every_record_once_and_a_retry_starts_clean() {
    let db = TestDb::new().await;
    let c = &db.catalog;
    let (tenant, org) = ids();
    let storage_id = storage(c).await;
    let backup = c
        .begin_backup(JobId::generate(), &tenant, &org, storage_id, "full")
        .await
        .unwrap();
    let stamp = datetime!(2024-05-01 10:00:00.123 UTC);
    // More rows than one statement carries, with a self-lookup on every other record.
    let n = INDEX_BATCH_ROWS + 37;
    let records: Vec<IndexedRecord> = (0..n)
        .map(|i| {
            indexed(
                i,
                1 + (i / 1000) as u32,
                1 + (i % 1000) as u32,
                stamp,
                false,
            )
        })
        .collect();
    let links: Vec<(String, RecordLink)> = (1..n)
        .step_by(2)
        .map(|i| {
            let link = RecordLink {
                child_id: account(i),
                field: "ParentId".to_owned(),
                parent_id: account(i - 1),
            };
            ("Account".to_owned(), link)
        })
        .collect();
    c.index_records(backup.backup_id, "Account", &records, &links)
        .await
        .unwrap();
    // A range read again after a split: the same record lands later, and its last place wins.
    let again = [indexed(5, 9, 1, stamp, false)];
    c.index_records(backup.backup_id, "Account", &again, &[])
        .await
        .unwrap();

    let got = c
        .indexed_records(backup.backup_id, Some("Account"))
        .await
        .unwrap();
    assert_eq!(got.len(), n);
    let five = got.iter().find(|(_, r)| r.record_id == account(5)).unwrap();
    assert_eq!((five.1.part, five.1.row), (9, 1));
    assert_eq!(
        five.1.system_modstamp,
        Some(stamp),
        "millisecond precision kept"
    );
    let stored_links = c.record_links(backup.backup_id).await.unwrap();
    assert_eq!(stored_links.len(), links.len());
    assert!(stored_links.contains(&links[0].1));

    // A retried task removes what its earlier attempt indexed, and only for its object.
    let contact = [IndexedRecord {
        record_id: "003000000000001AAA".to_owned(),
        ..indexed(0, 1, 1, stamp, false)
    }];
    c.index_records(backup.backup_id, "Contact", &contact, &[])
        .await
        .unwrap();
    c.delete_record_index(backup.backup_id, "Account", 1..=9_999)
        .await
        .unwrap();
    let left = c.indexed_records(backup.backup_id, None).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, "Contact");
    assert!(c.record_links(backup.backup_id).await.unwrap().is_empty());
    db.drop().await;
}

/// One slice's records of `sobject` (ids `first..first + n`, parts from `part`), each with a
/// link to the record before it, as the slice's task indexes them.
fn slice_index(
    prefix: &str,
    first: usize,
    n: usize,
    part: u32,
    stamp: OffsetDateTime,
) -> (Vec<IndexedRecord>, Vec<(String, RecordLink)>) {
    let id = |i: usize| format!("{prefix}0000000{i:05}AAA");
    let records = (first..first + n)
        .map(|i| IndexedRecord {
            record_id: id(i),
            part: part + (i - first) as u32 / 50,
            row: 1 + (i - first) as u32 % 50,
            system_modstamp: Some(stamp),
            deleted: false,
        })
        .collect();
    let links = (first + 1..first + n)
        .map(|i| {
            let link = RecordLink {
                child_id: id(i),
                field: "ParentId".to_owned(),
                parent_id: id(i - 1),
            };
            ("Contact".to_owned(), link)
        })
        .collect();
    (records, links)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slices_indexed_and_retried_side_by_side_all_succeed() {
    // Eight slices of one object, as eight workers write them at once: each starts by removing
    // what an earlier attempt indexed (nothing, then its first pass), indexes its records in
    // small batches, and runs twice as a retried task would. Lock conflicts between them are
    // settled inside the catalog: no call fails, and the index ends exact.
    let db = TestDb::new().await;
    let c = &db.catalog;
    let (tenant, org) = ids();
    let storage_id = storage(c).await;
    let backup = c
        .begin_backup(JobId::generate(), &tenant, &org, storage_id, "full")
        .await
        .unwrap();
    let stamp = datetime!(2024-05-01 10:00:00 UTC);
    const SLICES: usize = 8;
    const PER_SLICE: usize = 400;
    let mut writers = tokio::task::JoinSet::new();
    for slice in 0..SLICES {
        let (c, backup_id) = (c.clone(), backup.backup_id);
        writers.spawn(async move {
            let first_part = 1 + 10_000 * slice as u32;
            let parts = first_part..=first_part + 9_999;
            let (records, links) =
                slice_index("003", slice * PER_SLICE, PER_SLICE, first_part, stamp);
            for _attempt in 0..2 {
                c.delete_record_index(backup_id, "Contact", parts.clone())
                    .await?;
                for (r, l) in records.chunks(50).zip(links.chunks(50)) {
                    c.index_records(backup_id, "Contact", r, l).await?;
                }
            }
            Ok::<_, coffer_catalog::CatalogError>(())
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap().unwrap();
    }
    let got = c
        .indexed_records(backup.backup_id, Some("Contact"))
        .await
        .unwrap();
    assert_eq!(got.len(), SLICES * PER_SLICE);
    let links = c.record_links(backup.backup_id).await.unwrap();
    assert_eq!(links.len(), SLICES * (PER_SLICE - 1));
    db.drop().await;
}

#[tokio::test]
async fn the_state_of_a_record_as_of_a_time_follows_the_chain() {
    let db = TestDb::new().await;
    let c = &db.catalog;
    let (tenant, org) = ids();
    let storage_id = storage(c).await;
    let old = datetime!(2024-05-01 10:00:00.000 UTC);
    let changed = datetime!(2024-06-01 10:00:00.000 UTC);

    // A full backup of three accounts.
    let full = c
        .begin_backup(JobId::generate(), &tenant, &org, storage_id, "full")
        .await
        .unwrap();
    let rows: Vec<_> = (0..3)
        .map(|i| indexed(i, 1, i as u32 + 1, old, false))
        .collect();
    c.index_records(full.backup_id, "Account", &rows, &[])
        .await
        .unwrap();
    c.record_object(full.backup_id, &part_object(&full, 1, 3))
        .await
        .unwrap();
    // Not complete yet: nothing answers from it, and nothing counts as stored.
    let now = OffsetDateTime::now_utc();
    assert!(
        c.record_as_of(&tenant, &org, &account(0), now)
            .await
            .unwrap()
            .is_none()
    );
    let overlap = vec![(account(0), old), (account(1), changed)];
    assert!(
        c.stored_versions(&tenant, &org, &overlap)
            .await
            .unwrap()
            .is_empty()
    );
    let full = c.complete_backup(full.backup_id).await.unwrap();
    let full_done = full.completed_at.unwrap();
    assert_eq!(
        c.latest_complete_backup(&tenant, &org)
            .await
            .unwrap()
            .map(|b| b.backup_id),
        Some(full.backup_id)
    );

    // Overlap rows: the same (id, SystemModstamp) is stored; another stamp is a late commit.
    let stored = c.stored_versions(&tenant, &org, &overlap).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored.contains(&(account(0), old)));

    // An incremental: account 0 changed, account 1 deleted.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let incremental = c
        .begin_incremental_backup(JobId::generate(), &tenant, &org, storage_id, full.backup_id)
        .await
        .unwrap();
    assert_eq!(incremental.kind, "incremental");
    assert_eq!(incremental.base_backup_id, Some(full.backup_id));
    let rows = [
        indexed(0, 1, 1, changed, false),
        indexed(1, 1, 2, changed, true),
    ];
    c.index_records(incremental.backup_id, "Account", &rows, &[])
        .await
        .unwrap();
    c.record_object(incremental.backup_id, &part_object(&incremental, 1, 2))
        .await
        .unwrap();
    let incremental = c.complete_backup(incremental.backup_id).await.unwrap();
    let incremental_done = incremental.completed_at.unwrap();

    let as_of = |id: usize, at: OffsetDateTime| {
        let (tenant, org) = (tenant.clone(), org.clone());
        async move {
            c.record_as_of(&tenant, &org, &account(id), at)
                .await
                .unwrap()
        }
    };
    let then = as_of(0, full_done).await.unwrap();
    assert_eq!(
        (then.backup_id, then.system_modstamp),
        (full.backup_id, Some(old))
    );
    assert_eq!(then.object_key, part_object(&full, 1, 3).key);
    let later = as_of(0, incremental_done).await.unwrap();
    assert_eq!(
        (later.backup_id, later.system_modstamp),
        (incremental.backup_id, Some(changed))
    );
    assert_eq!(later.row, 1);
    assert!(as_of(1, incremental_done).await.unwrap().deleted);
    assert!(!as_of(1, full_done).await.unwrap().deleted);
    let untouched = as_of(2, incremental_done).await.unwrap();
    assert_eq!(
        untouched.backup_id, full.backup_id,
        "unchanged: read from the base"
    );
    assert!(
        as_of(0, full_done - time::Duration::seconds(1))
            .await
            .is_none(),
        "before any backup"
    );
    assert!(
        as_of(7, incremental_done).await.is_none(),
        "never backed up"
    );
    db.drop().await;
}
