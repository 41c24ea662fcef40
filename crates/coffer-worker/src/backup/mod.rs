//! The backup pipeline.
//!
//! [`run_backup`] is the flow of the design, one step per function:
//!
//! 1. [`load_tenant_and_org`]: where the data goes and how to reach the org come from the
//!    catalog, never from the message;
//! 2. `begin_backup`: find or create this job's backup (a redelivered job resumes its own
//!    backup; a completed one is not redone), then [`clear_earlier_attempt`]: objects are
//!    created only if absent (`If-None-Match`), so what an interrupted attempt left under the
//!    backup's prefix, recorded or not, is deleted before the same keys are written again;
//! 3. [`choose_objects`]: describe the org, keep what can be backed up;
//! 4. per object, [`extract::extract_sobject`]: Bulk API 2.0 query -> gzip CSV parts -> multipart
//!    upload; each part's catalog row is written as soon as the part is durable;
//! 5. [`write_manifest`], then mark the backup complete.
//!
//! Only after step 5 does the handler ack the message.

pub mod extract;
pub mod manifest;
pub mod parts;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use coffer_catalog::{
    BackupRecord, BackupState, Catalog, NewObject, ObjectKind, OrgRecord, StorageRecord,
    TenantRecord,
};
use coffer_core::layout::OrgPrefix;
use coffer_core::{JobId, OrgId, SObjectName, TenantId};
use coffer_proto::v1::{BackupKind, BackupRequested};
use coffer_salesforce::{ClientOptions, OrgConnection, SObjectDescribe, SalesforceClient};
use coffer_storage::multipart::UploadOptions;
use coffer_storage::{BucketTarget, MultipartWriter, S3Client};

use crate::error::WorkerError;
use crate::settings::WorkerSettings;
use crate::storage::{StorageClients, target_of};
use manifest::{MANIFEST_FORMAT, MANIFEST_VERSION, Manifest, ManifestObject};
use parts::PartPlan;

/// A validated BackupRequested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupJob {
    /// The job (idempotency key).
    pub job_id: JobId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The org.
    pub org_id: OrgId,
    /// Only these objects, or all when empty.
    pub sobjects: Vec<SObjectName>,
}

impl BackupJob {
    /// Validates the message's fields.
    pub fn from_message(job_id: JobId, msg: &BackupRequested) -> Result<Self, WorkerError> {
        let invalid = |e: coffer_core::IdError| WorkerError::InvalidJob(e.to_string());
        if msg.kind == BackupKind::Incremental as i32 {
            return Err(WorkerError::Unsupported("incremental backup"));
        }
        Ok(BackupJob {
            job_id,
            tenant_id: TenantId::new(msg.tenant_id.clone()).map_err(invalid)?,
            org_id: OrgId::new(msg.org_id.clone()).map_err(invalid)?,
            sobjects: msg
                .sobjects
                .iter()
                .map(|s| SObjectName::new(s.clone()).map_err(invalid))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// What the pipeline needs from the process.
#[derive(Debug)]
pub struct BackupContext {
    /// The catalog.
    pub catalog: Catalog,
    /// S3 clients per storage.
    pub storage: StorageClients,
    /// Sizes and levels.
    pub settings: WorkerSettings,
}

/// What a finished backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// The backup as the catalog now holds it (state complete, totals set).
    pub backup: BackupRecord,
    /// Whether this attempt found the backup already complete and did nothing.
    pub already_complete: bool,
    /// Time this attempt took.
    pub duration: Duration,
}

/// Runs (or resumes) the backup of `job`. See the module docs for the steps. A failure leaves
/// the backup running; the handler decides whether it is failed for good.
pub async fn run_backup(
    ctx: &BackupContext,
    job: &BackupJob,
) -> Result<BackupSummary, WorkerError> {
    let started = Instant::now();
    let (tenant, org) = load_tenant_and_org(&ctx.catalog, job).await?;
    let backup = ctx
        .catalog
        .begin_backup(
            job.job_id,
            &job.tenant_id,
            &job.org_id,
            tenant.storage.storage_id,
            "full",
        )
        .await?;
    if backup.state == BackupState::Complete {
        tracing::info!(backup_id = %backup.backup_id, "backup already complete, nothing to do");
        return Ok(BackupSummary {
            backup,
            already_complete: true,
            duration: started.elapsed(),
        });
    }
    let storage = ctx.catalog.storage(backup.storage_id).await?;
    let backup = write_backup(ctx, job, &org, &backup, &storage).await?;
    Ok(BackupSummary {
        backup,
        already_complete: false,
        duration: started.elapsed(),
    })
}

/// The tenant (with the storage new backups go to) and the org, from the catalog.
pub async fn load_tenant_and_org(
    catalog: &Catalog,
    job: &BackupJob,
) -> Result<(TenantRecord, OrgRecord), WorkerError> {
    let tenant = catalog
        .tenant(&job.tenant_id)
        .await?
        .ok_or_else(|| WorkerError::UnknownTenant(job.tenant_id.to_string()))?;
    let org = catalog
        .org(&job.tenant_id, &job.org_id)
        .await?
        .ok_or_else(|| WorkerError::UnknownOrg {
            tenant: job.tenant_id.to_string(),
            org: job.org_id.to_string(),
        })?;
    Ok((tenant, org))
}

/// Steps 3 to 5, into the storage the backup began with.
async fn write_backup(
    ctx: &BackupContext,
    job: &BackupJob,
    org: &OrgRecord,
    backup: &BackupRecord,
    storage: &StorageRecord,
) -> Result<BackupRecord, WorkerError> {
    let sf = connect(org, &ctx.settings).await?;
    let describes = choose_objects(&sf, &job.sobjects).await?;
    let client = ctx
        .storage
        .client_for(storage, &job.org_id, &job.job_id.to_string())
        .await?;
    let target = target_of(storage);
    let prefix = OrgPrefix::new(&storage.settings.base_path, &job.tenant_id, &job.org_id);
    clear_earlier_attempt(&ctx.catalog, &client, &target, &prefix, backup).await?;
    let mut written = Vec::new();
    for describe in &describes {
        let plan = part_plan(ctx, &client, &target, &prefix, backup, describe)?;
        for object in extract::extract_sobject(&sf, describe, plan).await? {
            ctx.catalog.record_object(backup.backup_id, &object).await?;
            written.push(object);
        }
    }
    let manifest = write_manifest(
        ctx, &client, &target, &prefix, backup, org, &describes, &written,
    )
    .await?;
    ctx.catalog
        .record_object(backup.backup_id, &manifest)
        .await?;
    written.push(manifest);
    Ok(ctx.catalog.complete_backup(backup.backup_id).await?)
}

async fn connect(
    org: &OrgRecord,
    settings: &WorkerSettings,
) -> Result<SalesforceClient, WorkerError> {
    let conn = OrgConnection {
        login_url: org.login_url.clone(),
        client_id: org.client_id.clone(),
        client_secret: org.client_secret.clone(),
        api_version: org.api_version.clone(),
    };
    let options = ClientOptions {
        max_records: settings.salesforce_page_size,
        ..ClientOptions::default()
    };
    Ok(SalesforceClient::connect_with(conn, options).await?)
}

/// Describes the objects to back up: those asked for, or every object the org lets us query
/// and replicate.
pub async fn choose_objects(
    sf: &SalesforceClient,
    wanted: &[SObjectName],
) -> Result<Vec<SObjectDescribe>, WorkerError> {
    let global = sf.describe_global().await?;
    let names: Vec<String> = if wanted.is_empty() {
        global
            .iter()
            .filter(|o| o.queryable && o.replicateable)
            .map(|o| o.name.clone())
            .collect()
    } else {
        for w in wanted {
            if !global.iter().any(|o| o.name == w.as_str() && o.queryable) {
                return Err(WorkerError::InvalidJob(format!(
                    "object {w} is not queryable in this org"
                )));
            }
        }
        wanted.iter().map(|w| w.to_string()).collect()
    };
    let mut describes = Vec::with_capacity(names.len());
    for name in names {
        let sobject = SObjectName::new(name).map_err(|e| WorkerError::InvalidJob(e.to_string()))?;
        describes.push(sf.describe_sobject(&sobject).await?);
    }
    Ok(describes)
}

fn part_plan(
    ctx: &BackupContext,
    client: &S3Client,
    target: &BucketTarget,
    prefix: &OrgPrefix,
    backup: &BackupRecord,
    describe: &SObjectDescribe,
) -> Result<PartPlan, WorkerError> {
    Ok(PartPlan {
        client: client.clone(),
        target: target.clone(),
        prefix: prefix.clone(),
        backup_id: backup.backup_id,
        sobject: SObjectName::new(describe.name.clone())
            .map_err(|e| WorkerError::InvalidJob(e.to_string()))?,
        max_part_bytes: ctx.settings.max_part_bytes,
        upload: UploadOptions {
            part_size: ctx.settings.effective_upload_part_size(),
            max_in_flight: ctx.settings.upload_concurrency,
            content_type: "application/gzip".to_owned(),
            ..UploadOptions::default()
        },
        gzip_level: ctx.settings.gzip_level,
    })
}

/// Writes `manifest.json` and returns its object row.
#[allow(clippy::too_many_arguments)]
async fn write_manifest(
    ctx: &BackupContext,
    client: &S3Client,
    target: &BucketTarget,
    prefix: &OrgPrefix,
    backup: &BackupRecord,
    org: &OrgRecord,
    describes: &[SObjectDescribe],
    written: &[NewObject],
) -> Result<NewObject, WorkerError> {
    let started_at = backup
        .started_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        version: MANIFEST_VERSION,
        backup_id: backup.backup_id.to_string(),
        tenant_id: backup.tenant_id.as_str(),
        org_id: backup.org_id.as_str(),
        kind: &backup.kind,
        started_at,
        api_version: &org.api_version,
        objects: written.iter().map(ManifestObject::of).collect(),
        schema: describes
            .iter()
            .map(|d| (d.name.as_str(), d))
            .collect::<BTreeMap<_, _>>(),
    };
    let body = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| WorkerError::Task(format!("manifest encoding: {e}")))?;
    let options = UploadOptions {
        part_size: ctx.settings.effective_upload_part_size(),
        max_in_flight: 1,
        content_type: "application/json".to_owned(),
        expected_size: Some(body.len() as u64),
        ..UploadOptions::default()
    };
    let mut upload = MultipartWriter::create(
        client,
        target,
        prefix.manifest_key(&backup.backup_id),
        options,
    )
    .await?;
    upload.write(&body).await?;
    let uploaded = upload.finish().await?;
    Ok(NewObject {
        key: uploaded.key,
        kind: ObjectKind::Manifest,
        sobject: None,
        part: None,
        size: uploaded.size,
        sha256: uploaded.sha256_hex,
        rows: 0,
    })
}

/// Deletes what interrupted attempts of this backup left, from the bucket first (listed, so an
/// object completed just before a crash is found even without its catalog row), then from the
/// catalog. A first attempt finds nothing and costs one list call.
pub async fn clear_earlier_attempt(
    catalog: &Catalog,
    client: &S3Client,
    target: &BucketTarget,
    prefix: &OrgPrefix,
    backup: &BackupRecord,
) -> Result<(), WorkerError> {
    let backup_prefix = prefix.backup_prefix(&backup.backup_id);
    let mut left: Vec<String> =
        coffer_storage::list::list_keys(client, &target.bucket, &backup_prefix).await?;
    let recorded = catalog.backup_objects(backup.backup_id).await?;
    let listed: HashSet<String> = left.iter().cloned().collect();
    left.extend(
        recorded
            .into_iter()
            .map(|o| o.key)
            .filter(|k| !listed.contains(k)),
    );
    if left.is_empty() {
        return Ok(());
    }
    tracing::info!(backup_id = %backup.backup_id, count = left.len(), "removing objects of an earlier attempt");
    coffer_storage::delete::delete_keys(client, &target.bucket, &left).await?;
    catalog.delete_object_rows(backup.backup_id, &left).await?;
    Ok(())
}
