//! Backup histories made to order, for retention tests and benchmarks: back-dated complete
//! backups whose objects are really in the bucket and whose rows are really in the catalog,
//! without running a backup of an org for each.

use coffer_catalog::{BackupFile, NewFileObject};
use coffer_core::layout::OrgPrefix;
use coffer_core::{BackupId, JobId, OrgId, TenantId};
use futures::{StreamExt as _, TryStreamExt as _};
use sha2::Digest as _;
use sqlx::{MySql, QueryBuilder};

use crate::TestEnv;

/// Objects PUT at once (the emulator stalls under many more while other tests run).
const PUTS_IN_FLIGHT: usize = 8;

/// Where a tenant's org writes now: its storage id and key prefix.
pub async fn place(
    env: &TestEnv,
    tenant: &TenantId,
    org: &OrgId,
) -> anyhow::Result<(u64, OrgPrefix)> {
    let (storage_id, prefix, _) = place_in(env, tenant, org).await?;
    Ok((storage_id, prefix))
}

/// As [`place`], with the storage's bucket.
async fn place_in(
    env: &TestEnv,
    tenant: &TenantId,
    org: &OrgId,
) -> anyhow::Result<(u64, OrgPrefix, String)> {
    let record = env
        .catalog
        .tenant(tenant)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no tenant {tenant}"))?;
    let storage = record.storage;
    let prefix = OrgPrefix::new(&storage.settings.base_path, tenant, org);
    Ok((storage.storage_id, prefix, storage.settings.bucket))
}

/// A complete backup of `objects` records parts (a few bytes each) and `records` index rows,
/// referencing the file bodies `bodies`, completed `days_ago` days ago.
pub async fn backup(
    env: &TestEnv,
    tenant: &TenantId,
    org: &OrgId,
    objects: usize,
    records: usize,
    bodies: &[String],
    days_ago: u32,
) -> anyhow::Result<BackupId> {
    let (storage_id, prefix, bucket) = place_in(env, tenant, org).await?;
    let c = &env.catalog;
    let backup = c
        .begin_backup(JobId::generate(), tenant, org, storage_id, "full")
        .await?
        .backup_id;
    let keys: Vec<String> = (1..=objects)
        .map(|n| {
            format!(
                "{}records/Account/part-{n:05}.csv.gz",
                prefix.backup_prefix(&backup)
            )
        })
        .collect();
    put_all(env, &bucket, &keys).await?;
    insert_object_rows(env, backup, &keys).await?;
    insert_record_rows(env, backup, records).await?;
    let refs: Vec<BackupFile> = bodies
        .iter()
        .enumerate()
        .map(|(i, sha)| reference(i, sha))
        .collect();
    c.record_backup_files(backup, &refs).await?;
    c.complete_backup(backup).await?;
    back_date(c, backup, days_ago).await?;
    Ok(backup)
}

/// Moves a backup `days` days into the past: it completed then (if it did) and started an
/// hour before.
pub async fn back_date(
    catalog: &coffer_catalog::Catalog,
    backup: BackupId,
    days: u32,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE backups SET started_at = CURRENT_TIMESTAMP(6) - INTERVAL ? DAY - INTERVAL 1 HOUR, \
         completed_at = IF(completed_at IS NULL, NULL, CURRENT_TIMESTAMP(6) - INTERVAL ? DAY) \
         WHERE backup_id = ?",
    )
    .bind(days)
    .bind(days)
    .bind(backup.to_string())
    .execute(catalog.pool())
    .await?;
    Ok(())
}

/// A file body stored at its content address and recorded; returns its SHA-256.
pub async fn body(
    env: &TestEnv,
    tenant: &TenantId,
    org: &OrgId,
    n: usize,
) -> anyhow::Result<String> {
    let (storage_id, prefix, bucket) = place_in(env, tenant, org).await?;
    let bytes = format!("body number {n}").into_bytes();
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    let key = prefix.file_key(&sha)?;
    put(env, &bucket, &key, bytes.clone()).await?;
    let object = NewFileObject {
        storage_id,
        sha256: sha.clone(),
        key,
        size: bytes.len() as u64,
        md5: "0".repeat(32), // read by no one in a made-up history
    };
    env.catalog.record_file_object(tenant, org, &object).await?;
    Ok(sha)
}

fn reference(i: usize, sha: &str) -> BackupFile {
    BackupFile {
        source: "Attachment".to_owned(),
        record_id: format!("00P{i:015}"),
        content_document_id: None,
        parent_id: None,
        sha256: sha.to_owned(),
        size: 0,
        md5: "0".repeat(32),
        modstamp: None,
    }
}

/// PUTs a few bytes at every key of `bucket`, [`PUTS_IN_FLIGHT`] at a time.
pub async fn put_all(env: &TestEnv, bucket: &str, keys: &[String]) -> anyhow::Result<()> {
    futures::stream::iter(
        keys.iter()
            .map(|key| put(env, bucket, key, b"id,name\n".to_vec())),
    )
    .buffer_unordered(PUTS_IN_FLIGHT)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

async fn put(env: &TestEnv, bucket: &str, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
    env.s3_client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(bytes.into())
        .send()
        .await?;
    Ok(())
}

async fn insert_object_rows(
    env: &TestEnv,
    backup: BackupId,
    keys: &[String],
) -> anyhow::Result<()> {
    for (chunk_no, chunk) in keys.chunks(500).enumerate() {
        let mut q = QueryBuilder::<MySql>::new(
            "INSERT INTO backup_objects (backup_id, object_key, kind, sobject, part, size_bytes, sha256, row_count) ",
        );
        q.push_values(chunk.iter().enumerate(), |mut row, (i, key)| {
            row.push_bind(backup.to_string())
                .push_bind(key)
                .push_bind("records")
                .push_bind("Account")
                .push_bind((chunk_no * 500 + i + 1) as u32)
                .push_bind(8u64)
                .push_bind(hex::encode(sha2::Sha256::digest(b"id,name\n")))
                .push_bind(0u64);
        });
        q.build().execute(env.catalog.pool()).await?;
    }
    Ok(())
}

async fn insert_record_rows(env: &TestEnv, backup: BackupId, records: usize) -> anyhow::Result<()> {
    let ids: Vec<usize> = (0..records).collect();
    for chunk in ids.chunks(1000) {
        let mut q = QueryBuilder::<MySql>::new(
            "INSERT INTO backup_records (backup_id, record_id, sobject, part, row_no) ",
        );
        q.push_values(chunk, |mut row, n| {
            row.push_bind(backup.to_string())
                .push_bind(format!("001{n:015}"))
                .push_bind("Account")
                .push_bind(1u32)
                .push_bind((*n + 1) as u32);
        });
        q.build().execute(env.catalog.pool()).await?;
    }
    Ok(())
}
