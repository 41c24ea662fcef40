//! Erasing records from every kept backup (GDPR's right to erasure).
//!
//! [`erase_records`] writes the tombstones first (from then on no restore brings the records
//! back, whatever backup it reads), then rewrites each records part that holds one of them:
//! the part is read, the records' rows keep their `Id` and lose every other value (row numbers
//! stay, so the index of the other records still points right), and the part is written back
//! at its key. On a versioned bucket the versions that still hold the values are deleted. The
//! catalog then records the part's new size and checksum and drops the records' index, link
//! and file rows; each backup's manifest is written again. A run cut anywhere is finished by
//! the next (`coffer erase --resume`), which finds the parts still listed, and rewrites only
//! what still holds a value.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;

use coffer_catalog::{BackupState, PartToErase};
use coffer_core::layout::Compression;
use coffer_core::{BackupId, OrgId, TenantId};
use coffer_storage::delete::{ObjectVersion, delete_objects};
use coffer_storage::list::{list_versions, versioning_on};
use coffer_storage::{MultipartWriter, UploadOptions};
use serde::Serialize;
use sha2::Digest as _;

use crate::backup::{BackupContext, BackupPlace, ManifestWrite, store_manifest};
use crate::error::WorkerError;

/// What an erasure did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ErasureReport {
    /// Records whose tombstone this run wrote (others had one already).
    pub new_tombstones: u64,
    /// Records parts rewritten.
    pub parts_rewritten: u64,
    /// Backups whose manifest was written again.
    pub backups: u64,
    /// Records still pending (none when the erasure is complete).
    pub pending: Vec<String>,
}

/// Erases `record_ids` of the org from every kept backup; keeps their tombstones for good.
pub async fn erase_records(
    ctx: &BackupContext,
    tenant_id: &TenantId,
    org_id: &OrgId,
    record_ids: &[String],
    reason: &str,
) -> Result<ErasureReport, WorkerError> {
    let new_tombstones = ctx
        .catalog
        .record_erasure(tenant_id, org_id, record_ids, reason)
        .await?;
    tracing::info!(tenant = %tenant_id, org = %org_id, records = record_ids.len(), new_tombstones, "erasure requested");
    let mut report = finish_erasures(ctx, tenant_id, org_id).await?;
    report.new_tombstones = new_tombstones;
    Ok(report)
}

/// Finishes every erasure of the org still pending (after a crash, or backups that were
/// running when it was asked).
pub async fn finish_erasures(
    ctx: &BackupContext,
    tenant_id: &TenantId,
    org_id: &OrgId,
) -> Result<ErasureReport, WorkerError> {
    let catalog = &ctx.catalog;
    let pending = catalog.pending_erasures(tenant_id, org_id).await?;
    let mut report = ErasureReport::default();
    if pending.is_empty() {
        return Ok(report);
    }
    let parts = catalog.parts_holding(tenant_id, org_id, &pending).await?;
    let mut by_backup: BTreeMap<BackupId, Vec<PartToErase>> = BTreeMap::new();
    for part in parts {
        by_backup.entry(part.backup_id).or_default().push(part);
    }
    let mut running = BTreeSet::new();
    for (backup_id, parts) in by_backup {
        let Some(backup) = catalog.backup(backup_id).await? else {
            continue;
        };
        if backup.state == BackupState::Running {
            // Its parts may still be written: erased once it is complete (next run).
            running.insert(backup_id);
            continue;
        }
        let place = BackupPlace::of(ctx, &backup).await?;
        let versioned = versioned(&place).await;
        for part in &parts {
            rewrite_part(ctx, &place, versioned, part).await?;
            report.parts_rewritten += 1;
        }
        if backup.state == BackupState::Complete {
            store_manifest(ctx, &backup, ManifestWrite::Replace).await?;
            if versioned {
                let key = place.prefix.manifest_key(&backup_id);
                delete_older_versions(&place, &key).await?;
            }
        }
        report.backups += 1;
    }
    match running.is_empty() {
        true => catalog.erasure_done(tenant_id, org_id, &pending).await?,
        false => report.pending = pending,
    }
    tracing::info!(tenant = %tenant_id, org = %org_id, parts = report.parts_rewritten, backups = report.backups, pending = report.pending.len(), "erasure applied");
    Ok(report)
}

/// Rewrites one part without the values of its erased records, unless a run before did.
async fn rewrite_part(
    ctx: &BackupContext,
    place: &BackupPlace,
    versioned: bool,
    part: &PartToErase,
) -> Result<(), WorkerError> {
    let bucket = &place.target.bucket;
    let current = place
        .client
        .get_object()
        .bucket(bucket)
        .key(&part.key)
        .send()
        .await
        .map_err(|e| coffer_storage::StorageError::from_sdk("GetObject", bucket, e))?;
    let body = current
        .body
        .collect()
        .await
        .map_err(|e| WorkerError::Task(format!("reading {}: {e}", part.key)))?
        .into_bytes();
    let compression = Compression::of_key(&part.key);
    let ids: BTreeSet<String> = part.record_ids.iter().cloned().collect();
    let scrubbed = tokio::task::spawn_blocking(move || scrub(&body, compression, &ids))
        .await
        .map_err(|e| WorkerError::Task(e.to_string()))??;
    let (size, sha256) = match scrubbed {
        Scrubbed::Unchanged { size, sha256 } => (size, sha256),
        Scrubbed::Changed(bytes) => write_back(place, versioned, part, compression, bytes).await?,
    };
    ctx.catalog.part_rewritten(part, size, &sha256).await?;
    Ok(())
}

/// What scrubbing a part gave.
enum Scrubbed {
    /// No erased record had a value left (a run before rewrote it): its size and checksum.
    Unchanged { size: u64, sha256: String },
    /// The part's new bytes, compressed as before.
    Changed(Vec<u8>),
}

/// Blanks every value but `Id` of the rows of `ids` in a compressed CSV part.
fn scrub(
    body: &[u8],
    compression: Option<Compression>,
    ids: &BTreeSet<String>,
) -> Result<Scrubbed, WorkerError> {
    let bad = |detail: String| WorkerError::Task(format!("erasing from a records part: {detail}"));
    let mut reader = crate::lookup::part_csv(body, compression)?;
    let header = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
    let id_at = header
        .iter()
        .position(|h| h == "Id")
        .ok_or_else(|| bad("the part has no Id column".to_owned()))?;
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(&header).map_err(|e| bad(e.to_string()))?;
    let mut changed = false;
    for record in reader.records() {
        let record = record.map_err(|e| bad(e.to_string()))?;
        let erased = record.get(id_at).is_some_and(|id| ids.contains(id));
        if erased
            && record
                .iter()
                .enumerate()
                .any(|(i, v)| i != id_at && !v.is_empty())
        {
            changed = true;
            let blank: Vec<&str> = (0..record.len())
                .map(|i| if i == id_at { &record[id_at] } else { "" })
                .collect();
            out.write_record(&blank).map_err(|e| bad(e.to_string()))?;
        } else {
            out.write_record(&record).map_err(|e| bad(e.to_string()))?;
        }
    }
    if !changed {
        return Ok(Scrubbed::Unchanged {
            size: body.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(body)),
        });
    }
    let csv = out.into_inner().map_err(|e| bad(e.to_string()))?;
    compress(&csv, compression)
        .map(Scrubbed::Changed)
        .map_err(|e| bad(e.to_string()))
}

fn compress(csv: &[u8], compression: Option<Compression>) -> std::io::Result<Vec<u8>> {
    match compression {
        Some(Compression::Zstd) => zstd::encode_all(csv, 3),
        _ => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(csv)?;
            gz.finish()
        }
    }
}

/// Writes the scrubbed part over the old one, then, on a `versioned` bucket, deletes every
/// other version of it (they still hold the values). Returns its size and SHA-256.
async fn write_back(
    place: &BackupPlace,
    versioned: bool,
    part: &PartToErase,
    compression: Option<Compression>,
    bytes: Vec<u8>,
) -> Result<(u64, String), WorkerError> {
    let options = UploadOptions {
        content_type: compression
            .map_or("text/csv", Compression::content_type)
            .to_owned(),
        expected_size: Some(bytes.len() as u64),
        overwrite: true,
        ..UploadOptions::default()
    };
    let mut writer =
        MultipartWriter::create(&place.client, &place.target, part.key.clone(), options).await?;
    writer.write(&bytes).await?;
    let written = writer.finish().await?;
    if versioned {
        delete_older_versions(place, &part.key).await?;
    }
    tracing::info!(key = %part.key, records = part.record_ids.len(), "records part rewritten without erased records");
    Ok((written.size, written.sha256_hex))
}

/// Whether the bucket keeps versions. A customer's policy may not allow asking
/// (`s3:GetBucketVersioning`, not in the policy `coffer storage policy` prints): then it is
/// taken as unversioned, and the warning names what to grant so older versions go too.
async fn versioned(place: &BackupPlace) -> bool {
    let bucket = &place.target.bucket;
    match versioning_on(&place.client, bucket).await {
        Ok(on) => on,
        Err(e) => {
            tracing::warn!(%bucket, error = %e, "cannot tell whether the bucket keeps versions; if it does, older versions still hold erased values: grant s3:GetBucketVersioning, s3:ListBucketVersions and s3:DeleteObjectVersion on it");
            false
        }
    }
}

/// Deletes every version of `key` but the current one.
async fn delete_older_versions(place: &BackupPlace, key: &str) -> Result<(), WorkerError> {
    let bucket = &place.target.bucket;
    let head = place
        .client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| coffer_storage::StorageError::from_sdk("HeadObject", bucket, e))?;
    let current = head.version_id().map(str::to_owned);
    let older: Vec<ObjectVersion> = list_versions(&place.client, bucket, key)
        .await?
        .into_iter()
        .filter(|v| v.key == key && v.version_id.is_some() && v.version_id != current)
        .collect();
    if current.is_none() || older.is_empty() {
        return Ok(());
    }
    let outcome = delete_objects(&place.client, bucket, older, 1).await?;
    match outcome.failed.first() {
        Some(f) => Err(WorkerError::Janitor(format!(
            "an older version of {key} still holds erased values: {} ({})",
            f.code, f.message
        ))),
        None => Ok(()),
    }
}
