//! Reading back the rows a restore writes: each record's row is found through the record index
//! (backup, part, row) and read from the part in the storage that backup was written to, with
//! the size and SHA-256 the catalog recorded checked before a byte is used. Each part is read
//! once for all the rows it holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use coffer_catalog::{ObjectKind, ObjectRecord, RestoreRow};
use coffer_core::BackupId;
use coffer_core::layout::Compression;
use coffer_storage::reader::{ExpectedObject, VerifiedReader};

use crate::backup::{BackupContext, BackupPlace};
use crate::error::WorkerError;

/// A record's fields as its backup holds them (column name to cell; an empty cell is null).
pub type SourceRow = HashMap<String, String>;

/// The rows of `rows`, by source id.
pub(crate) async fn read_rows(
    ctx: &BackupContext,
    rows: &[RestoreRow],
) -> Result<HashMap<String, SourceRow>, WorkerError> {
    let at = rows.iter().map(|r| {
        (
            r.source_id.as_str(),
            r.sobject.as_str(),
            r.backup_id,
            r.part,
            r.row_no,
        )
    });
    read_at(ctx, at).await
}

/// The rows of records found in the chain (their newest versions), by record id.
pub(crate) async fn read_versions(
    ctx: &BackupContext,
    versions: &[coffer_catalog::ChainRecord],
) -> Result<HashMap<String, SourceRow>, WorkerError> {
    let at = versions.iter().map(|v| {
        (
            v.record_id.as_str(),
            v.sobject.as_str(),
            v.backup_id,
            v.part,
            v.row_no,
        )
    });
    read_at(ctx, at).await
}

/// Rows at (record id, sobject, backup, part, row), by record id.
async fn read_at<'a>(
    ctx: &BackupContext,
    at: impl Iterator<Item = (&'a str, &'a str, BackupId, u32, u32)>,
) -> Result<HashMap<String, SourceRow>, WorkerError> {
    let mut wanted: BTreeMap<(BackupId, String, u32), BTreeMap<u32, String>> = BTreeMap::new();
    for (id, sobject, backup_id, part, row_no) in at {
        wanted
            .entry((backup_id, sobject.to_owned(), part))
            .or_default()
            .insert(row_no, id.to_owned());
    }
    let mut out = HashMap::new();
    // Each backup's storage and objects are looked up once, not once per part.
    let mut backups: HashMap<BackupId, (BackupPlace, Vec<ObjectRecord>)> = HashMap::new();
    for ((backup_id, sobject, part), by_row) in wanted {
        let (place, objects) = match backups.entry(backup_id) {
            std::collections::hash_map::Entry::Occupied(found) => found.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let place = place_of(ctx, backup_id).await?;
                slot.insert((place, ctx.catalog.backup_objects(backup_id).await?))
            }
        };
        let (place, objects) = (&*place, &*objects);
        let object = objects
            .iter()
            .find(|o| {
                o.kind == ObjectKind::Records
                    && o.sobject.as_deref() == Some(sobject.as_str())
                    && o.part == Some(part)
            })
            .ok_or_else(|| {
                WorkerError::Task(format!(
                    "backup {backup_id} has no part {part} of {sobject} in the catalog"
                ))
            })?;
        let numbers: BTreeSet<u32> = by_row.keys().copied().collect();
        for (row_no, fields) in read_part(place, object, numbers).await? {
            if let Some(source_id) = by_row.get(&row_no) {
                out.insert(source_id.clone(), fields);
            }
        }
    }
    Ok(out)
}

/// Where backup `backup_id` was written: the client for its storage, bucket and prefix.
async fn place_of(ctx: &BackupContext, backup_id: BackupId) -> Result<BackupPlace, WorkerError> {
    let backup = ctx
        .catalog
        .backup(backup_id)
        .await?
        .ok_or_else(|| WorkerError::Task(format!("backup {backup_id} vanished")))?;
    BackupPlace::of(ctx, &backup).await
}

/// Rows `numbers` (from 1) of one part, verified against the catalog's size and checksum.
async fn read_part(
    place: &BackupPlace,
    object: &ObjectRecord,
    numbers: BTreeSet<u32>,
) -> Result<Vec<(u32, SourceRow)>, WorkerError> {
    let expected = ExpectedObject {
        size: object.size,
        sha256_hex: object.sha256.clone(),
    };
    let reader =
        VerifiedReader::open(&place.client, &place.target.bucket, &object.key, expected).await?;
    let body = reader.read_all().await?;
    let compression = Compression::of_key(&object.key);
    tokio::task::spawn_blocking(move || pick_rows(&body, compression, &numbers))
        .await
        .map_err(|e| WorkerError::Task(e.to_string()))?
}

/// Rows `numbers` of a compressed CSV part, each zipped with the header.
fn pick_rows(
    body: &[u8],
    compression: Option<Compression>,
    numbers: &BTreeSet<u32>,
) -> Result<Vec<(u32, SourceRow)>, WorkerError> {
    let bad = |detail: String| WorkerError::Task(format!("reading a records part: {detail}"));
    let mut csv = crate::lookup::part_csv(body, compression)?;
    let header = csv.headers().map_err(|e| bad(e.to_string()))?.clone();
    let last = numbers.last().copied().unwrap_or(0);
    let mut out = Vec::with_capacity(numbers.len());
    for (index, record) in csv.records().enumerate() {
        let row_no = u32::try_from(index + 1).unwrap_or(u32::MAX);
        if row_no > last {
            break;
        }
        let record = record.map_err(|e| bad(e.to_string()))?;
        if numbers.contains(&row_no) {
            let fields = header
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect();
            out.push((row_no, fields));
        }
    }
    Ok(out)
}

/// Bodies larger than this are not sent inline (base64 in JSON); they need the multipart
/// upload, which this version does not do.
pub const MAX_INLINE_BODY: u64 = 25 * 1024 * 1024;

/// The file body of each record of `rows` that the backup holding its row references, read
/// from the org's content-addressed files with the SHA-256 checked; or why it cannot be sent.
pub(crate) async fn file_bodies(
    ctx: &BackupContext,
    rows: &[RestoreRow],
) -> Result<HashMap<String, Result<Vec<u8>, String>>, WorkerError> {
    let wanted: HashMap<&str, BackupId> = rows
        .iter()
        .map(|r| (r.source_id.as_str(), r.backup_id))
        .collect();
    let backups: BTreeSet<BackupId> = wanted.values().copied().collect();
    let mut out = HashMap::new();
    for backup_id in backups {
        let place = place_of(ctx, backup_id).await?;
        for file in ctx.catalog.backup_files(backup_id).await? {
            if wanted.get(file.record_id.as_str()) != Some(&backup_id) {
                continue;
            }
            let body = match file.size > MAX_INLINE_BODY {
                true => Err(format!(
                    "the file has {} bytes; bodies over {MAX_INLINE_BODY} bytes need a multipart upload, which this version does not do",
                    file.size
                )),
                false => Ok(read_file(&place, &file).await?),
            };
            out.insert(file.record_id.clone(), body);
        }
    }
    Ok(out)
}

async fn read_file(
    place: &BackupPlace,
    file: &coffer_catalog::BackupFile,
) -> Result<Vec<u8>, WorkerError> {
    let key = place
        .prefix
        .file_key(&file.sha256)
        .map_err(|e| WorkerError::Task(format!("file key of {}: {e}", file.record_id)))?;
    let expected = ExpectedObject {
        size: file.size,
        sha256_hex: file.sha256.clone(),
    };
    let reader = VerifiedReader::open(&place.client, &place.target.bucket, &key, expected).await?;
    Ok(reader.read_all().await?)
}
