//! The backup pipeline, fanned out over the fleet.
//!
//! A backup is the flow of the design, one step per function:
//!
//! 1. [`plan_backup`] (on `BackupRequested`): [`load_tenant_and_org`] (where the data goes and
//!    how to reach the org come from the catalog, never from the message); `begin_backup` finds
//!    or creates this job's backup (a redelivered job resumes its own backup; a completed one is
//!    not redone); the first attempt describes the org ([`choose_objects`]) and records the plan
//!    (one task per sObject, with the describe it reads with), a redelivery reuses it; an
//!    `ExtractTaskRequested` is published per task not done yet.
//! 2. [`run_task`] (on `ExtractTaskRequested`, any worker): take the task's lease (renewed while
//!    the task runs; a live lease held elsewhere means this delivery is a duplicate, an expired
//!    one that its worker died and the task is taken over); [`clear_earlier_attempt`] of the
//!    task's object (objects are created only if absent, so what an interrupted attempt left,
//!    parts, uploads in progress and index rows, is removed first); [`extract::extract_sobject`]
//!    (every record) or [`extract::extract_changes`] (an incremental: the changes after the
//!    base's cursor): Bulk API 2.0 query -> gzip CSV parts -> multipart upload, every row
//!    indexed ([`index`]), each part's catalog row written once the parts are durable; the task
//!    is marked done with the cursor it reached.
//! 3. [`finalize_backup`], by whichever task (or redelivery) finds every task done:
//!    `manifest.json` with the plan's schema snapshot, then the backup is marked complete.
//!
//! A delivery is acked only after its step's effects are durable.

pub mod extract;
pub mod files;
pub mod index;
pub mod manifest;
pub mod parts;
pub mod tasks;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use coffer_catalog::{
    BackupRecord, BackupState, Catalog, NewObject, ObjectKind, OrgRecord, PlannedTask, TaskSlice,
    TenantRecord,
};
use coffer_core::layout::{Compression, OrgPrefix};
use coffer_core::{BackupId, JobId, OrgId, SObjectName, TenantId};
use coffer_proto::v1::{BackupKind, BackupRequested};
use coffer_salesforce::slices::{id_slices, slice_count};
use coffer_salesforce::{
    ClientOptions, Cursor, IdRange, OrgConnection, QueryOperation, SObjectDescribe,
    SalesforceClient,
};
use coffer_storage::multipart::UploadOptions;
use coffer_storage::{BucketTarget, MultipartWriter, S3Client};

use crate::error::WorkerError;
use crate::settings::WorkerSettings;
use crate::storage::{StorageClients, target_of};
use manifest::{MANIFEST_FORMAT, MANIFEST_VERSION, Manifest, ManifestFile, ManifestObject};
use parts::PartPlan;
pub use tasks::{TaskPublisher, republish_stranded, run_task};

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
    /// Only what changed since the org's newest complete backup (a full backup when it has
    /// none).
    pub incremental: bool,
}

/// A message field that is not a valid id.
pub(crate) fn invalid(e: coffer_core::IdError) -> WorkerError {
    WorkerError::InvalidJob(e.to_string())
}

impl BackupJob {
    /// Validates the message's fields.
    pub fn from_message(job_id: JobId, msg: &BackupRequested) -> Result<Self, WorkerError> {
        Ok(BackupJob {
            incremental: msg.kind == BackupKind::Incremental as i32,
            sobjects: msg
                .sobjects
                .iter()
                .map(|s| SObjectName::new(s.clone()).map_err(invalid))
                .collect::<Result<_, _>>()?,
            ..Self::of(job_id, &msg.tenant_id, &msg.org_id)?
        })
    }

    /// The backup job a task (or a stranded task) belongs to, from its ids as text.
    pub fn of(job_id: JobId, tenant_id: &str, org_id: &str) -> Result<Self, WorkerError> {
        Ok(BackupJob {
            job_id,
            tenant_id: TenantId::new(tenant_id).map_err(invalid)?,
            org_id: OrgId::new(org_id).map_err(invalid)?,
            sobjects: Vec::new(),
            incremental: false,
        })
    }
}

/// What the pipeline needs from the process.
#[derive(Debug)]
pub struct BackupContext {
    /// This worker's name (host:pid), the start of its lease owner ids.
    pub worker_name: String,
    /// The catalog.
    pub catalog: Catalog,
    /// S3 clients per storage.
    pub storage: StorageClients,
    /// Sizes and levels.
    pub settings: WorkerSettings,
}

/// What a step of a backup achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The backup is complete (now, or already before this delivery).
    Complete {
        /// The backup as the catalog now holds it (state complete, totals set).
        backup: BackupRecord,
        /// Whether this delivery found it already complete and did nothing.
        already_complete: bool,
        /// Time this delivery took.
        duration: Duration,
    },
    /// Work remains; other deliveries (tasks) carry it on.
    Continues {
        /// The backup.
        backup_id: BackupId,
    },
}

/// Plans (or re-plans, on redelivery) the backup of `job` and hands out its tasks through
/// `publish`; when the plan is empty or every task is already done, finalises it. A failure
/// leaves the backup running; the handler decides whether it is failed for good.
#[tracing::instrument(name = "plan", skip_all, fields(job_id = %job.job_id, tenant = %job.tenant_id, org = %job.org_id))]
pub async fn plan_backup(
    ctx: &BackupContext,
    job: &BackupJob,
    publish: &TaskPublisher<'_>,
) -> Result<Progress, WorkerError> {
    let started = Instant::now();
    let (tenant, org) = load_tenant_and_org(&ctx.catalog, job).await?;
    let backup = begin(ctx, job, &tenant).await?;
    refuse_expiring(&backup)?;
    if backup.state == BackupState::Complete {
        tracing::info!(backup_id = %backup.backup_id, "backup already complete, nothing to do");
        return Ok(Progress::Complete {
            backup,
            already_complete: true,
            duration: started.elapsed(),
        });
    }
    let tasks = match ctx.catalog.tasks(backup.backup_id).await? {
        recorded if !recorded.is_empty() => recorded,
        _ => record_plan(ctx, job, &org, &backup).await?,
    };
    let open: Vec<_> = tasks.iter().filter(|t| !t.done).collect();
    tracing::info!(backup_id = %backup.backup_id, tasks = tasks.len(), open = open.len(), "backup planned");
    if open.is_empty() {
        let backup = finalize_backup(ctx, &backup).await?;
        return Ok(Progress::Complete {
            backup,
            already_complete: false,
            duration: started.elapsed(),
        });
    }
    for task in open {
        publish.publish(ctx, job, &backup, task.task_no).await?;
    }
    Ok(Progress::Continues {
        backup_id: backup.backup_id,
    })
}

/// A backup retention is deleting is never written to again: a replayed job or a stray task
/// for it goes to the dead-letter queue with this reason.
pub(crate) fn refuse_expiring(backup: &BackupRecord) -> Result<(), WorkerError> {
    match backup.state {
        BackupState::Expiring => Err(WorkerError::InvalidJob(format!(
            "backup {} was deleted by retention; request a new backup instead of replaying this job",
            backup.backup_id
        ))),
        _ => Ok(()),
    }
}

/// Finds or creates the job's backup. An incremental continues from the org's newest complete
/// backup; without one it runs as a full backup. A redelivery finds the backup (and the base)
/// its first attempt recorded.
async fn begin(
    ctx: &BackupContext,
    job: &BackupJob,
    tenant: &TenantRecord,
) -> Result<BackupRecord, WorkerError> {
    let storage_id = tenant.storage.storage_id;
    let (tenant_id, org_id) = (&job.tenant_id, &job.org_id);
    let base = match job.incremental {
        true => {
            ctx.catalog
                .latest_complete_backup(tenant_id, org_id)
                .await?
        }
        false => None,
    };
    let backup = match base {
        Some(base) => {
            ctx.catalog
                .begin_incremental_backup(job.job_id, tenant_id, org_id, storage_id, base.backup_id)
                .await?
        }
        None => {
            ctx.catalog
                .begin_backup(job.job_id, tenant_id, org_id, storage_id, "full")
                .await?
        }
    };
    if job.incremental && backup.base_backup_id.is_none() {
        tracing::info!(backup_id = %backup.backup_id, "no complete backup to continue from: the incremental runs as a full backup");
    }
    Ok(backup)
}

/// Describes the org and records the plan: one task per object, with the describe it reads
/// with and, in an incremental, the cursor its base reached for that object (an object the
/// base did not hold, or without `SystemModstamp`, is read whole); an object read whole with
/// more than [`WorkerSettings::slice_rows`] records becomes one task per slice of its ids. Only
/// the first attempt to plan gets here; a redelivery reuses the recorded plan.
async fn record_plan(
    ctx: &BackupContext,
    job: &BackupJob,
    org: &OrgRecord,
    backup: &BackupRecord,
) -> Result<Vec<coffer_catalog::TaskRecord>, WorkerError> {
    let sf = connect(org, &ctx.settings).await?;
    let plan = plan_with(ctx, job, backup, &sf).await;
    note_api_usage(&ctx.catalog, org, &sf).await;
    plan
}

/// Describes the objects, cuts the large ones into slices, and records the plan.
async fn plan_with(
    ctx: &BackupContext,
    job: &BackupJob,
    backup: &BackupRecord,
    sf: &SalesforceClient,
) -> Result<Vec<coffer_catalog::TaskRecord>, WorkerError> {
    let describes = choose_objects(sf, &job.sobjects).await?;
    let cursors = base_cursors(&ctx.catalog, backup).await?;
    let since = |d: &SObjectDescribe| {
        cursors
            .get(&d.name)
            .filter(|_| coffer_salesforce::incremental::supports_incremental(d))
            .cloned()
    };
    let whole: Vec<&str> = describes
        .iter()
        .filter(|d| since(d).is_none())
        .map(|d| d.name.as_str())
        .collect();
    let slices = plan_slices(sf, &ctx.settings, &whole).await?;
    let mut plan = Vec::with_capacity(describes.len());
    for d in &describes {
        let describe_json = serde_json::to_string(d).map_err(task_error)?;
        let since_json = since(d);
        let object_slices = match since_json {
            Some(_) => vec![TaskSlice::default()],
            None => slices.get(&d.name).cloned().unwrap_or_default(),
        };
        for slice in object_slices {
            plan.push(PlannedTask {
                sobject: d.name.clone(),
                slice,
                describe_json: describe_json.clone(),
                since_json: since_json.clone(),
            });
        }
    }
    Ok(ctx.catalog.record_plan(backup.backup_id, &plan).await?)
}

/// The slices of each object read whole: one (every id) for most, several id ranges for an
/// object with more than [`WorkerSettings::slice_rows`] records. If Salesforce will not count
/// records, every object is one task.
async fn plan_slices(
    sf: &SalesforceClient,
    settings: &WorkerSettings,
    objects: &[&str],
) -> Result<BTreeMap<String, Vec<TaskSlice>>, WorkerError> {
    let whole = || vec![TaskSlice::default()];
    let mut slices: BTreeMap<String, Vec<TaskSlice>> =
        objects.iter().map(|o| ((*o).to_owned(), whole())).collect();
    let counts = match sf.record_counts(objects).await {
        Ok(counts) => counts,
        Err(e) if e.pauses_org() => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "could not count records; every object is read by one task");
            return Ok(slices);
        }
    };
    for (object, count) in counts {
        let wanted = slice_count(count, settings.slice_rows, settings.max_slices);
        if wanted < 2 {
            continue;
        }
        let Some((lowest, highest)) = sf
            .id_bounds(&object, QueryOperation::Query, &IdRange::default())
            .await?
        else {
            continue;
        };
        let ranges = id_slices(&lowest, &highest, wanted);
        tracing::info!(sobject = %object, records = count, slices = ranges.len(), "object read in id slices");
        let object_slices = ranges
            .into_iter()
            .enumerate()
            .map(|(no, range)| TaskSlice {
                no: no as u32,
                id_from: range.from,
                id_to: range.to,
            })
            .collect();
        slices.insert(object, object_slices);
    }
    Ok(slices)
}

/// The cursor (JSON) each object of the backup's base reached; empty for a full backup. An
/// object the base read in slices continues from the earliest cursor of its slices.
async fn base_cursors(
    catalog: &Catalog,
    backup: &BackupRecord,
) -> Result<BTreeMap<String, String>, WorkerError> {
    let Some(base) = backup.base_backup_id else {
        return Ok(BTreeMap::new());
    };
    let mut earliest: BTreeMap<String, Cursor> = BTreeMap::new();
    for task in catalog.tasks(base).await? {
        let Some(json) = task.cursor_json else {
            continue;
        };
        let cursor: Cursor = serde_json::from_str(&json)
            .map_err(|e| WorkerError::Task(format!("cursor of base task {}: {e}", task.task_no)))?;
        earliest
            .entry(task.sobject)
            .and_modify(|c| *c = c.clone().min(cursor.clone()))
            .or_insert(cursor);
    }
    earliest
        .into_iter()
        .map(|(sobject, cursor)| Ok((sobject, serde_json::to_string(&cursor).map_err(task_error)?)))
        .collect()
}

/// How [`store_manifest`] writes: created (a finaliser's, after removing what a crashed one
/// left), or replacing the current one (after an erasure rewrote parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ManifestWrite {
    Create,
    Replace,
}

/// Writes the backup's `manifest.json` from its catalog rows and records it.
pub(crate) async fn store_manifest(
    ctx: &BackupContext,
    backup: &BackupRecord,
    how: ManifestWrite,
) -> Result<(), WorkerError> {
    let catalog = &ctx.catalog;
    let org = org_of(catalog, backup).await?;
    let BackupPlace {
        client,
        target,
        prefix,
    } = BackupPlace::of(ctx, backup).await?;
    let describes = catalog
        .tasks(backup.backup_id)
        .await?
        .iter()
        .filter(|t| t.slice.no == 0)
        .map(|t| serde_json::from_str(&t.describe_json).map_err(task_error))
        .collect::<Result<Vec<SObjectDescribe>, _>>()?;
    let manifest_key = prefix.manifest_key(&backup.backup_id);
    // A finaliser that crashed after writing it left one; objects are created only if absent.
    if how == ManifestWrite::Create {
        remove_earlier_manifest(&client, &target.bucket, &manifest_key).await?;
    }
    let written: Vec<NewObject> = catalog
        .backup_objects(backup.backup_id)
        .await?
        .into_iter()
        .filter(|o| o.kind != ObjectKind::Manifest)
        .collect();
    let files = catalog.backup_files(backup.backup_id).await?;
    let contents = Contents {
        describes: &describes,
        written: &written,
        files: &files,
    };
    let place = (&client, &target, &prefix);
    let manifest = write_manifest(ctx, place, backup, &org, contents, how).await?;
    catalog.record_object(backup.backup_id, &manifest).await?;
    crate::metrics::object_stored(manifest.kind, manifest.size);
    Ok(())
}

/// Deletes a manifest an earlier finaliser left. Looked for first, because on a versioned
/// bucket a blind delete leaves a delete marker per backup; but a customer's policy may not
/// allow the look (HeadObject of a missing key is a 403 without ListBucket), and then the
/// delete goes blind, as it always may.
async fn remove_earlier_manifest(
    client: &S3Client,
    bucket: &str,
    key: &str,
) -> Result<(), WorkerError> {
    match coffer_storage::copy::object_size(client, bucket, key).await {
        Ok(None) => Ok(()),
        Ok(Some(_)) | Err(_) => Ok(coffer_storage::delete::delete_key(client, bucket, key).await?),
    }
}

/// Writes the manifest and marks the backup complete; safe to run again. Two workers finishing
/// the last tasks at once both get here: the manifest is created only if absent, so the second
/// finds the first's and steps back with a retryable error; its retry finds the backup complete
/// (or, if the first died before completing it, finalises it again from the start).
pub async fn finalize_backup(
    ctx: &BackupContext,
    backup: &BackupRecord,
) -> Result<BackupRecord, WorkerError> {
    let catalog = &ctx.catalog;
    match store_manifest(ctx, backup, ManifestWrite::Create).await {
        Err(WorkerError::Storage(coffer_storage::StorageError::ObjectExists { .. })) => {
            return Err(WorkerError::Task(format!(
                "backup {} is being finalised by another worker (its manifest appeared meanwhile); trying again",
                backup.backup_id
            )));
        }
        other => other?,
    }
    let complete = catalog.complete_backup(backup.backup_id).await?;
    tracing::info!(backup_id = %backup.backup_id, objects = complete.objects, records = complete.record_count, "backup finalised");
    Ok(complete)
}

/// Where a backup's objects are: the client for its storage (as its org's session reaches it),
/// the bucket target, and the org's prefix.
pub(crate) struct BackupPlace {
    pub(crate) client: S3Client,
    pub(crate) target: BucketTarget,
    pub(crate) prefix: OrgPrefix,
}

impl BackupPlace {
    /// The place of `backup`, from the storage row it was begun with.
    pub(crate) async fn of(
        ctx: &BackupContext,
        backup: &BackupRecord,
    ) -> Result<BackupPlace, WorkerError> {
        let storage = ctx.catalog.storage(backup.storage_id).await?;
        let client = ctx
            .storage
            .client_for(&storage, &backup.org_id, &backup.job_id.to_string())
            .await?;
        Ok(BackupPlace {
            client,
            target: target_of(&storage),
            prefix: OrgPrefix::new(
                &storage.settings.base_path,
                &backup.tenant_id,
                &backup.org_id,
            ),
        })
    }
}

/// The connected org a backup reads.
pub(crate) async fn org_of(
    catalog: &Catalog,
    backup: &BackupRecord,
) -> Result<OrgRecord, WorkerError> {
    catalog
        .org(&backup.tenant_id, &backup.org_id)
        .await?
        .ok_or_else(|| WorkerError::UnknownOrg {
            tenant: backup.tenant_id.to_string(),
            org: backup.org_id.to_string(),
        })
}

fn task_error(e: serde_json::Error) -> WorkerError {
    WorkerError::Task(format!("schema snapshot: {e}"))
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

pub(crate) async fn connect(
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
        max_api_share: settings.max_api_share,
        ..ClientOptions::default()
    };
    Ok(SalesforceClient::connect_with(conn, options).await?)
}

/// Records the org's API usage as the client's latest response reported it, for `coffer
/// status` (metrics cannot carry org ids). Called whether the job's work succeeded or not; a
/// failure to record is logged and never fails the job.
pub(crate) async fn note_api_usage(catalog: &Catalog, org: &OrgRecord, sf: &SalesforceClient) {
    let Some(usage) = sf.api_usage() else {
        return;
    };
    let seen_at = time::OffsetDateTime::now_utc();
    if let Err(e) = catalog
        .record_api_usage(&org.tenant_id, &org.org_id, usage.used, usage.max, seen_at)
        .await
    {
        tracing::warn!(tenant_id = %org.tenant_id, org_id = %org.org_id, error = %e, "recording the org's api usage failed");
    }
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
        let sobject = SObjectName::new(name).map_err(invalid)?;
        describes.push(sf.describe_sobject(&sobject).await?);
    }
    Ok(describes)
}

pub(crate) fn part_plan(
    ctx: &BackupContext,
    place: &BackupPlace,
    backup: &BackupRecord,
    describe: &SObjectDescribe,
    slice: &TaskSlice,
) -> Result<PartPlan, WorkerError> {
    Ok(PartPlan {
        client: place.client.clone(),
        target: place.target.clone(),
        prefix: place.prefix.clone(),
        backup_id: backup.backup_id,
        sobject: SObjectName::new(describe.name.clone()).map_err(invalid)?,
        parts: slice.parts(),
        max_part_bytes: ctx.settings.max_part_bytes,
        upload: UploadOptions {
            part_size: ctx.settings.effective_upload_part_size(),
            max_in_flight: ctx.settings.upload_concurrency,
            content_type: ctx.settings.compression.content_type().to_owned(),
            ..UploadOptions::default()
        },
        compression: ctx.settings.compression,
        level: match ctx.settings.compression {
            Compression::Gzip => ctx.settings.gzip_level as i32,
            Compression::Zstd => ctx.settings.zstd_level,
        },
    })
}

/// What a manifest lists.
struct Contents<'a> {
    /// The schema snapshot.
    describes: &'a [SObjectDescribe],
    /// The records parts.
    written: &'a [NewObject],
    /// The file references.
    files: &'a [coffer_catalog::BackupFile],
}

/// Writes `manifest.json` and returns its object row.
async fn write_manifest(
    ctx: &BackupContext,
    (client, target, prefix): (&S3Client, &BucketTarget, &OrgPrefix),
    backup: &BackupRecord,
    org: &OrgRecord,
    Contents {
        describes,
        written,
        files,
    }: Contents<'_>,
    how: ManifestWrite,
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
        base_backup_id: backup.base_backup_id.map(|b| b.to_string()),
        started_at,
        api_version: &org.api_version,
        objects: written.iter().map(ManifestObject::of).collect(),
        files: files
            .iter()
            .map(|f| ManifestFile::of(prefix, f))
            .collect::<Result<_, _>>()
            .map_err(invalid)?,
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
        overwrite: how == ManifestWrite::Replace,
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

/// Deletes what interrupted attempts left of one task (an object, or one slice of it) of this
/// backup: its index rows, the multipart uploads a killed process never completed nor
/// aborted, and its parts, from the bucket first (listed, so a part completed just before a
/// crash is found even without its catalog row), then from the catalog. Only the slice's part
/// numbers are touched: other slices of the object may be running. A first attempt finds
/// nothing and costs two list calls.
pub(crate) async fn clear_earlier_attempt(
    catalog: &Catalog,
    place: &BackupPlace,
    backup: &BackupRecord,
    sobject: &SObjectName,
    slice: &TaskSlice,
) -> Result<(), WorkerError> {
    let parts = slice.parts();
    let in_slice = |key: &str| OrgPrefix::part_of_key(key).is_some_and(|n| parts.contains(&n));
    catalog
        .delete_record_index(backup.backup_id, sobject.as_str(), parts.clone())
        .await?;
    let (client, bucket) = (&place.client, &place.target.bucket);
    let records_prefix = place.prefix.records_prefix(&backup.backup_id, sobject);
    coffer_storage::multipart::abort_open_uploads_of(client, bucket, &records_prefix, in_slice)
        .await?;
    let mut left: Vec<String> = coffer_storage::list::list_keys(client, bucket, &records_prefix)
        .await?
        .into_iter()
        .filter(|k| in_slice(k))
        .collect();
    let listed: HashSet<String> = left.iter().cloned().collect();
    left.extend(
        catalog
            .backup_objects(backup.backup_id)
            .await?
            .into_iter()
            .filter(|o| o.sobject.as_deref() == Some(sobject.as_str()))
            .filter(|o| o.part.is_some_and(|n| parts.contains(&n)))
            .map(|o| o.key)
            .filter(|k| !listed.contains(k)),
    );
    if left.is_empty() {
        return Ok(());
    }
    tracing::info!(backup_id = %backup.backup_id, %sobject, slice = slice.no, count = left.len(), "removing objects of an earlier attempt");
    coffer_storage::delete::delete_keys(client, bucket, &left).await?;
    catalog.delete_object_rows(backup.backup_id, &left).await?;
    Ok(())
}
