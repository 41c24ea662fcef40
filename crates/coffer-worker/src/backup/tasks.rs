//! Extract tasks: publishing them, and running one under a lease.
//!
//! Any worker may receive any task, and the broker may deliver a task twice (a redelivery after
//! a lost connection, a re-plan after a redelivered job). The task's catalog row decides who
//! works: [`run_task`] takes the row's lease, renews it every third of its length while the
//! extraction runs, and marks the task done only while it still holds the lease. A delivery
//! that finds the lease held:
//!
//! - watches it; if the holder renews it, the holder is alive and owns its own unacked delivery,
//!   so this one is a duplicate and is acked without work;
//! - if the lease runs out unrenewed, its worker died: this delivery takes the task over.
//!
//! A worker that loses its lease (it stalled past the lease and another took over) stops and
//! acks; the new holder finishes. A task that fails hands its lease back, so its retry (or the
//! delivery deferred while its org is paused) takes it at once. Whoever completes the last task finalises the backup; a
//! delivery of a task already done finalises it too if it is still open, so a crash between
//! the last task and the manifest is repaired by the redelivery. [`republish_stranded`] (run
//! periodically by every worker) publishes again tasks whose messages are gone: a duplicate
//! acked while its holder lived, whose holder then died.

use std::time::{Duration, Instant};

use coffer_catalog::{BackupRecord, BackupState, TaskLease, TaskRecord, TaskSlice};
use coffer_core::{BackupId, SObjectName};
use coffer_proto::v1::job_envelope::Job;
use coffer_proto::v1::{ExtractTaskRequested, JobEnvelope};
use coffer_queue::{OutgoingJob, Publisher};
use coffer_salesforce::{Cursor, IdRange, SObjectDescribe};
use csv::StringRecord;

use super::extract::StoredVersions;
use super::files::{FileSource, FilesContext, backup_files};
use super::index::{IndexWriter, RowIndex};
use super::parts::{PartPlan, PartSink, Written};
use super::{
    BackupContext, BackupJob, BackupPlace, Progress, clear_earlier_attempt, connect, extract,
    finalize_backup, note_api_usage, org_of, part_plan,
};
use crate::error::WorkerError;

/// Where the tasks of a plan go: the jobs queue, or (without a broker) run at once in this
/// process, one after the other.
pub enum TaskPublisher<'a> {
    /// Published for any worker.
    Queue(&'a Publisher),
    /// Run here, by this delivery.
    Inline,
}

impl TaskPublisher<'_> {
    /// Hands out task `task_no` of `backup`.
    pub async fn publish(
        &self,
        ctx: &BackupContext,
        job: &BackupJob,
        backup: &BackupRecord,
        task_no: u32,
    ) -> Result<(), WorkerError> {
        let task = ExtractTaskRequested {
            tenant_id: job.tenant_id.to_string(),
            org_id: job.org_id.to_string(),
            backup_id: backup.backup_id.to_string(),
            task_no,
        };
        match self {
            TaskPublisher::Queue(publisher) => publish_task(publisher, job, task).await,
            TaskPublisher::Inline => {
                Box::pin(run_task(ctx, &task)).await?;
                Ok(())
            }
        }
    }
}

async fn publish_task(
    publisher: &Publisher,
    job: &BackupJob,
    task: ExtractTaskRequested,
) -> Result<(), WorkerError> {
    let message_id = format!("{}:{}", task.backup_id, task.task_no);
    let envelope = JobEnvelope {
        schema_version: coffer_proto::CURRENT_SCHEMA_VERSION,
        job_id: job.job_id.to_string(),
        requested_at_unix_ms: 0,
        requested_by: "planner".to_owned(),
        traceparent: String::new(),
        job: Some(Job::ExtractTaskRequested(task)),
    };
    let payload = coffer_proto::encode(&envelope);
    publisher
        .publish_job(OutgoingJob {
            message_id: &message_id,
            kind: "extract_task",
            tenant: Some(job.tenant_id.as_str()),
            payload: &payload,
        })
        .await
        .map_err(|e| WorkerError::Task(format!("publishing task {message_id}: {e}")))
}

/// Publishes again the tasks no worker holds and nobody touched for `idle` (see
/// [`coffer_catalog::StrandedTask`]); returns how many. Any number of workers may run this: a
/// task published twice runs once, under its lease.
pub async fn republish_stranded(
    ctx: &BackupContext,
    publisher: &Publisher,
    idle: Duration,
) -> Result<usize, WorkerError> {
    let stranded = ctx.catalog.stranded_tasks(idle, 100).await?;
    for task in &stranded {
        let job_id = task.job_id.parse().map_err(super::invalid)?;
        let job = BackupJob::of(job_id, &task.tenant_id, &task.org_id)?;
        tracing::warn!(backup_id = %task.backup_id, task_no = task.task_no, tenant = %job.tenant_id, org = %job.org_id, "publishing a stranded task again");
        let msg = ExtractTaskRequested {
            tenant_id: task.tenant_id.clone(),
            org_id: task.org_id.clone(),
            backup_id: task.backup_id.to_string(),
            task_no: task.task_no,
        };
        publish_task(publisher, &job, msg).await?;
    }
    Ok(stranded.len())
}

/// Runs (or takes over, or recognises as a duplicate) one extract task, then finalises the
/// backup if it was the last.
pub async fn run_task(
    ctx: &BackupContext,
    msg: &ExtractTaskRequested,
) -> Result<Progress, WorkerError> {
    let started = Instant::now();
    let backup_id: BackupId = msg.backup_id.parse().map_err(super::invalid)?;
    let backup = ctx
        .catalog
        .backup(backup_id)
        .await?
        .ok_or_else(|| WorkerError::InvalidJob(format!("backup {backup_id} does not exist")))?;
    if msg.tenant_id != backup.tenant_id.as_str() || msg.org_id != backup.org_id.as_str() {
        return Err(WorkerError::InvalidJob(format!(
            "task names tenant {} and org {}, but backup {backup_id} belongs to others",
            msg.tenant_id, msg.org_id
        )));
    }
    super::refuse_expiring(&backup)?;
    if backup.state == BackupState::Complete {
        return Ok(complete(backup, true, started));
    }
    let owner = format!("{}/{}", ctx.worker_name, uuid::Uuid::new_v4().simple());
    if let Some(task) = take_lease(ctx, backup_id, msg.task_no, &owner).await? {
        let done = extract_under_lease(ctx, &backup, &task, &owner).await?;
        if !done {
            tracing::warn!(%backup_id, task_no = msg.task_no, "task lease lost; the new holder finishes the task");
            return Ok(Progress::Continues { backup_id });
        }
    }
    finish_if_last(ctx, backup_id, started).await
}

fn complete(backup: BackupRecord, already_complete: bool, started: Instant) -> Progress {
    Progress::Complete {
        backup,
        already_complete,
        duration: started.elapsed(),
    }
}

/// Finalises the backup if every task is done and it is still open.
async fn finish_if_last(
    ctx: &BackupContext,
    backup_id: BackupId,
    started: Instant,
) -> Result<Progress, WorkerError> {
    if !ctx.catalog.task_counts(backup_id).await?.all_done() {
        return Ok(Progress::Continues { backup_id });
    }
    let backup = ctx
        .catalog
        .backup(backup_id)
        .await?
        .ok_or_else(|| WorkerError::InvalidJob(format!("backup {backup_id} vanished")))?;
    if backup.state == BackupState::Complete {
        return Ok(complete(backup, true, started));
    }
    let backup = finalize_backup(ctx, &backup).await?;
    Ok(complete(backup, false, started))
}

/// The task, once this delivery holds its lease; `None` when it is done or another live worker
/// holds it (this delivery is then a duplicate).
async fn take_lease(
    ctx: &BackupContext,
    backup_id: BackupId,
    task_no: u32,
    owner: &str,
) -> Result<Option<TaskRecord>, WorkerError> {
    let lease = ctx.settings.task_lease;
    let mut expiry_seen: Option<Instant> = None;
    loop {
        match ctx
            .catalog
            .acquire_task(backup_id, task_no, owner, lease)
            .await?
        {
            TaskLease::Acquired(task) => return Ok(Some(task)),
            TaskLease::Done => return Ok(None),
            TaskLease::Held {
                owner: holder,
                remaining,
            } => {
                let expiry = Instant::now() + remaining;
                if expiry_seen.is_some_and(|seen| expiry > seen + Duration::from_secs(1)) {
                    tracing::info!(%backup_id, task_no, %holder, "task held by a live worker; this delivery is a duplicate");
                    return Ok(None);
                }
                expiry_seen = Some(expiry);
                tokio::time::sleep(remaining.min(lease / 3) + Duration::from_millis(50)).await;
            }
        }
    }
}

/// Extracts the task's object while renewing the lease; `Ok(false)` if the lease was lost.
async fn extract_under_lease(
    ctx: &BackupContext,
    backup: &BackupRecord,
    task: &TaskRecord,
    owner: &str,
) -> Result<bool, WorkerError> {
    let work = Box::pin(extract_task(ctx, backup, task));
    let heartbeat = keep_lease(ctx, backup.backup_id, task.task_no, owner);
    let output = tokio::select! {
        done = work => match done {
            Ok(output) => output,
            Err(e) => {
                release_lease(ctx, backup.backup_id, task.task_no, owner).await;
                return Err(e);
            }
        },
        lost = heartbeat => return lost.map(|()| false),
    };
    let completed = ctx
        .catalog
        .complete_task(
            backup.backup_id,
            task.task_no,
            owner,
            (output.parts, output.records),
            output.cursor_json.as_deref(),
        )
        .await?;
    if completed {
        crate::metrics::records_backed_up(output.records);
        for (kind, size) in &output.objects {
            crate::metrics::object_stored(*kind, *size);
        }
    }
    Ok(completed)
}

/// Hands the lease of a failed task back, so its retry need not wait for it to run out. Best
/// effort: if the catalog cannot be reached, the lease simply expires.
async fn release_lease(ctx: &BackupContext, backup_id: BackupId, task_no: u32, owner: &str) {
    if let Err(e) = ctx
        .catalog
        .release_task_lease(backup_id, task_no, owner)
        .await
    {
        tracing::warn!(%backup_id, task_no, error = %e, "could not release the task lease; it will expire");
    }
}

/// Renews the lease every third of its length; returns when it is lost.
async fn keep_lease(
    ctx: &BackupContext,
    backup_id: BackupId,
    task_no: u32,
    owner: &str,
) -> Result<(), WorkerError> {
    let lease = ctx.settings.task_lease;
    loop {
        tokio::time::sleep(lease / 3).await;
        if !ctx
            .catalog
            .renew_task_lease(backup_id, task_no, owner, lease)
            .await?
        {
            return Ok(());
        }
    }
}

/// What a task achieved: parts and records written, and the cursor it reached (JSON).
struct TaskOutput {
    parts: u32,
    records: u64,
    /// Kind and size of each object recorded.
    objects: Vec<(coffer_catalog::ObjectKind, u64)>,
    cursor_json: Option<String>,
}

/// Clears what earlier attempts left of the object, extracts it (every record, or the changes
/// after the task's cursor) with its record index, and records its parts.
#[tracing::instrument(name = "extract", skip_all, fields(backup_id = %backup.backup_id, sobject = %task.sobject, slice = task.slice.no, task_no = task.task_no))]
async fn extract_task(
    ctx: &BackupContext,
    backup: &BackupRecord,
    task: &TaskRecord,
) -> Result<TaskOutput, WorkerError> {
    let describe: SObjectDescribe = serde_json::from_str(&task.describe_json)
        .map_err(|e| WorkerError::Task(format!("schema snapshot of task {}: {e}", task.task_no)))?;
    let since: Option<Cursor> = task
        .since_json
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| WorkerError::Task(format!("cursor of task {}: {e}", task.task_no)))?;
    let sobject = SObjectName::new(task.sobject.clone()).map_err(super::invalid)?;
    let place = BackupPlace::of(ctx, backup).await?;
    clear_earlier_attempt(&ctx.catalog, &place, backup, &sobject, &task.slice).await?;
    let org = org_of(&ctx.catalog, backup).await?;
    let sf = connect(&org, &ctx.settings).await?;
    let output: Result<TaskOutput, WorkerError> = async {
        let plan = part_plan(ctx, &place, backup, &describe, &task.slice)?;
        let written = read_records(ctx, backup, &sf, &describe, plan, since, &task.slice).await?;
        let mut records = 0;
        for part in &written.parts {
            ctx.catalog.record_object(backup.backup_id, part).await?;
            records += part.rows;
        }
        // File bodies are read once per object, by its first slice.
        if let Some(source) = FileSource::of(sobject.as_str())
            && task.slice.no == 0
        {
            back_up_bodies(ctx, backup, &sf, &place, source).await?;
        }
        let cursor_json = written
            .cursor
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| WorkerError::Task(format!("cursor encoding: {e}")))?;
        tracing::info!(backup_id = %backup.backup_id, %sobject, slice = task.slice.no, parts = written.parts.len(), records, incremental = task.since_json.is_some(), "task extracted");
        Ok(TaskOutput {
            parts: written.parts.len() as u32,
            records,
            objects: written.parts.iter().map(|p| (p.kind, p.size)).collect(),
            cursor_json,
        })
    }
    .await;
    note_api_usage(&ctx.catalog, &org, &sf).await;
    output
}

/// Reads the object into indexed parts: every record (of the task's slice), or the changes
/// after `since`.
async fn read_records(
    ctx: &BackupContext,
    backup: &BackupRecord,
    sf: &coffer_salesforce::SalesforceClient,
    describe: &SObjectDescribe,
    plan: PartPlan,
    since: Option<Cursor>,
    slice: &TaskSlice,
) -> Result<Written, WorkerError> {
    if let Some(since) = since {
        let (header, _) = extract::changes_query(describe)?;
        let sink = indexed_sink(ctx, backup, describe, plan, header);
        let stored = StoredVersions {
            catalog: &ctx.catalog,
            tenant_id: &backup.tenant_id,
            org_id: &backup.org_id,
        };
        let options = &ctx.settings.incremental;
        return extract::extract_changes(sf, describe, since, options, stored, sink).await;
    }
    let Some((header, soql)) = extract::full_query(describe) else {
        return Ok(Written {
            parts: Vec::new(),
            cursor: None,
        });
    };
    let range = IdRange {
        from: slice.id_from.clone(),
        to: slice.id_to.clone(),
    };
    let sink = indexed_sink(ctx, backup, describe, plan, header.clone());
    if slice.is_whole() {
        return extract::extract_sobject(sf, describe, &header, &soql, range, sink).await;
    }
    // A slice's cursor is when its read began: a change it missed happened after its query
    // job took its snapshot, so it is stamped later, whichever slice the record is in.
    let began = sf.server_time().await?;
    let written = extract::extract_sobject(sf, describe, &header, &soql, range, sink).await?;
    Ok(Written {
        cursor: Some(Cursor {
            system_modstamp: began,
            id: String::new(),
        }),
        ..written
    })
}

/// Backs up the file bodies the object's records carry (ContentVersion, Attachment, Document).
async fn back_up_bodies(
    ctx: &BackupContext,
    backup: &BackupRecord,
    sf: &coffer_salesforce::SalesforceClient,
    place: &BackupPlace,
    source: FileSource,
) -> Result<(), WorkerError> {
    let files = FilesContext {
        catalog: &ctx.catalog,
        sf,
        client: &place.client,
        target: &place.target,
        prefix: &place.prefix,
        backup,
        settings: &ctx.settings.files,
    };
    let summary = backup_files(&files, source, ctx.settings.file_policy).await?;
    tracing::info!(backup_id = %backup.backup_id, sobject = source.as_str(), files = summary.files, downloaded = summary.downloaded, stored = summary.stored, unchanged = summary.unchanged, "file bodies backed up");
    Ok(())
}

/// A part sink with header `header` that indexes every row it writes.
fn indexed_sink(
    ctx: &BackupContext,
    backup: &BackupRecord,
    describe: &SObjectDescribe,
    plan: PartPlan,
    header: StringRecord,
) -> PartSink {
    let index = RowIndex::new(describe, &header);
    let sink = PartSink::new(plan, header);
    match index {
        Some(index) => {
            let writer =
                IndexWriter::spawn(ctx.catalog.clone(), backup.backup_id, describe.name.clone());
            sink.with_index(index, writer)
        }
        None => sink,
    }
}
