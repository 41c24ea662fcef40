//! Retention sweeps: stored plans, marks, the locked re-check before a backup is deleted, the
//! batched removal of its rows, and the fence around deleting unreferenced file bodies.
//!
//! The janitor (`coffer-worker::janitor`) drives these in the order of the design's flow. Each
//! write is idempotent, so a sweep killed at any point is finished by the next one:
//!
//! 1. [`Catalog::record_sweep`] stores the plan, every decision with its reason;
//! 2. [`Catalog::mark_backup`] marks what the plan deletes, due after the grace period;
//!    [`Catalog::unmark_backup`] lifts a mark the plan no longer agrees with;
//! 3. [`Catalog::begin_expiry`] re-checks a due backup under its row lock (still complete or
//!    failed, no hold, no incremental or restore depending on it, not the newest) and turns it
//!    `expiring`: from then on no job revives it and no restore reads it;
//! 4. the janitor deletes its objects, then [`Catalog::remove_backup_rows`] removes its rows in
//!    batches, the `backups` row last, and leaves the mark `deleted` as the record;
//! 5. [`Catalog::begin_files_sweep`] fences the org (no backup starts, none runs) while the
//!    janitor deletes [`Catalog::unreferenced_files`].

use coffer_core::retention::DeleteReason;
use coffer_core::sweep::{Mark, MarkStage};
use coffer_core::{BackupId, OrgId, TenantId};
use sqlx::mysql::MySqlRow;
use sqlx::{MySql, Row, Transaction};
use time::OffsetDateTime;

use crate::files::file_object_from_row;
use crate::{Catalog, CatalogError, FileObject};

/// Rows removed per `DELETE ... LIMIT`: small enough that each statement holds its locks
/// briefly, large enough that a million index rows take 200 statements.
pub const ROW_BATCH: u64 = 5000;

/// A backup's retention mark, as reported (`coffer janitor marks`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RetentionMark {
    /// The backup.
    pub backup_id: BackupId,
    /// Its org.
    pub org_id: OrgId,
    /// The storage its objects are in.
    pub storage_id: u64,
    /// The sweep that marked it.
    pub sweep_id: u64,
    /// Why it goes.
    pub reason: DeleteReason,
    /// Marked, deleting or deleted.
    pub stage: MarkStage,
    /// When it was marked.
    #[serde(with = "time::serde::rfc3339")]
    pub marked_at: OffsetDateTime,
    /// When it was due by the grace period in force when it was marked (a sweep uses the
    /// grace period configured then: due once that long has passed since `marked_at`).
    #[serde(with = "time::serde::rfc3339")]
    pub delete_after: OffsetDateTime,
    /// Objects deleted so far.
    pub objects_deleted: u64,
    /// Why the last attempt stopped, if it did.
    pub last_error: Option<String>,
    /// When it was gone.
    #[serde(with = "time::serde::rfc3339::option")]
    pub deleted_at: Option<OffsetDateTime>,
}

/// What [`Catalog::begin_expiry`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiry {
    /// The backup is now `expiring`: delete it.
    Started,
    /// Not deleted, and why (its mark should be lifted).
    Refused(String),
}

/// What [`Catalog::begin_files_sweep`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilesFence {
    /// The org is fenced: no backup starts until [`Catalog::end_files_sweep`] or the lease ends.
    Held,
    /// A backup of the org is running: its references are not all written yet. Try next sweep.
    BackupRunning(BackupId),
}

impl Catalog {
    /// Stores the plan of one org's sweep; returns the sweep's id.
    pub async fn record_sweep(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        dry_run: bool,
        plan_json: &str,
    ) -> Result<u64, CatalogError> {
        let done = sqlx::query(
            "INSERT INTO retention_sweeps (tenant_id, org_id, dry_run, plan_json) VALUES (?, ?, ?, ?)",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .bind(dry_run)
        .bind(plan_json)
        .execute(&self.pool)
        .await?;
        Ok(done.last_insert_id())
    }

    /// The plan a sweep stored, as JSON.
    pub async fn sweep_plan(&self, sweep_id: u64) -> Result<Option<String>, CatalogError> {
        let row = sqlx::query("SELECT plan_json FROM retention_sweeps WHERE sweep_id = ?")
            .bind(sweep_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get("plan_json").map_err(CatalogError::from))
            .transpose()
    }

    /// The org's marks not yet deleted.
    pub async fn open_marks(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
    ) -> Result<Vec<Mark>, CatalogError> {
        let rows = sqlx::query(
            "SELECT backup_id, stage, marked_at FROM retention_marks \
             WHERE tenant_id = ? AND org_id = ? AND stage IN ('marked', 'deleting') ORDER BY marked_at",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Mark {
                    backup_id: row.try_get::<String, _>("backup_id")?.parse()?,
                    stage: stage_of(row)?,
                    marked_at: row.try_get("marked_at")?,
                })
            })
            .collect()
    }

    /// Every mark of the tenant, deleted ones included (the record of what retention removed),
    /// newest first.
    pub async fn retention_marks(
        &self,
        tenant_id: &TenantId,
    ) -> Result<Vec<RetentionMark>, CatalogError> {
        let rows = sqlx::query(
            "SELECT backup_id, org_id, storage_id, sweep_id, reason_json, stage, marked_at, \
             delete_after, objects_deleted, last_error, deleted_at FROM retention_marks \
             WHERE tenant_id = ? ORDER BY marked_at DESC, backup_id",
        )
        .bind(tenant_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(mark_from_row).collect()
    }

    /// Marks a backup for deletion in `grace_seconds` (a backup already marked keeps its mark).
    pub async fn mark_backup(
        &self,
        backup_id: BackupId,
        sweep_id: u64,
        reason: &DeleteReason,
        grace_seconds: i64,
    ) -> Result<(), CatalogError> {
        let reason = serde_json::to_string(reason)
            .map_err(|e| CatalogError::Corrupt(format!("delete reason: {e}")))?;
        sqlx::query(
            "INSERT IGNORE INTO retention_marks \
             (backup_id, tenant_id, org_id, storage_id, sweep_id, reason_json, delete_after) \
             SELECT backup_id, tenant_id, org_id, storage_id, ?, ?, \
               CURRENT_TIMESTAMP(6) + INTERVAL ? SECOND FROM backups WHERE backup_id = ?",
        )
        .bind(sweep_id)
        .bind(reason)
        .bind(grace_seconds.max(0))
        .bind(backup_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Lifts a mark not yet acted on; says whether there was one.
    pub async fn unmark_backup(&self, backup_id: BackupId) -> Result<bool, CatalogError> {
        let done =
            sqlx::query("DELETE FROM retention_marks WHERE backup_id = ? AND stage = 'marked'")
                .bind(backup_id.to_string())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Re-checks a marked backup under its row lock and, if nothing keeps it any more, makes
    /// it `expiring` and its mark `deleting`. This is the point of no return. A replayed job
    /// racing it either revived the failed backup first (refused here) or finds it expiring.
    pub async fn begin_expiry(&self, backup_id: BackupId) -> Result<Expiry, CatalogError> {
        let mut tx = self.pool.begin().await?;
        if let Some(why) = still_needed(&mut tx, backup_id).await? {
            tx.rollback().await?;
            return Ok(Expiry::Refused(why));
        }
        sqlx::query("UPDATE backups SET state = 'expiring' WHERE backup_id = ?")
            .bind(backup_id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE retention_marks SET stage = 'deleting', last_error = NULL WHERE backup_id = ?",
        )
        .bind(backup_id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Expiry::Started)
    }

    /// Records progress of a deletion: objects deleted so far, and why it stopped (if it did).
    pub async fn note_deletion(
        &self,
        backup_id: BackupId,
        objects_deleted: u64,
        last_error: Option<&str>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE retention_marks SET objects_deleted = GREATEST(objects_deleted, ?), last_error = ? \
             WHERE backup_id = ?",
        )
        .bind(objects_deleted)
        .bind(last_error)
        .bind(backup_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes every row of an `expiring` backup, in batches, the `backups` row last, and
    /// records the mark `deleted`. Call only once its objects are gone. Returns the rows
    /// removed.
    pub async fn remove_backup_rows(&self, backup_id: BackupId) -> Result<u64, CatalogError> {
        let id = backup_id.to_string();
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM backups WHERE backup_id = ?")
                .bind(&id)
                .fetch_optional(&self.pool)
                .await?;
        if let Some(state) = state.filter(|s| s != "expiring") {
            return Err(CatalogError::Refused(format!(
                "backup {backup_id} is {state}, not expiring: its rows stay"
            )));
        }
        let mut removed = 0;
        for table in [
            "backup_records",
            "backup_links",
            "backup_files",
            "backup_objects",
            "backup_tasks",
        ] {
            removed += self.delete_in_batches(table, &id).await?;
        }
        let mut tx = self.pool.begin().await?;
        removed += sqlx::query("DELETE FROM backups WHERE backup_id = ? AND state = 'expiring'")
            .bind(&id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "UPDATE retention_marks SET stage = 'deleted', deleted_at = CURRENT_TIMESTAMP(6), \
             last_error = NULL WHERE backup_id = ?",
        )
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// `table` is one of the fixed names above, never input.
    async fn delete_in_batches(
        &self,
        table: &'static str,
        backup_id: &str,
    ) -> Result<u64, CatalogError> {
        let mut removed = 0;
        loop {
            let sql = format!("DELETE FROM {table} WHERE backup_id = ? LIMIT {ROW_BATCH}");
            let n = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(backup_id)
                .execute(&self.pool)
                .await?
                .rows_affected();
            removed += n;
            if n < ROW_BATCH {
                return Ok(removed);
            }
        }
    }

    /// Fences the org for deleting unreferenced file bodies, for `lease_seconds`, unless one of
    /// its backups runs. While fenced, no backup of the org starts or is revived (they retry).
    pub async fn begin_files_sweep(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        owner: &str,
        lease_seconds: i64,
    ) -> Result<FilesFence, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let org =
            sqlx::query("SELECT org_id FROM orgs WHERE tenant_id = ? AND org_id = ? FOR UPDATE")
                .bind(tenant_id.as_str())
                .bind(org_id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if org.is_none() {
            return Err(CatalogError::NotFound(format!(
                "org {org_id} of tenant {tenant_id} does not exist"
            )));
        }
        let running: Option<String> = sqlx::query_scalar(
            "SELECT backup_id FROM backups WHERE tenant_id = ? AND org_id = ? AND state = 'running' \
             LIMIT 1 LOCK IN SHARE MODE",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(running) = running {
            tx.rollback().await?;
            return Ok(FilesFence::BackupRunning(running.parse()?));
        }
        set_fence(&mut tx, tenant_id, org_id, owner, lease_seconds).await?;
        tx.commit().await?;
        Ok(FilesFence::Held)
    }

    /// Extends the fence `owner` holds; false when it is no longer held (the lease ran out and
    /// a backup may have started): the caller must stop deleting.
    pub async fn renew_files_sweep(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        owner: &str,
        lease_seconds: i64,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "UPDATE orgs SET files_sweep_until = CURRENT_TIMESTAMP(6) + INTERVAL ? SECOND \
             WHERE tenant_id = ? AND org_id = ? AND files_swept_by = ? \
             AND files_sweep_until > CURRENT_TIMESTAMP(6)",
        )
        .bind(lease_seconds)
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Lifts the fence `owner` holds.
    pub async fn end_files_sweep(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        owner: &str,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE orgs SET files_sweep_until = NULL, files_swept_by = NULL \
             WHERE tenant_id = ? AND org_id = ? AND files_swept_by = ?",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Up to `limit` file bodies of the org that no backup of the org in the same storage
    /// references any more.
    pub async fn unreferenced_files(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        limit: u32,
    ) -> Result<Vec<FileObject>, CatalogError> {
        let rows = sqlx::query(
            "SELECT f.tenant_id, f.org_id, f.storage_id, f.sha256, f.object_key, f.size_bytes, f.md5, \
             f.created_at FROM file_objects f WHERE f.tenant_id = ? AND f.org_id = ? AND NOT EXISTS \
             (SELECT 1 FROM backup_files r JOIN backups b ON b.backup_id = r.backup_id \
              WHERE r.sha256 = f.sha256 AND b.tenant_id = f.tenant_id AND b.org_id = f.org_id \
              AND b.storage_id = f.storage_id) ORDER BY f.storage_id, f.sha256 LIMIT ?",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(file_object_from_row).collect()
    }

    /// Removes file body rows (after their objects were deleted).
    pub async fn forget_file_objects(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        storage_id: u64,
        sha256s: &[String],
    ) -> Result<(), CatalogError> {
        for chunk in sha256s.chunks(crate::files::FILE_BATCH_ROWS) {
            let mut q =
                sqlx::QueryBuilder::<MySql>::new("DELETE FROM file_objects WHERE tenant_id = ");
            q.push_bind(tenant_id.as_str())
                .push(" AND org_id = ")
                .push_bind(org_id.as_str())
                .push(" AND storage_id = ")
                .push_bind(storage_id)
                .push(" AND sha256 IN (");
            let mut list = q.separated(", ");
            for sha in chunk {
                list.push_bind(sha);
            }
            list.push_unseparated(")");
            q.build().execute(&self.pool).await?;
        }
        Ok(())
    }

    /// The SHA-256 of every body the catalog knows for the org in `storage_id`.
    pub async fn file_shas(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        storage_id: u64,
    ) -> Result<Vec<String>, CatalogError> {
        Ok(sqlx::query_scalar(
            "SELECT sha256 FROM file_objects WHERE tenant_id = ? AND org_id = ? AND storage_id = ?",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .bind(storage_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every storage the tenant's backups and file bodies are in, and the one it writes to now.
    pub async fn storages_in_use(&self, tenant_id: &TenantId) -> Result<Vec<u64>, CatalogError> {
        Ok(sqlx::query_scalar(
            "SELECT storage_id FROM backups WHERE tenant_id = ? \
             UNION SELECT storage_id FROM file_objects WHERE tenant_id = ? \
             UNION SELECT storage_id FROM tenants WHERE tenant_id = ? \
             UNION SELECT own_storage_id FROM tenants WHERE tenant_id = ? AND own_storage_id IS NOT NULL \
             ORDER BY 1",
        )
        .bind(tenant_id.as_str())
        .bind(tenant_id.as_str())
        .bind(tenant_id.as_str())
        .bind(tenant_id.as_str())
        .fetch_all(&self.pool)
        .await?)
    }

    /// The ids of every tenant.
    pub async fn tenant_ids(&self) -> Result<Vec<TenantId>, CatalogError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT tenant_id FROM tenants ORDER BY tenant_id")
                .fetch_all(&self.pool)
                .await?;
        ids.into_iter()
            .map(|id| TenantId::new(id).map_err(CatalogError::from))
            .collect()
    }
}

async fn set_fence(
    tx: &mut Transaction<'_, MySql>,
    tenant_id: &TenantId,
    org_id: &OrgId,
    owner: &str,
    lease_seconds: i64,
) -> Result<(), CatalogError> {
    sqlx::query(
        "UPDATE orgs SET files_sweep_until = CURRENT_TIMESTAMP(6) + INTERVAL ? SECOND, \
         files_swept_by = ? WHERE tenant_id = ? AND org_id = ?",
    )
    .bind(lease_seconds)
    .bind(owner)
    .bind(tenant_id.as_str())
    .bind(org_id.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Why the backup must stay after all, read under its row lock; `None` when nothing keeps it.
async fn still_needed(
    tx: &mut Transaction<'_, MySql>,
    backup_id: BackupId,
) -> Result<Option<String>, CatalogError> {
    let id = backup_id.to_string();
    let row = sqlx::query(
        "SELECT tenant_id, org_id, state, completed_at FROM backups WHERE backup_id = ? FOR UPDATE",
    )
    .bind(&id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(Some("it no longer exists".to_owned()));
    };
    let state: String = row.try_get("state")?;
    if state != "complete" && state != "failed" {
        return Ok(Some(format!("it is {state}")));
    }
    let (tenant, org): (String, String) = (row.try_get("tenant_id")?, row.try_get("org_id")?);
    let completed_at: Option<OffsetDateTime> = row.try_get("completed_at")?;
    let checks: [(&str, &str); 4] = [
        (
            "a legal hold covers it",
            "SELECT COUNT(*) FROM legal_holds WHERE tenant_id = ? AND released_at IS NULL \
             AND (org_id = '' OR org_id = ?) AND (backup_id = '' OR backup_id = ?) LOCK IN SHARE MODE",
        ),
        (
            "an incremental continues from it",
            "SELECT COUNT(*) FROM backups WHERE tenant_id = ? AND org_id = ? AND base_backup_id = ? \
             AND state IN ('running', 'complete') LOCK IN SHARE MODE",
        ),
        (
            "a restore in progress reads it",
            "SELECT COUNT(*) FROM restores WHERE tenant_id = ? AND org_id = ? AND backup_id = ? \
             AND (state IN ('planning', 'running') OR (state = 'planned' AND mode = 'execute')) \
             LOCK IN SHARE MODE",
        ),
        (
            "it is the newest complete backup of its org",
            "SELECT CAST((? IS NOT NULL) AND NOT EXISTS (SELECT 1 FROM backups n \
             WHERE n.tenant_id = ? AND n.org_id = ? AND n.state = 'complete' AND n.completed_at > ?) \
             AS SIGNED)",
        ),
    ];
    for (why, sql) in checks {
        let q = sqlx::query_scalar::<_, i64>(sql);
        let q = match why.starts_with("it is the newest") {
            true => q
                .bind(completed_at)
                .bind(&tenant)
                .bind(&org)
                .bind(completed_at),
            false => q.bind(&tenant).bind(&org).bind(&id),
        };
        if q.fetch_one(&mut **tx).await? > 0 {
            return Ok(Some(why.to_owned()));
        }
    }
    Ok(None)
}

fn stage_of(row: &MySqlRow) -> Result<MarkStage, CatalogError> {
    match row.try_get::<String, _>("stage")?.as_str() {
        "marked" => Ok(MarkStage::Marked),
        "deleting" => Ok(MarkStage::Deleting),
        "deleted" => Ok(MarkStage::Deleted),
        other => Err(CatalogError::Corrupt(format!(
            "unknown mark stage {other:?}"
        ))),
    }
}

fn mark_from_row(row: &MySqlRow) -> Result<RetentionMark, CatalogError> {
    let reason: String = row.try_get("reason_json")?;
    Ok(RetentionMark {
        backup_id: row.try_get::<String, _>("backup_id")?.parse()?,
        org_id: OrgId::new(row.try_get::<String, _>("org_id")?)?,
        storage_id: row.try_get("storage_id")?,
        sweep_id: row.try_get("sweep_id")?,
        reason: serde_json::from_str(&reason)
            .map_err(|e| CatalogError::Corrupt(format!("delete reason: {e}")))?,
        stage: stage_of(row)?,
        marked_at: row.try_get("marked_at")?,
        delete_after: row.try_get("delete_after")?,
        objects_deleted: row.try_get("objects_deleted")?,
        last_error: row.try_get("last_error")?,
        deleted_at: row.try_get("deleted_at")?,
    })
}
