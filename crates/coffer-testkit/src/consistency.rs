//! The consistency check tests run after anything that deletes or may be interrupted: the
//! bucket and the catalog agree.
//!
//! For one org in one bucket: every object row of every backup, and every file body row, has
//! its object, with the recorded size; no object under the org's prefix is unknown to the
//! catalog (restore reports aside); no multipart upload is left open. (`coffer verify`, of the
//! reliability work, is the production form of this check.)

use std::collections::{BTreeMap, BTreeSet};

use coffer_catalog::Catalog;
use coffer_core::layout::{BasePath, OrgPrefix};
use coffer_core::{OrgId, TenantId};
use coffer_storage::list::{list_objects, list_open_uploads};

/// What disagrees, one line each; empty when the bucket and the catalog agree.
pub async fn problems(
    catalog: &Catalog,
    client: &aws_sdk_s3::Client,
    bucket: &str,
    base: &BasePath,
    tenant: &TenantId,
    org: &OrgId,
) -> anyhow::Result<Vec<String>> {
    let prefix = OrgPrefix::new(base, tenant, org);
    let listed: BTreeMap<String, u64> = list_objects(client, bucket, prefix.as_str())
        .await?
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    let mut known = BTreeSet::new();
    let mut problems = Vec::new();
    let mut expect = |key: String, size: u64, what: String| {
        match listed.get(&key) {
            None => problems.push(format!("{what}: {key} is missing from the bucket")),
            Some(found) if *found != size => problems.push(format!(
                "{what}: {key} has {found} bytes, the catalog says {size}"
            )),
            Some(_) => {}
        }
        known.insert(key);
    };
    let mut in_bucket = BTreeSet::new();
    for storage_id in catalog.storages_in_use(tenant).await? {
        if catalog.storage(storage_id).await?.settings.bucket == bucket {
            in_bucket.insert(storage_id);
        }
    }
    for backup in catalog.backups_of(tenant, org).await? {
        if !in_bucket.contains(&backup.storage_id) {
            continue;
        }
        for object in catalog.backup_objects(backup.backup_id).await? {
            expect(
                object.key,
                object.size,
                format!("backup {}", backup.backup_id),
            );
        }
    }
    for &storage_id in &in_bucket {
        for sha in catalog.file_shas(tenant, org, storage_id).await? {
            if let Some(body) = catalog.file_object(tenant, org, storage_id, &sha).await? {
                expect(body.key, body.size, "file body".to_owned());
            }
        }
    }
    let restores = format!("{}/restores/", prefix.as_str().trim_end_matches('/'));
    for key in listed.keys() {
        if !known.contains(key) && !key.starts_with(&restores) {
            problems.push(format!("{key} is in the bucket but not in the catalog"));
        }
    }
    for upload in list_open_uploads(client, bucket, prefix.as_str()).await? {
        problems.push(format!("an upload to {} is still open", upload.key));
    }
    Ok(problems)
}
