//! Deleting one `expiring` backup: its objects from the storage it was written to, then its
//! catalog rows.
//!
//! The keys to delete are the catalog's object rows *and* whatever is listed under the backup's
//! prefix (a part or a staging object a crashed attempt wrote before recording it). On a
//! versioned bucket whose tenant chose so, every version under the prefix is deleted, not only
//! the current one. Rows go only once every key is deleted; a key the store refuses keeps the
//! backup `expiring`, with the error on its mark, for the next sweep.

use std::collections::BTreeSet;

use coffer_catalog::StorageRecord;
use coffer_core::BackupId;
use coffer_core::layout::OrgPrefix;
use coffer_storage::S3Client;
use coffer_storage::delete::{DeleteOutcome, ObjectVersion, delete_objects};
use coffer_storage::list::{
    abort_upload, list_keys, list_open_uploads, list_versions, versioning_on,
};
use serde::Serialize;

use super::sweep::Janitor;
use crate::error::WorkerError;

/// A backup the sweep deleted.
#[derive(Debug, Clone, Serialize)]
pub struct ExpiredBackup {
    /// The backup.
    pub backup_id: BackupId,
    /// Object versions deleted (current objects, or every version on a versioned bucket when
    /// the tenant allows).
    pub objects_deleted: u64,
    /// Open uploads under its prefix aborted.
    pub uploads_aborted: u64,
    /// Catalog rows removed.
    pub rows_removed: u64,
}

/// Deletes an `expiring` backup's objects and rows; safe to run again after a crash.
pub async fn expire_backup(
    janitor: &Janitor<'_>,
    backup_id: BackupId,
) -> Result<ExpiredBackup, WorkerError> {
    let catalog = janitor.catalog;
    let Some(backup) = catalog.backup(backup_id).await? else {
        let rows_removed = catalog.remove_backup_rows(backup_id).await?;
        return Ok(ExpiredBackup {
            backup_id,
            objects_deleted: 0,
            uploads_aborted: 0,
            rows_removed,
        });
    };
    let storage = catalog.storage(backup.storage_id).await?;
    let client = janitor
        .storage
        .client_for(&storage, &backup.org_id, "janitor")
        .await?;
    let prefix = OrgPrefix::new(
        &storage.settings.base_path,
        &backup.tenant_id,
        &backup.org_id,
    )
    .backup_prefix(&backup_id);
    let bucket = &storage.settings.bucket;
    let uploads_aborted = abort_all_uploads(&client, bucket, &prefix).await?;
    let known: Vec<String> = catalog
        .backup_objects(backup_id)
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let targets = targets(janitor, &client, &storage, &prefix, known).await?;
    let outcome =
        delete_objects(&client, bucket, targets, janitor.settings.delete_in_flight).await?;
    if let Some(err) = refused_keys(&outcome) {
        catalog
            .note_deletion(backup_id, outcome.deleted, Some(&err))
            .await?;
        return Err(WorkerError::Janitor(format!(
            "backup {backup_id} in bucket {bucket}: {err}; it stays expiring and the next sweep tries again"
        )));
    }
    catalog
        .note_deletion(backup_id, outcome.deleted, None)
        .await?;
    let rows_removed = catalog.remove_backup_rows(backup_id).await?;
    tracing::info!(%backup_id, tenant = %backup.tenant_id, org = %backup.org_id, objects = outcome.deleted, rows_removed, "backup deleted by retention");
    Ok(ExpiredBackup {
        backup_id,
        objects_deleted: outcome.deleted,
        uploads_aborted,
        rows_removed,
    })
}

/// What to delete under `prefix`: every version when the tenant allows it on a versioned
/// bucket, else the current objects (the catalog's and the listed ones).
async fn targets(
    janitor: &Janitor<'_>,
    client: &S3Client,
    storage: &StorageRecord,
    prefix: &str,
    known: Vec<String>,
) -> Result<Vec<ObjectVersion>, WorkerError> {
    let bucket = &storage.settings.bucket;
    if delete_versions(janitor, storage).await? && versioning_on(client, bucket).await? {
        return Ok(list_versions(client, bucket, prefix).await?);
    }
    let mut keys: BTreeSet<String> = known.into_iter().collect();
    keys.extend(list_keys(client, bucket, prefix).await?);
    Ok(keys
        .into_iter()
        .map(|key| ObjectVersion {
            key,
            version_id: None,
        })
        .collect())
}

/// Whether the tenant's policy asks for versions to be deleted (the org's policy is not
/// consulted: versions are a property of the tenant's bucket).
pub(super) async fn delete_versions(
    janitor: &Janitor<'_>,
    storage: &StorageRecord,
) -> Result<bool, WorkerError> {
    Ok(janitor
        .catalog
        .tenant_retention_policy(&storage.tenant_id)
        .await?
        .is_some_and(|p| p.delete_versions))
}

/// Aborts every upload still open under `prefix` (the backup is going: none of them will be
/// completed).
async fn abort_all_uploads(
    client: &S3Client,
    bucket: &str,
    prefix: &str,
) -> Result<u64, WorkerError> {
    let open = list_open_uploads(client, bucket, prefix).await?;
    for upload in &open {
        abort_upload(client, bucket, upload).await?;
    }
    Ok(open.len() as u64)
}

/// The keys the store refused, summarised (first three with their codes), if any.
pub(super) fn refused_keys(outcome: &DeleteOutcome) -> Option<String> {
    if outcome.failed.is_empty() {
        return None;
    }
    let shown: Vec<String> = outcome
        .failed
        .iter()
        .take(3)
        .map(|f| format!("{} ({}: {})", f.key, f.code, f.message))
        .collect();
    Some(format!(
        "{} keys not deleted: {}",
        outcome.failed.len(),
        shown.join("; ")
    ))
}
