//! Aborting multipart uploads left open under an org's prefix.
//!
//! Every upload Coffer starts ends in Complete or Abort, unless the process died in between.
//! Such an upload holds its parts (and their cost) until aborted. One open longer than the
//! stale age (a day by default, far beyond the time a part takes) is taken as abandoned.

use coffer_core::layout::OrgPrefix;
use coffer_core::{OrgId, TenantId};
use coffer_storage::list::{abort_upload, list_open_uploads};

use super::sweep::Janitor;
use crate::error::WorkerError;

/// Aborts the org's uploads older than the stale age, in every storage the tenant uses;
/// returns how many.
pub async fn abort_stale_uploads(
    janitor: &Janitor<'_>,
    tenant_id: &TenantId,
    org_id: &OrgId,
) -> Result<u64, WorkerError> {
    let now = janitor.catalog.now().await?;
    let age =
        time::Duration::try_from(janitor.settings.stale_upload_age).unwrap_or(time::Duration::MAX);
    let mut aborted = 0;
    for storage_id in janitor.catalog.storages_in_use(tenant_id).await? {
        let storage = janitor.catalog.storage(storage_id).await?;
        let client = janitor
            .storage
            .client_for(&storage, org_id, "janitor")
            .await?;
        let prefix = OrgPrefix::new(&storage.settings.base_path, tenant_id, org_id);
        let bucket = &storage.settings.bucket;
        for upload in list_open_uploads(&client, bucket, prefix.as_str()).await? {
            let stale = upload.initiated.is_some_and(|at| now - at >= age);
            if stale {
                tracing::info!(tenant = %tenant_id, org = %org_id, key = %upload.key, "aborting a stale multipart upload");
                abort_upload(&client, bucket, &upload).await?;
                aborted += 1;
            }
        }
    }
    Ok(aborted)
}
