//! Backup tasks: the plan of a backup (one task per sObject) and the leases through which any
//! worker of the fleet runs any task exactly once at a time.
//!
//! - [`Catalog::plan_tasks`] records the plan; planning again (a redelivered job) keeps the
//!   first plan, so task numbers and their describes never change under a running backup.
//! - [`Catalog::acquire_task`] takes a task: a pending one, or one whose lease expired (its
//!   worker died). A task whose lease is live belongs to another worker; a done task is done.
//! - [`Catalog::renew_task_lease`] extends a held lease; `false` means it was lost (expired and
//!   taken over), and the holder must stop.
//! - [`Catalog::complete_task`] marks the task done, only for its lease holder.
//!
//! - [`Catalog::stranded_tasks`] finds open tasks nobody holds or touched for a while, for the
//!   worker's reaper to publish again.
//!
//! Lease times come from the database clock, so workers' clocks never matter.

use std::time::Duration;

use coffer_core::BackupId;
use sqlx::Row;
use sqlx::mysql::MySqlRow;

use crate::{Catalog, CatalogError};

/// One planned task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// The backup.
    pub backup_id: BackupId,
    /// Number within the backup, from 1.
    pub task_no: u32,
    /// The sObject it extracts.
    pub sobject: String,
    /// Which slice of the object's records (0 when the object is read by one task).
    pub slice: TaskSlice,
    /// The describe it extracts with (JSON).
    pub describe_json: String,
    /// Whether it is done.
    pub done: bool,
    /// How many times a worker took it.
    pub attempts: u32,
    /// Incremental: read the changes after this cursor (JSON); `None` reads every record.
    pub since_json: Option<String>,
    /// The cursor the task reached (JSON), once done.
    pub cursor_json: Option<String>,
}

/// The part of an object's records a task reads: slice `no` over ids `[id_from, id_to)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSlice {
    /// 0 for an object read by one task; 0, 1, ... for the slices of a very large one.
    pub no: u32,
    /// First record id (15 characters); `None`: from the lowest.
    pub id_from: Option<String>,
    /// First record id after the slice (15 characters); `None`: to the highest.
    pub id_to: Option<String>,
}

impl TaskSlice {
    /// Parts a slice may number (its parts are `no * PARTS + 1 ..= no * PARTS + PARTS - 1`).
    pub const PARTS: u32 = 10_000;

    /// The part numbers this slice writes.
    pub fn parts(&self) -> std::ops::RangeInclusive<u32> {
        let base = self.no.saturating_mul(Self::PARTS);
        base + 1..=base + Self::PARTS - 1
    }

    /// Whether the task reads every record of its object.
    pub fn is_whole(&self) -> bool {
        self.id_from.is_none() && self.id_to.is_none()
    }
}

/// A task of a plan, before it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTask {
    /// The sObject it extracts.
    pub sobject: String,
    /// The slice of its records (the default: all of them, one task).
    pub slice: TaskSlice,
    /// The describe it extracts with (JSON).
    pub describe_json: String,
    /// Incremental: the cursor to read changes after (JSON); `None` reads every record.
    pub since_json: Option<String>,
}

/// What [`Catalog::acquire_task`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskLease {
    /// The caller holds the task's lease now.
    Acquired(TaskRecord),
    /// Another worker holds a live lease.
    Held {
        /// The holder.
        owner: String,
        /// Time left on its lease.
        remaining: Duration,
    },
    /// The task is done.
    Done,
}

/// A task of a running backup that no worker holds and nobody touched for a while: its message
/// was lost, or its holder died after its delivery was acked as someone else's duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrandedTask {
    /// The backup.
    pub backup_id: BackupId,
    /// The task.
    pub task_no: u32,
    /// The backup's tenant.
    pub tenant_id: String,
    /// The backup's org.
    pub org_id: String,
    /// The backup's job.
    pub job_id: String,
}

/// Task states, as counted for a backup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// Tasks in the plan.
    pub total: u32,
    /// Tasks done.
    pub done: u32,
    /// Records written by the tasks done.
    pub records: u64,
}

impl TaskCounts {
    /// Whether the backup has a plan and every task of it is done.
    pub fn all_done(&self) -> bool {
        self.total > 0 && self.done == self.total
    }
}

impl Catalog {
    /// Records a plan of full reads: task `i + 1` extracts every record of `tasks[i]`
    /// (sObject, describe JSON). A plan already recorded is kept as it is.
    #[tracing::instrument(name = "catalog.plan_tasks", level = "info", skip_all)]
    pub async fn plan_tasks(
        &self,
        backup_id: BackupId,
        tasks: &[(String, String)],
    ) -> Result<Vec<TaskRecord>, CatalogError> {
        let planned: Vec<PlannedTask> = tasks
            .iter()
            .map(|(sobject, describe_json)| PlannedTask {
                sobject: sobject.clone(),
                slice: TaskSlice::default(),
                describe_json: describe_json.clone(),
                since_json: None,
            })
            .collect();
        self.record_plan(backup_id, &planned).await
    }

    /// Records the plan of `backup_id`: task `i + 1` is `tasks[i]`. A plan already recorded is
    /// kept as it is.
    #[tracing::instrument(name = "catalog.record_plan", level = "info", skip_all)]
    pub async fn record_plan(
        &self,
        backup_id: BackupId,
        tasks: &[PlannedTask],
    ) -> Result<Vec<TaskRecord>, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let existing: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM backup_tasks WHERE backup_id = ? FOR UPDATE")
                .bind(backup_id.to_string())
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        if existing == 0 {
            for (i, task) in tasks.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO backup_tasks (backup_id, task_no, sobject, slice_no, id_from, id_to, describe_json, since_json) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(backup_id.to_string())
                .bind(i as u32 + 1)
                .bind(&task.sobject)
                .bind(task.slice.no)
                .bind(task.slice.id_from.as_deref())
                .bind(task.slice.id_to.as_deref())
                .bind(&task.describe_json)
                .bind(task.since_json.as_deref())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        self.tasks(backup_id).await
    }

    /// The tasks of a backup, by number.
    pub async fn tasks(&self, backup_id: BackupId) -> Result<Vec<TaskRecord>, CatalogError> {
        let rows = sqlx::query(
            "SELECT backup_id, task_no, sobject, slice_no, id_from, id_to, describe_json, state, attempts, since_json, cursor_json FROM backup_tasks \
             WHERE backup_id = ? ORDER BY task_no",
        )
        .bind(backup_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// How many tasks the backup has, and how many are done.
    pub async fn task_counts(&self, backup_id: BackupId) -> Result<TaskCounts, CatalogError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS total, CAST(COALESCE(SUM(state = 'done'), 0) AS SIGNED) AS done, \
             CAST(COALESCE(SUM(CASE WHEN state = 'done' THEN records END), 0) AS SIGNED) AS records \
             FROM backup_tasks \
             WHERE backup_id = ?",
        )
        .bind(backup_id.to_string())
        .fetch_one(&self.pool)
        .await?;
        let total: i64 = row.try_get("total")?;
        let done: i64 = row.try_get("done")?;
        let records: i64 = row.try_get("records")?;
        Ok(TaskCounts {
            total: u32::try_from(total).unwrap_or(u32::MAX),
            done: u32::try_from(done).unwrap_or(u32::MAX),
            records: u64::try_from(records).unwrap_or(0),
        })
    }

    /// Takes task `task_no` of `backup_id` for `owner` for `lease`, if it is pending or its
    /// lease expired; otherwise says who holds it, or that it is done.
    #[tracing::instrument(name = "catalog.acquire_task", level = "info", skip_all)]
    pub async fn acquire_task(
        &self,
        backup_id: BackupId,
        task_no: u32,
        owner: &str,
        lease: Duration,
    ) -> Result<TaskLease, CatalogError> {
        let taken = sqlx::query(
            "UPDATE backup_tasks SET state = 'running', lease_owner = ?, attempts = attempts + 1, \
             lease_until = CURRENT_TIMESTAMP(6) + INTERVAL ? MICROSECOND \
             WHERE backup_id = ? AND task_no = ? AND (state = 'pending' OR \
             (state = 'running' AND (lease_until < CURRENT_TIMESTAMP(6) OR lease_owner = ?)))",
        )
        .bind(owner)
        .bind(micros(lease))
        .bind(backup_id.to_string())
        .bind(task_no)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(
            "SELECT backup_id, task_no, sobject, slice_no, id_from, id_to, describe_json, state, attempts, since_json, cursor_json, lease_owner, \
             GREATEST(TIMESTAMPDIFF(MICROSECOND, CURRENT_TIMESTAMP(6), lease_until), 0) AS remaining \
             FROM backup_tasks WHERE backup_id = ? AND task_no = ?",
        )
        .bind(backup_id.to_string())
        .bind(task_no)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            CatalogError::NotFound(format!("backup {backup_id} has no task {task_no}"))
        })?;
        let task = task_from_row(&row)?;
        if task.done {
            return Ok(TaskLease::Done);
        }
        if taken.rows_affected() == 1 {
            return Ok(TaskLease::Acquired(task));
        }
        let remaining: Option<i64> = row.try_get("remaining")?;
        Ok(TaskLease::Held {
            owner: row
                .try_get::<Option<String>, _>("lease_owner")?
                .unwrap_or_default(),
            remaining: Duration::from_micros(remaining.unwrap_or(0).max(0) as u64),
        })
    }

    /// Extends `owner`'s lease on the task by `lease` from now; `false` if `owner` no longer
    /// holds it.
    pub async fn renew_task_lease(
        &self,
        backup_id: BackupId,
        task_no: u32,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, CatalogError> {
        let renewed = sqlx::query(
            "UPDATE backup_tasks SET lease_until = CURRENT_TIMESTAMP(6) + INTERVAL ? MICROSECOND \
             WHERE backup_id = ? AND task_no = ? AND state = 'running' AND lease_owner = ?",
        )
        .bind(micros(lease))
        .bind(backup_id.to_string())
        .bind(task_no)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Gives up `owner`'s lease on a task it could not finish (it failed, or its org was
    /// paused), so the next delivery takes the task at once instead of waiting for the lease to
    /// run out; `false` if `owner` no longer held it.
    pub async fn release_task_lease(
        &self,
        backup_id: BackupId,
        task_no: u32,
        owner: &str,
    ) -> Result<bool, CatalogError> {
        let released = sqlx::query(
            "UPDATE backup_tasks SET state = 'pending', lease_owner = NULL, lease_until = NULL \
             WHERE backup_id = ? AND task_no = ? AND state = 'running' AND lease_owner = ?",
        )
        .bind(backup_id.to_string())
        .bind(task_no)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(released.rows_affected() == 1)
    }

    /// Marks the task done with its totals and the cursor it reached (JSON), if `owner` still
    /// holds it; `false` otherwise (the lease was lost and another worker redoes the task).
    #[tracing::instrument(name = "catalog.complete_task", level = "info", skip_all)]
    pub async fn complete_task(
        &self,
        backup_id: BackupId,
        task_no: u32,
        owner: &str,
        (objects, records): (u32, u64),
        cursor_json: Option<&str>,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "UPDATE backup_tasks SET state = 'done', lease_owner = NULL, lease_until = NULL, \
             objects = ?, records = ?, cursor_json = ? \
             WHERE backup_id = ? AND task_no = ? AND state = 'running' AND lease_owner = ?",
        )
        .bind(objects)
        .bind(records)
        .bind(cursor_json)
        .bind(backup_id.to_string())
        .bind(task_no)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl Catalog {
    /// Open tasks of running backups without a live lease and untouched for `idle`, at most
    /// `limit`; each is touched, so the next call within `idle` does not return it again. Tasks
    /// of a paused org are not stranded: their messages wait in the parked queue.
    pub async fn stranded_tasks(
        &self,
        idle: Duration,
        limit: u32,
    ) -> Result<Vec<StrandedTask>, CatalogError> {
        let rows = sqlx::query(
            "SELECT t.backup_id, t.task_no, b.tenant_id, b.org_id, b.job_id FROM backup_tasks t \
             JOIN backups b ON b.backup_id = t.backup_id \
             WHERE b.state = 'running' AND t.state <> 'done' \
             AND (t.lease_until IS NULL OR t.lease_until < CURRENT_TIMESTAMP(6)) \
             AND t.updated_at < CURRENT_TIMESTAMP(6) - INTERVAL ? MICROSECOND \
             AND NOT EXISTS (SELECT 1 FROM org_pauses p WHERE p.tenant_id = b.tenant_id \
               AND p.org_id = b.org_id AND p.paused_until > CURRENT_TIMESTAMP(6)) \
             ORDER BY t.updated_at LIMIT ?",
        )
        .bind(micros(idle))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut stranded = Vec::with_capacity(rows.len());
        for row in &rows {
            let backup_id: String = row.try_get("backup_id")?;
            let task_no: u32 = row.try_get("task_no")?;
            sqlx::query(
                "UPDATE backup_tasks SET updated_at = CURRENT_TIMESTAMP(6) WHERE backup_id = ? AND task_no = ?",
            )
            .bind(&backup_id)
            .bind(task_no)
            .execute(&self.pool)
            .await?;
            stranded.push(StrandedTask {
                backup_id: backup_id.parse()?,
                task_no,
                tenant_id: row.try_get("tenant_id")?,
                org_id: row.try_get("org_id")?,
                job_id: row.try_get("job_id")?,
            });
        }
        Ok(stranded)
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn task_from_row(row: &MySqlRow) -> Result<TaskRecord, CatalogError> {
    let backup_id: String = row.try_get("backup_id")?;
    let state: String = row.try_get("state")?;
    Ok(TaskRecord {
        backup_id: backup_id.parse()?,
        task_no: row.try_get("task_no")?,
        sobject: row.try_get("sobject")?,
        slice: TaskSlice {
            no: row.try_get("slice_no")?,
            id_from: row.try_get("id_from")?,
            id_to: row.try_get("id_to")?,
        },
        describe_json: row.try_get("describe_json")?,
        done: state == "done",
        attempts: row.try_get("attempts")?,
        since_json: row.try_get("since_json")?,
        cursor_json: row.try_get("cursor_json")?,
    })
}
