//! What is running now, across every tenant, for `coffer status`: backups with their task
//! progress, restores with their record counts, the workers holding task leases, and erasures
//! not yet carried through every kept backup.
//!
//! Each answer is one aggregate query over indexed columns, cheap enough to run on every
//! status call.

use coffer_core::{BackupId, JobId, OrgId, TenantId};
use sqlx::Row;
use sqlx::mysql::MySqlRow;
use time::OffsetDateTime;

use crate::{Catalog, CatalogError};

/// A backup in state `running`, with its plan's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningBackup {
    /// The backup.
    pub backup_id: BackupId,
    /// The job that started it.
    pub job_id: JobId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its org.
    pub org_id: OrgId,
    /// `full` or `incremental`.
    pub kind: String,
    /// When its first attempt started.
    pub started_at: OffsetDateTime,
    /// Tasks in its plan (0 while it is being planned).
    pub tasks_total: u32,
    /// Tasks done.
    pub tasks_done: u32,
    /// Tasks a worker is running now.
    pub tasks_running: u32,
    /// Records written by the tasks done.
    pub records: u64,
}

/// A restore being planned or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningRestore {
    /// The restore (a UUID).
    pub restore_id: String,
    /// The job that started it.
    pub job_id: JobId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The org the backup was taken from.
    pub org_id: OrgId,
    /// The org written to.
    pub target_org_id: OrgId,
    /// `planning` or `running`.
    pub state: String,
    /// When it was requested.
    pub created_at: OffsetDateTime,
    /// Records in its plan.
    pub records_total: u64,
    /// Records written (or linked) so far.
    pub records_written: u64,
    /// Records that failed.
    pub records_failed: u64,
}

/// A worker process holding live task leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The worker's name (`host:pid`).
    pub worker: String,
    /// Tasks it holds.
    pub tasks: u32,
    /// When the last of its leases ends unless renewed.
    pub lease_until: OffsetDateTime,
}

impl Catalog {
    /// Running backups, oldest first, at most `limit`.
    pub async fn running_backups(&self, limit: u32) -> Result<Vec<RunningBackup>, CatalogError> {
        let rows = sqlx::query(
            "SELECT b.backup_id, b.job_id, b.tenant_id, b.org_id, b.kind, b.started_at, \
             COUNT(t.task_no) AS total, \
             CAST(COALESCE(SUM(t.state = 'done'), 0) AS SIGNED) AS done, \
             CAST(COALESCE(SUM(t.state = 'running'), 0) AS SIGNED) AS running, \
             CAST(COALESCE(SUM(CASE WHEN t.state = 'done' THEN t.records END), 0) AS SIGNED) AS records \
             FROM backups b LEFT JOIN backup_tasks t ON t.backup_id = b.backup_id \
             WHERE b.state = 'running' \
             GROUP BY b.backup_id, b.job_id, b.tenant_id, b.org_id, b.kind, b.started_at \
             ORDER BY b.started_at, b.backup_id LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(running_backup).collect()
    }

    /// Restores being planned or written, oldest first, at most `limit`.
    pub async fn running_restores(&self, limit: u32) -> Result<Vec<RunningRestore>, CatalogError> {
        let rows = sqlx::query(
            "SELECT r.restore_id, r.job_id, r.tenant_id, r.org_id, r.target_org_id, r.state, r.created_at, \
             COUNT(rr.source_id) AS total, \
             CAST(COALESCE(SUM(rr.state IN ('written', 'linked')), 0) AS SIGNED) AS written, \
             CAST(COALESCE(SUM(rr.state = 'failed'), 0) AS SIGNED) AS failed \
             FROM restores r LEFT JOIN restore_records rr ON rr.restore_id = r.restore_id \
             WHERE r.state IN ('planning', 'running') \
             GROUP BY r.restore_id, r.job_id, r.tenant_id, r.org_id, r.target_org_id, r.state, r.created_at \
             ORDER BY r.created_at, r.restore_id LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(running_restore).collect()
    }

    /// Workers holding task leases that have not expired (by the database clock), by name.
    pub async fn lease_holders(&self) -> Result<Vec<LeaseHolder>, CatalogError> {
        let rows = sqlx::query(
            "SELECT SUBSTRING_INDEX(lease_owner, '/', 1) AS worker, COUNT(*) AS tasks, \
             MAX(lease_until) AS lease_until FROM backup_tasks \
             WHERE state = 'running' AND lease_until > CURRENT_TIMESTAMP(6) \
             GROUP BY SUBSTRING_INDEX(lease_owner, '/', 1) ORDER BY worker",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LeaseHolder {
                    worker: row.try_get("worker")?,
                    tasks: count32(row, "tasks")?,
                    lease_until: row.try_get("lease_until")?,
                })
            })
            .collect()
    }

    /// Erased records whose erasure has not yet been carried through every kept backup
    /// (`coffer erase --resume` finishes them).
    pub async fn erasures_pending(&self) -> Result<u64, CatalogError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM erased_records WHERE done_at IS NULL")
            .fetch_one(&self.pool)
            .await?;
        count(&row, "n")
    }
}

fn count(row: &MySqlRow, col: &str) -> Result<u64, CatalogError> {
    Ok(u64::try_from(row.try_get::<i64, _>(col)?).unwrap_or(0))
}

fn count32(row: &MySqlRow, col: &str) -> Result<u32, CatalogError> {
    Ok(u32::try_from(count(row, col)?).unwrap_or(u32::MAX))
}

fn running_backup(row: &MySqlRow) -> Result<RunningBackup, CatalogError> {
    Ok(RunningBackup {
        backup_id: row.try_get::<String, _>("backup_id")?.parse()?,
        job_id: row.try_get::<String, _>("job_id")?.parse()?,
        tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id")?)?,
        org_id: OrgId::new(row.try_get::<String, _>("org_id")?)?,
        kind: row.try_get("kind")?,
        started_at: row.try_get("started_at")?,
        tasks_total: count32(row, "total")?,
        tasks_done: count32(row, "done")?,
        tasks_running: count32(row, "running")?,
        records: count(row, "records")?,
    })
}

fn running_restore(row: &MySqlRow) -> Result<RunningRestore, CatalogError> {
    Ok(RunningRestore {
        restore_id: row.try_get("restore_id")?,
        job_id: row.try_get::<String, _>("job_id")?.parse()?,
        tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id")?)?,
        org_id: OrgId::new(row.try_get::<String, _>("org_id")?)?,
        target_org_id: OrgId::new(row.try_get::<String, _>("target_org_id")?)?,
        state: row.try_get("state")?,
        created_at: row.try_get("created_at")?,
        records_total: count(row, "total")?,
        records_written: count(row, "written")?,
        records_failed: count(row, "failed")?,
    })
}
