//! One record as of a time: where the catalog's record index says it is, read back from the
//! bucket of the backup that holds it.
//!
//! [`record_as_of`] asks the catalog for the newest complete backup of the org, completed by
//! then, that holds the record (an incremental holds only what changed, so an unchanged record
//! is found in an older backup of the chain), reads that part from the storage the backup was
//! written to, checking the size and SHA-256 the catalog recorded, and returns the record's
//! row as field/value pairs.

use coffer_catalog::{Catalog, RecordVersion};
use coffer_core::layout::Compression;
use coffer_core::{OrgId, TenantId};
use coffer_storage::reader::{ExpectedObject, VerifiedReader};
use time::OffsetDateTime;

use crate::error::WorkerError;
use crate::storage::{StorageClients, target_of};

/// A record as a backup held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordAsOf {
    /// Where it was found.
    pub version: RecordVersion,
    /// Its fields, in the part's column order.
    pub fields: Vec<(String, String)>,
}

/// The state of `record_id` as of `at`, or `None` if no complete backup of the org held it by
/// then.
pub async fn record_as_of(
    catalog: &Catalog,
    storage: &StorageClients,
    (tenant_id, org_id): (&TenantId, &OrgId),
    record_id: &str,
    at: OffsetDateTime,
) -> Result<Option<RecordAsOf>, WorkerError> {
    let Some(version) = catalog
        .record_as_of(tenant_id, org_id, record_id, at)
        .await?
    else {
        return Ok(None);
    };
    let backup = catalog
        .backup(version.backup_id)
        .await?
        .ok_or_else(|| WorkerError::Task(format!("backup {} vanished", version.backup_id)))?;
    let place = catalog.storage(backup.storage_id).await?;
    let client = storage
        .client_for(&place, org_id, &format!("lookup-{}", backup.backup_id))
        .await?;
    let expected = ExpectedObject {
        size: version.object_size,
        sha256_hex: version.object_sha256.clone(),
    };
    let bucket = target_of(&place).bucket;
    let mut reader = VerifiedReader::open(&client, &bucket, &version.object_key, expected).await?;
    let mut body = Vec::with_capacity(usize::try_from(version.object_size).unwrap_or(0));
    while let Some(chunk) = reader.next_chunk().await? {
        body.extend_from_slice(&chunk);
    }
    let (row, compression) = (version.row, Compression::of_key(&version.object_key));
    let fields = tokio::task::spawn_blocking(move || nth_row(&body, compression, row))
        .await
        .map_err(|e| WorkerError::Task(e.to_string()))??;
    Ok(Some(RecordAsOf { version, fields }))
}

/// Row `row` (from 1) of a compressed CSV part, zipped with its header.
fn nth_row(
    body: &[u8],
    compression: Option<Compression>,
    row: u32,
) -> Result<Vec<(String, String)>, WorkerError> {
    let bad = |detail: String| WorkerError::Task(format!("reading the part: {detail}"));
    let mut csv = part_csv(body, compression)?;
    let header = csv.headers().map_err(|e| bad(e.to_string()))?.clone();
    let index = usize::try_from(row.saturating_sub(1)).unwrap_or(usize::MAX);
    let record = csv
        .records()
        .nth(index)
        .ok_or_else(|| bad(format!("the part has no row {row}")))?
        .map_err(|e| bad(e.to_string()))?;
    Ok(header
        .iter()
        .zip(record.iter())
        .map(|(h, v)| (h.to_owned(), v.to_owned()))
        .collect())
}

/// A CSV reader over a records part's bytes, decompressed as its key says (zstd, else gzip).
pub(crate) fn part_csv(
    body: &[u8],
    compression: Option<Compression>,
) -> Result<csv::Reader<Box<dyn std::io::Read + '_>>, WorkerError> {
    let decoded: Box<dyn std::io::Read> = match compression {
        Some(Compression::Zstd) => Box::new(
            zstd::stream::read::Decoder::new(body)
                .map_err(|e| WorkerError::Task(format!("reading a records part: {e}")))?,
        ),
        _ => Box::new(flate2::read::GzDecoder::new(body)),
    };
    Ok(csv::Reader::from_reader(decoded))
}
