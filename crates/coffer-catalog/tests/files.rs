//! File objects and backup file references against a real MariaDB (`scripts/stack up`).

#![allow(clippy::unwrap_used)]

mod common;

use coffer_catalog::files::FILE_BATCH_ROWS;
use coffer_catalog::{BackupFile, Catalog, NewFileObject, NewStorage, Sse, StorageAccess};
use coffer_core::layout::BasePath;
use coffer_core::{BackupId, JobId, OrgId, TenantId};
use common::TestDb;

fn ids() -> (TenantId, OrgId) {
    (
        TenantId::new("acme").unwrap(),
        OrgId::new("00D000000000001AAA").unwrap(),
    )
}

async fn tenant_and_backup(catalog: &Catalog, bucket: &str) -> (u64, BackupId) {
    let (tenant, org) = ids();
    let storage = NewStorage {
        bucket: bucket.to_owned(),
        region: "us-east-1".to_owned(),
        endpoint: None,
        base_path: BasePath::default(),
        sse: Sse::S3,
        access: StorageAccess::Vendor,
    };
    let record = catalog.put_tenant(&tenant, "Acme", &storage).await.unwrap();
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
    (record.storage.storage_id, backup.backup_id)
}

fn sha(n: usize) -> String {
    format!("{n:064x}")
}

fn reference(n: usize, sha256: &str) -> BackupFile {
    BackupFile {
        source: "Attachment".to_owned(),
        record_id: format!("00P5g{n:013}"),
        content_document_id: None,
        parent_id: Some("001000000000001AAA".to_owned()),
        sha256: sha256.to_owned(),
        size: 100 + n as u64,
        md5: format!("{n:032x}"),
        modstamp: Some("2024-05-01T10:00:00.000+0000".to_owned()),
    }
}

#[tokio::test]
async fn a_file_object_is_recorded_once_and_found_by_sha256_or_md5_and_size() {
    let db = TestDb::new().await;
    let catalog = &db.catalog;
    let (tenant, org) = ids();
    let (storage_id, _) = tenant_and_backup(catalog, "files-b1").await;
    let object = NewFileObject {
        storage_id,
        sha256: sha(1),
        key: format!("acme/{org}/files/00/{}", sha(1)),
        size: 42,
        md5: "D41D8CD98F00B204E9800998ECF8427E".to_owned(),
    };
    assert!(
        catalog
            .record_file_object(&tenant, &org, &object)
            .await
            .unwrap()
    );
    let other_key = NewFileObject {
        key: "elsewhere".to_owned(),
        ..object.clone()
    };
    assert!(
        !catalog
            .record_file_object(&tenant, &org, &other_key)
            .await
            .unwrap(),
        "a second insert of the same body is ignored"
    );
    let found = catalog
        .file_object(&tenant, &org, storage_id, &sha(1))
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(found.key, object.key, "the first row is kept");
    assert_eq!(
        found.md5, "d41d8cd98f00b204e9800998ecf8427e",
        "md5 kept lowercase"
    );
    assert_eq!(
        catalog
            .file_object_by_md5(
                &tenant,
                &org,
                storage_id,
                "D41D8CD98F00B204E9800998ECF8427E",
                42
            )
            .await
            .unwrap()
            .map(|f| f.sha256),
        Some(sha(1))
    );
    assert!(
        catalog
            .file_object_by_md5(&tenant, &org, storage_id, &found.md5, 43)
            .await
            .unwrap()
            .is_none(),
        "another size is another body"
    );
    assert!(
        catalog
            .file_object(&tenant, &org, storage_id + 1, &sha(1))
            .await
            .unwrap()
            .is_none(),
        "another storage does not have it"
    );
    let other_org = OrgId::new("00D000000000002AAA").unwrap();
    assert!(
        catalog
            .file_object(&tenant, &other_org, storage_id, &sha(1))
            .await
            .unwrap()
            .is_none(),
        "another org does not share it"
    );
    db.drop().await;
}

#[tokio::test]
async fn references_are_written_in_batches_and_upsert_on_redelivery() {
    let db = TestDb::new().await;
    let catalog = &db.catalog;
    let (tenant, org) = ids();
    let (storage_id, backup_id) = tenant_and_backup(catalog, "files-b2").await;
    let body = sha(7);
    catalog
        .record_file_object(
            &tenant,
            &org,
            &NewFileObject {
                storage_id,
                sha256: body.clone(),
                key: "k".to_owned(),
                size: 1,
                md5: format!("{:032x}", 7),
            },
        )
        .await
        .unwrap();
    let count = FILE_BATCH_ROWS * 2 + 17;
    let rows: Vec<BackupFile> = (0..count).map(|n| reference(n, &body)).collect();
    catalog.record_backup_files(backup_id, &rows).await.unwrap();
    catalog
        .record_backup_files(backup_id, &rows)
        .await
        .expect("a redelivered batch upserts");
    let mut changed = rows[3].clone();
    changed.sha256 = sha(8);
    catalog
        .record_backup_files(backup_id, std::slice::from_ref(&changed))
        .await
        .unwrap();
    let stored = catalog.backup_files(backup_id).await.unwrap();
    assert_eq!(
        stored.len(),
        count,
        "one row per record, however often written"
    );
    assert!(stored.contains(&changed), "a rewrite replaces the row");
    assert!(stored.contains(&rows[count - 1]));
    assert_eq!(
        catalog.file_references(&tenant, &org, &body).await.unwrap(),
        count as u64 - 1
    );
    assert_eq!(
        catalog
            .file_references(&tenant, &org, &sha(9))
            .await
            .unwrap(),
        0
    );

    // earlier_files: only references whose body is still recorded in this storage.
    let wanted: Vec<String> = rows.iter().map(|r| r.record_id.clone()).collect();
    let earlier = catalog
        .earlier_files(&tenant, &org, storage_id, "Attachment", &wanted)
        .await
        .unwrap();
    assert_eq!(
        earlier.len(),
        count - 1,
        "the row pointing at an unrecorded body is left out"
    );
    assert_eq!(earlier[&rows[0].record_id], vec![rows[0].clone()]);
    assert!(!earlier.contains_key(&changed.record_id));
    assert!(
        catalog
            .earlier_files(&tenant, &org, storage_id, "ContentVersion", &wanted)
            .await
            .unwrap()
            .is_empty(),
        "another source is another record"
    );
    db.drop().await;
}
