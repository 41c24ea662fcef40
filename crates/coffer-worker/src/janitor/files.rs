//! Deleting the file bodies no backup references any more.
//!
//! Bodies are content-addressed and shared by every backup of the org that saw them, so a body
//! goes only when no remaining backup (kept, running or failed) references it. A backup decides
//! to reuse a body before it writes its reference, so the org is fenced first
//! ([`coffer_catalog::Catalog::begin_files_sweep`]): the fence is taken only while no backup of
//! the org runs, and no backup starts until it is lifted. Under the fence the janitor deletes
//! the unreferenced bodies (objects first, then rows: a crash in between leaves rows whose
//! objects are gone, which the next sweep deletes again harmlessly), then the orphans: objects
//! under `files/` that no row knows (a backup that stored a body and died before recording it).

use std::collections::{BTreeMap, HashSet};

use coffer_catalog::FilesFence;
use coffer_core::layout::OrgPrefix;
use coffer_core::{OrgId, TenantId};
use coffer_storage::delete::{ObjectVersion, delete_objects};
use coffer_storage::list::{list_objects, list_versions, versioning_on};
use serde::Serialize;

use super::expire::{delete_versions, refused_keys};
use super::sweep::Janitor;
use crate::error::WorkerError;

/// Bodies looked at per round.
const ROUND: u32 = 1000;

/// What the file sweep of one org did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FilesOutcome {
    /// Unreferenced bodies deleted.
    pub deleted: u64,
    /// Bytes they held.
    pub bytes: u64,
    /// Objects under `files/` no catalog row knew, deleted.
    pub orphans: u64,
    /// Why the sweep was put off, when it was (a backup of the org is running).
    pub put_off: Option<String>,
}

/// Deletes the org's unreferenced bodies and orphans, under the fence.
pub async fn sweep_files(
    janitor: &Janitor<'_>,
    tenant_id: &TenantId,
    org_id: &OrgId,
) -> Result<FilesOutcome, WorkerError> {
    let catalog = janitor.catalog;
    let lease = lease_seconds(janitor);
    match catalog
        .begin_files_sweep(tenant_id, org_id, janitor.name, lease)
        .await?
    {
        FilesFence::Held => {}
        FilesFence::BackupRunning(backup_id) => {
            return Ok(FilesOutcome {
                put_off: Some(format!("backup {backup_id} of the org is running")),
                ..FilesOutcome::default()
            });
        }
    }
    let result = fenced(janitor, tenant_id, org_id).await;
    catalog
        .end_files_sweep(tenant_id, org_id, janitor.name)
        .await?;
    result
}

fn lease_seconds(janitor: &Janitor<'_>) -> i64 {
    i64::try_from(janitor.settings.files_lease.as_secs()).unwrap_or(i64::MAX)
}

async fn fenced(
    janitor: &Janitor<'_>,
    tenant_id: &TenantId,
    org_id: &OrgId,
) -> Result<FilesOutcome, WorkerError> {
    let mut outcome = FilesOutcome::default();
    loop {
        let batch = janitor
            .catalog
            .unreferenced_files(tenant_id, org_id, ROUND)
            .await?;
        if batch.is_empty() {
            break;
        }
        let mut by_storage: BTreeMap<u64, Vec<(String, String, u64)>> = BTreeMap::new();
        for f in batch {
            by_storage
                .entry(f.storage_id)
                .or_default()
                .push((f.sha256, f.key, f.size));
        }
        for (storage_id, bodies) in by_storage {
            keep_fence(janitor, tenant_id, org_id).await?;
            let keys = bodies.iter().map(|(_, key, _)| key.clone()).collect();
            delete_in(janitor, org_id, storage_id, keys).await?;
            let shas: Vec<String> = bodies.iter().map(|(sha, _, _)| sha.clone()).collect();
            janitor
                .catalog
                .forget_file_objects(tenant_id, org_id, storage_id, &shas)
                .await?;
            outcome.deleted += bodies.len() as u64;
            outcome.bytes += bodies.iter().map(|(_, _, size)| size).sum::<u64>();
        }
    }
    for storage_id in janitor.catalog.storages_in_use(tenant_id).await? {
        keep_fence(janitor, tenant_id, org_id).await?;
        outcome.orphans += delete_orphans(janitor, tenant_id, org_id, storage_id).await?;
    }
    Ok(outcome)
}

/// Renews the fence; a fence lost (the lease ran out) stops the sweep before it deletes more.
async fn keep_fence(
    janitor: &Janitor<'_>,
    tenant_id: &TenantId,
    org_id: &OrgId,
) -> Result<(), WorkerError> {
    let held = janitor
        .catalog
        .renew_files_sweep(tenant_id, org_id, janitor.name, lease_seconds(janitor))
        .await?;
    match held {
        true => Ok(()),
        false => Err(WorkerError::Janitor(format!(
            "the fence on org {org_id}'s file bodies ran out; stopped before deleting more"
        ))),
    }
}

/// Deletes `keys` in storage `storage_id` (every version, when the tenant allows it on a
/// versioned bucket).
async fn delete_in(
    janitor: &Janitor<'_>,
    org_id: &OrgId,
    storage_id: u64,
    keys: Vec<String>,
) -> Result<u64, WorkerError> {
    let storage = janitor.catalog.storage(storage_id).await?;
    let client = janitor
        .storage
        .client_for(&storage, org_id, "janitor")
        .await?;
    let bucket = &storage.settings.bucket;
    let mut targets = Vec::with_capacity(keys.len());
    let all_versions =
        delete_versions(janitor, &storage).await? && versioning_on(&client, bucket).await?;
    for key in keys {
        match all_versions {
            true => targets.extend(
                list_versions(&client, bucket, &key)
                    .await?
                    .into_iter()
                    .filter(|v| v.key == key),
            ),
            false => targets.push(ObjectVersion {
                key,
                version_id: None,
            }),
        }
    }
    let outcome =
        delete_objects(&client, bucket, targets, janitor.settings.delete_in_flight).await?;
    match refused_keys(&outcome) {
        Some(err) => Err(WorkerError::Janitor(format!(
            "file bodies in bucket {bucket}: {err}"
        ))),
        None => Ok(outcome.deleted),
    }
}

/// Deletes the objects under the org's `files/` in `storage_id` that no catalog row knows.
async fn delete_orphans(
    janitor: &Janitor<'_>,
    tenant_id: &TenantId,
    org_id: &OrgId,
    storage_id: u64,
) -> Result<u64, WorkerError> {
    let storage = janitor.catalog.storage(storage_id).await?;
    let client = janitor
        .storage
        .client_for(&storage, org_id, "janitor")
        .await?;
    let prefix = OrgPrefix::new(&storage.settings.base_path, tenant_id, org_id).files_prefix();
    let listed = list_objects(&client, &storage.settings.bucket, &prefix).await?;
    if listed.is_empty() {
        return Ok(0);
    }
    let known: HashSet<String> = janitor
        .catalog
        .file_shas(tenant_id, org_id, storage_id)
        .await?
        .into_iter()
        .collect();
    let orphans: Vec<String> = listed
        .into_iter()
        .map(|o| o.key)
        .filter(|key| {
            !key.rsplit('/')
                .next()
                .is_some_and(|sha| known.contains(sha))
        })
        .collect();
    if orphans.is_empty() {
        return Ok(0);
    }
    tracing::warn!(tenant = %tenant_id, org = %org_id, storage_id, orphans = orphans.len(), "deleting file bodies no catalog row knows");
    delete_in(janitor, org_id, storage_id, orphans).await
}
