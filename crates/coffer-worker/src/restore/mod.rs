//! Restores: a `RestoreRequested` brings records of a backup back into an org, under new ids
//! where they are gone, with every link between them rebuilt.
//!
//! The flow, as [`run_restore`] runs it:
//!
//! 1. **Begin**: the restore row, keyed by the job id (a redelivery finds it), naming the backup
//!    (given, or the org's newest complete backup as of a time) and the target org; then hold
//!    it (a MySQL named lock), so two deliveries of one job never write at once.
//! 2. **Plan** ([`plan`]): scope, expansion through the stored relationships, a decision per
//!    record from the target org's state, and the write order; stored before anything is
//!    written. A plan-only restore ends here.
//! 3. **Write** ([`write`]): undelete, keep, insert and update parents first with lookups
//!    remapped through the id map, then the second pass of lookups.
//! 4. **Report and complete**: every record's outcome in the catalog (`coffer restore status`)
//!    and as `report.csv.gz` in the bucket ([`report`]).

pub mod bulk;
pub mod doubt;
pub mod files;
pub mod plan;
pub mod report;
pub mod source;
pub mod write;

use coffer_catalog::{
    BackupRecord, BackupState, NewRestore, RestoreMode, RestoreRecord, RestoreState,
};
use coffer_core::{BackupId, JobId, OrgId, RecordId, SObjectName, TenantId};
use coffer_proto::v1::{RestoreMode as WireMode, RestoreRequested};
use coffer_salesforce::SalesforceClient;
use time::OffsetDateTime;

use crate::backup::{BackupContext, connect, invalid, note_api_usage};
use crate::error::WorkerError;
use plan::{Scope, StoredPlan, plan_restore, snapshot};
use write::Writer;

/// A validated `RestoreRequested`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreJob {
    /// The job (idempotency key).
    pub job_id: JobId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The org the backup was taken of.
    pub org_id: OrgId,
    /// The backup, or `None` with `as_of`.
    pub backup_id: Option<BackupId>,
    /// "The state as of this time": the org's newest complete backup completed by then.
    pub as_of: Option<OffsetDateTime>,
    /// The org written to (the source org unless another is named, e.g. a sandbox).
    pub target_org_id: OrgId,
    /// What to restore.
    pub scope: Scope,
    /// Plan only, or plan and write.
    pub mode: RestoreMode,
}

impl RestoreJob {
    /// Validates the message's fields.
    pub fn from_message(job_id: JobId, msg: &RestoreRequested) -> Result<Self, WorkerError> {
        let org_id = OrgId::new(msg.org_id.clone()).map_err(invalid)?;
        let target_org_id = match msg.target_org_id.is_empty() {
            true => org_id.clone(),
            false => OrgId::new(msg.target_org_id.clone()).map_err(invalid)?,
        };
        let backup_id = match msg.backup_id.is_empty() {
            true => None,
            false => Some(msg.backup_id.parse().map_err(invalid)?),
        };
        let as_of = match msg.as_of_unix_ms {
            0 => None,
            ms => Some(
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                    .map_err(|e| WorkerError::InvalidJob(format!("as_of: {e}")))?,
            ),
        };
        if backup_id.is_none() && as_of.is_none() {
            return Err(WorkerError::InvalidJob(
                "a restore names a backup or a point in time (as_of)".into(),
            ));
        }
        let scope = msg.scope.clone().unwrap_or_default();
        for sobject in &scope.sobjects {
            SObjectName::new(sobject.clone()).map_err(invalid)?;
        }
        for id in &scope.record_ids {
            RecordId::new(id.clone()).map_err(invalid)?;
        }
        if scope.sobjects.is_empty() && scope.record_ids.is_empty() {
            return Err(WorkerError::InvalidJob(
                "a restore's scope names objects or record ids".into(),
            ));
        }
        let mode = match WireMode::try_from(msg.mode) {
            Ok(WireMode::Execute) => RestoreMode::Execute,
            _ => RestoreMode::Plan,
        };
        Ok(RestoreJob {
            job_id,
            tenant_id: TenantId::new(msg.tenant_id.clone()).map_err(invalid)?,
            org_id,
            backup_id,
            as_of,
            target_org_id,
            scope: Scope {
                sobjects: scope.sobjects,
                record_ids: scope.record_ids,
                child_depth: scope.child_depth,
                parent_depth: scope.parent_depth,
            },
            mode,
        })
    }
}

/// Plans (and, unless plan-only, executes) the restore of `job`; returns the restore as it
/// ended. Safe to run again for the same job: it continues where the last attempt stopped.
pub async fn run_restore(
    ctx: &BackupContext,
    job: &RestoreJob,
) -> Result<RestoreRecord, WorkerError> {
    let catalog = &ctx.catalog;
    let backup = source_backup(ctx, job).await?;
    let request_json = serde_json::to_string(&job.scope)
        .map_err(|e| WorkerError::Task(format!("restore request encoding: {e}")))?;
    let restore = catalog
        .begin_restore(&NewRestore {
            job_id: job.job_id,
            tenant_id: &job.tenant_id,
            org_id: &job.org_id,
            backup_id: backup.backup_id,
            target_org_id: &job.target_org_id,
            mode: job.mode,
            request_json: &request_json,
        })
        .await?;
    let Some(_hold) = catalog.hold_restore(&restore.restore_id).await? else {
        return Err(WorkerError::HeldElsewhere {
            what: format!("restore {}", restore.restore_id),
        });
    };
    let restore = reload(ctx, &restore).await?;
    if matches!(restore.state, RestoreState::Complete) {
        return Ok(restore);
    }
    let org = catalog
        .org(&job.tenant_id, &job.target_org_id)
        .await?
        .ok_or_else(|| WorkerError::UnknownOrg {
            tenant: job.tenant_id.to_string(),
            org: job.target_org_id.to_string(),
        })?;
    let sf = connect(&org, &ctx.settings).await?;
    let done = Box::pin(plan_and_write(ctx, job, &restore, &backup, &sf)).await;
    note_api_usage(&ctx.catalog, &org, &sf).await;
    done
}

/// Plans the restore (or reads the stored plan), and unless plan-only writes it and its report.
async fn plan_and_write(
    ctx: &BackupContext,
    job: &RestoreJob,
    restore: &RestoreRecord,
    backup: &BackupRecord,
    sf: &SalesforceClient,
) -> Result<RestoreRecord, WorkerError> {
    let catalog = &ctx.catalog;
    let plan = match &restore.plan_json {
        Some(json) => serde_json::from_str::<StoredPlan>(json)
            .map_err(|e| WorkerError::Task(format!("stored restore plan: {e}")))?,
        None => plan_restore(ctx, restore, &job.scope, sf).await?,
    };
    if restore.mode == RestoreMode::Plan {
        catalog
            .set_restore_state(&restore.restore_id, RestoreState::Planned, None)
            .await?;
        return reload(ctx, restore).await;
    }
    catalog
        .set_restore_state(&restore.restore_id, RestoreState::Running, None)
        .await?;
    let describes = snapshot(ctx, backup.backup_id).await?;
    let writer = Writer {
        ctx,
        restore,
        plan: &plan,
        sf,
        describes: &describes,
    };
    writer.run().await?;
    report::write_report(ctx, restore, backup).await?;
    catalog
        .set_restore_state(&restore.restore_id, RestoreState::Complete, None)
        .await?;
    let done = reload(ctx, restore).await?;
    tracing::info!(restore_id = %done.restore_id, backup_id = %backup.backup_id, "restore complete");
    Ok(done)
}

async fn reload(
    ctx: &BackupContext,
    restore: &RestoreRecord,
) -> Result<RestoreRecord, WorkerError> {
    ctx.catalog
        .restore(&restore.restore_id)
        .await?
        .ok_or_else(|| WorkerError::Task(format!("restore {} vanished", restore.restore_id)))
}

/// The backup to restore from: the one named (which must be complete and of the tenant's org),
/// or the org's newest complete backup completed by `as_of`.
async fn source_backup(ctx: &BackupContext, job: &RestoreJob) -> Result<BackupRecord, WorkerError> {
    let catalog = &ctx.catalog;
    let found = match job.backup_id {
        Some(id) => catalog.backup(id).await?,
        None => catalog
            .backups_of(&job.tenant_id, &job.org_id)
            .await?
            .into_iter()
            .filter(|b| b.state == BackupState::Complete)
            .filter(|b| {
                b.completed_at
                    .zip(job.as_of)
                    .is_some_and(|(done, at)| done <= at)
            })
            .max_by_key(|b| b.completed_at),
    };
    let backup = found.ok_or_else(|| {
        WorkerError::InvalidJob(match job.backup_id {
            Some(id) => format!("backup {id} does not exist"),
            None => format!("org {} has no complete backup by then", job.org_id),
        })
    })?;
    if backup.tenant_id != job.tenant_id || backup.org_id != job.org_id {
        return Err(WorkerError::InvalidJob(format!(
            "backup {} is not a backup of org {} of tenant {}",
            backup.backup_id, job.org_id, job.tenant_id
        )));
    }
    if backup.state != BackupState::Complete {
        return Err(WorkerError::InvalidJob(format!(
            "backup {} is not complete; restore from a complete backup",
            backup.backup_id
        )));
    }
    Ok(backup)
}
