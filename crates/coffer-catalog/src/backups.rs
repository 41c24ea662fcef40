//! Backups and the objects each wrote.
//!
//! [`Catalog::begin_backup`] is idempotent on the job id: a redelivered job finds the backup its
//! first attempt created and writes to the same keys, so it never produces a second backup.
//! [`Catalog::record_object`] upserts on (backup, key), so rewriting an object after a crash
//! replaces its row instead of adding one. A backup is `complete` only once every object row is
//! in; its totals are computed from those rows in the same statement.

use coffer_core::{BackupId, JobId, OrgId, TenantId};
use sqlx::Row;
use sqlx::mysql::MySqlRow;
use time::OffsetDateTime;

use crate::{Catalog, CatalogError};

/// Life of a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupState {
    /// Being written (or interrupted; the next attempt of its job resumes it).
    Running,
    /// Every object is in the bucket and in the catalog.
    Complete,
    /// Gave up; the reason is in `last_error`.
    Failed,
    /// Retention is deleting it: no longer restorable, never resumed; the janitor removes the
    /// row once its objects are gone.
    Expiring,
}

impl BackupState {
    fn parse(s: &str) -> Result<Self, CatalogError> {
        match s {
            "running" => Ok(BackupState::Running),
            "complete" => Ok(BackupState::Complete),
            "failed" => Ok(BackupState::Failed),
            "expiring" => Ok(BackupState::Expiring),
            other => Err(CatalogError::Corrupt(format!(
                "unknown backup state {other:?}"
            ))),
        }
    }

    /// The stored (and displayed) name.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupState::Running => "running",
            BackupState::Complete => "complete",
            BackupState::Failed => "failed",
            BackupState::Expiring => "expiring",
        }
    }
}

/// A backup as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    /// The backup.
    pub backup_id: BackupId,
    /// The job that created it.
    pub job_id: JobId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its org.
    pub org_id: OrgId,
    /// The storage it was written to.
    pub storage_id: u64,
    /// `full` or `incremental`.
    pub kind: String,
    /// For an incremental: the backup whose cursors it continues from.
    pub base_backup_id: Option<BackupId>,
    /// Where it is in its life.
    pub state: BackupState,
    /// When the first attempt started.
    pub started_at: OffsetDateTime,
    /// When it completed.
    pub completed_at: Option<OffsetDateTime>,
    /// Objects written (set on completion).
    pub objects: u32,
    /// Records written (set on completion).
    pub record_count: u64,
    /// Bytes written (set on completion).
    pub bytes: u64,
}

/// What kind of object a row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A compressed CSV part of one sObject's records.
    Records,
    /// The backup's manifest.
    Manifest,
    /// A file body (content-addressed).
    File,
}

impl ObjectKind {
    fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Records => "records",
            ObjectKind::Manifest => "manifest",
            ObjectKind::File => "file",
        }
    }

    fn parse(s: &str) -> Result<Self, CatalogError> {
        match s {
            "records" => Ok(ObjectKind::Records),
            "manifest" => Ok(ObjectKind::Manifest),
            "file" => Ok(ObjectKind::File),
            other => Err(CatalogError::Corrupt(format!(
                "unknown object kind {other:?}"
            ))),
        }
    }
}

/// An object written by a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewObject {
    /// Object key in the backup's bucket.
    pub key: String,
    /// What it holds.
    pub kind: ObjectKind,
    /// The sObject, for records parts.
    pub sobject: Option<String>,
    /// The part number, for records parts (from 1).
    pub part: Option<u32>,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the object's bytes, lowercase hex.
    pub sha256: String,
    /// Records in the object (0 for non-record objects).
    pub rows: u64,
}

/// An object row as stored.
pub type ObjectRecord = NewObject;

macro_rules! select_backups {
    ($where:literal) => {
        concat!(
            "SELECT backup_id, job_id, tenant_id, org_id, storage_id, kind, base_backup_id, state, \
             started_at, completed_at, objects, record_count, bytes FROM backups ",
            $where
        )
    };
}

impl Catalog {
    /// Finds the backup of `job_id`, or creates it in state `running`. A failed backup whose job
    /// comes back (an operator replaying a dead letter) runs again.
    #[tracing::instrument(name = "catalog.begin_backup", level = "info", skip_all)]
    pub async fn begin_backup(
        &self,
        job_id: JobId,
        tenant_id: &TenantId,
        org_id: &OrgId,
        storage_id: u64,
        kind: &str,
    ) -> Result<BackupRecord, CatalogError> {
        self.begin(job_id, tenant_id, org_id, storage_id, kind, None)
            .await
    }

    /// As [`Catalog::begin_backup`], for an incremental backup continuing from `base`. A
    /// redelivered job keeps the base its first attempt recorded.
    #[tracing::instrument(name = "catalog.begin_incremental_backup", level = "info", skip_all)]
    pub async fn begin_incremental_backup(
        &self,
        job_id: JobId,
        tenant_id: &TenantId,
        org_id: &OrgId,
        storage_id: u64,
        base: BackupId,
    ) -> Result<BackupRecord, CatalogError> {
        self.begin(
            job_id,
            tenant_id,
            org_id,
            storage_id,
            "incremental",
            Some(base),
        )
        .await
    }

    async fn begin(
        &self,
        job_id: JobId,
        tenant_id: &TenantId,
        org_id: &OrgId,
        storage_id: u64,
        kind: &str,
        base: Option<BackupId>,
    ) -> Result<BackupRecord, CatalogError> {
        let mut tx = self.pool.begin().await?;
        refuse_while_files_swept(&mut tx, tenant_id, org_id).await?;
        sqlx::query(
            "INSERT IGNORE INTO backups (backup_id, job_id, tenant_id, org_id, storage_id, kind, base_backup_id, state) \
             VALUES (?, ?, ?, ?, ?, ?, ?, 'running')",
        )
        .bind(BackupId::generate().to_string())
        .bind(job_id.to_string())
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .bind(storage_id)
        .bind(kind)
        .bind(base.map(|b| b.to_string()))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE backups SET state = 'running', last_error = NULL WHERE job_id = ? AND state = 'failed'")
            .bind(job_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.backup_of_job(job_id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("backup of job {job_id} vanished")))
    }

    /// The newest complete backup of an org (full or incremental), the base of the next
    /// incremental.
    pub async fn latest_complete_backup(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
    ) -> Result<Option<BackupRecord>, CatalogError> {
        let sql = select_backups!(
            "WHERE tenant_id = ? AND org_id = ? AND state = 'complete' \
             ORDER BY completed_at DESC, backup_id DESC LIMIT 1"
        );
        let row = sqlx::query(sql)
            .bind(tenant_id.as_str())
            .bind(org_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(backup_from_row).transpose()
    }

    /// The backup created by `job_id`, if any.
    pub async fn backup_of_job(&self, job_id: JobId) -> Result<Option<BackupRecord>, CatalogError> {
        let row = sqlx::query(select_backups!("WHERE job_id = ?"))
            .bind(job_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(backup_from_row).transpose()
    }

    /// One backup.
    pub async fn backup(&self, backup_id: BackupId) -> Result<Option<BackupRecord>, CatalogError> {
        let row = sqlx::query(select_backups!("WHERE backup_id = ?"))
            .bind(backup_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(backup_from_row).transpose()
    }

    /// Backups of an org, newest first.
    pub async fn backups_of(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
    ) -> Result<Vec<BackupRecord>, CatalogError> {
        let sql = select_backups!(
            "WHERE tenant_id = ? AND org_id = ? ORDER BY started_at DESC, backup_id DESC"
        );
        let rows = sqlx::query(sql)
            .bind(tenant_id.as_str())
            .bind(org_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(backup_from_row).collect()
    }

    /// Records (or re-records, after a retry) an object the backup wrote.
    #[tracing::instrument(name = "catalog.record_object", level = "info", skip_all)]
    pub async fn record_object(
        &self,
        backup_id: BackupId,
        object: &NewObject,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO backup_objects (backup_id, object_key, kind, sobject, part, size_bytes, sha256, row_count) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE kind = VALUES(kind), sobject = VALUES(sobject), \
             part = VALUES(part), size_bytes = VALUES(size_bytes), sha256 = VALUES(sha256), row_count = VALUES(row_count)",
        )
        .bind(backup_id.to_string())
        .bind(&object.key)
        .bind(object.kind.as_str())
        .bind(object.sobject.as_deref())
        .bind(object.part)
        .bind(object.size)
        .bind(&object.sha256)
        .bind(object.rows)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks the backup complete, with totals computed from its object rows.
    #[tracing::instrument(name = "catalog.complete_backup", level = "info", skip_all)]
    pub async fn complete_backup(&self, backup_id: BackupId) -> Result<BackupRecord, CatalogError> {
        sqlx::query(
            "UPDATE backups b SET state = 'complete', completed_at = CURRENT_TIMESTAMP(6), last_error = NULL, \
             objects = (SELECT COUNT(*) FROM backup_objects o WHERE o.backup_id = b.backup_id), \
             record_count = (SELECT COALESCE(SUM(row_count), 0) FROM backup_objects o WHERE o.backup_id = b.backup_id AND o.kind = 'records'), \
             bytes = (SELECT COALESCE(SUM(size_bytes), 0) FROM backup_objects o WHERE o.backup_id = b.backup_id) \
             WHERE b.backup_id = ? AND b.state IN ('running', 'failed')",
        )
        .bind(backup_id.to_string())
        .execute(&self.pool)
        .await?;
        self.backup(backup_id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("backup {backup_id} does not exist")))
    }

    /// Marks the backup failed with a reason (no secrets: the reason is shown to operators).
    #[tracing::instrument(name = "catalog.fail_backup", level = "info", skip_all)]
    pub async fn fail_backup(&self, backup_id: BackupId, reason: &str) -> Result<(), CatalogError> {
        sqlx::query("UPDATE backups SET state = 'failed', last_error = ? WHERE backup_id = ? AND state IN ('running', 'failed')")
            .bind(reason)
            .bind(backup_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes object rows (after their objects were deleted, e.g. parts a crashed attempt wrote
    /// that the retry did not write again).
    #[tracing::instrument(name = "catalog.delete_object_rows", level = "info", skip_all)]
    pub async fn delete_object_rows(
        &self,
        backup_id: BackupId,
        keys: &[String],
    ) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        for key in keys {
            sqlx::query("DELETE FROM backup_objects WHERE backup_id = ? AND object_key = ?")
                .bind(backup_id.to_string())
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The objects of a backup, by key.
    pub async fn backup_objects(
        &self,
        backup_id: BackupId,
    ) -> Result<Vec<ObjectRecord>, CatalogError> {
        let rows = sqlx::query(
            "SELECT object_key, kind, sobject, part, size_bytes, sha256, row_count FROM backup_objects \
             WHERE backup_id = ? ORDER BY object_key",
        )
        .bind(backup_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(object_from_row).collect()
    }
}

/// Refuses (retryably) to start or revive a backup of an org whose unreferenced file bodies the
/// janitor is deleting: a backup could otherwise decide to reuse a body the janitor is about
/// to delete. Holds the org row shared until the caller commits, against
/// [`Catalog::begin_files_sweep`], which takes it exclusively.
async fn refuse_while_files_swept(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    tenant_id: &TenantId,
    org_id: &OrgId,
) -> Result<(), CatalogError> {
    let row = sqlx::query(
        "SELECT files_sweep_until > CURRENT_TIMESTAMP(6) AS busy FROM orgs \
         WHERE tenant_id = ? AND org_id = ? LOCK IN SHARE MODE",
    )
    .bind(tenant_id.as_str())
    .bind(org_id.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let busy = match row {
        Some(row) => row.try_get::<Option<i64>, _>("busy")?.unwrap_or(0) != 0,
        None => false,
    };
    match busy {
        true => Err(CatalogError::Busy(format!(
            "the janitor is deleting unreferenced file bodies of org {org_id}; the backup starts once it is done"
        ))),
        false => Ok(()),
    }
}

fn parse_uuid<T: std::str::FromStr<Err = coffer_core::IdError>>(
    row: &MySqlRow,
    col: &str,
) -> Result<T, CatalogError> {
    let s: String = row.try_get(col)?;
    Ok(s.parse::<T>()?)
}

fn backup_from_row(row: &MySqlRow) -> Result<BackupRecord, CatalogError> {
    Ok(BackupRecord {
        backup_id: parse_uuid(row, "backup_id")?,
        job_id: parse_uuid(row, "job_id")?,
        tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id")?)?,
        org_id: OrgId::new(row.try_get::<String, _>("org_id")?)?,
        storage_id: row.try_get("storage_id")?,
        kind: row.try_get("kind")?,
        base_backup_id: row
            .try_get::<Option<String>, _>("base_backup_id")?
            .map(|s| s.parse())
            .transpose()?,
        state: BackupState::parse(&row.try_get::<String, _>("state")?)?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
        objects: row.try_get("objects")?,
        record_count: row.try_get("record_count")?,
        bytes: row.try_get("bytes")?,
    })
}

fn object_from_row(row: &MySqlRow) -> Result<ObjectRecord, CatalogError> {
    Ok(NewObject {
        key: row.try_get("object_key")?,
        kind: ObjectKind::parse(&row.try_get::<String, _>("kind")?)?,
        sobject: row.try_get("sobject")?,
        part: row.try_get("part")?,
        size: row.try_get("size_bytes")?,
        sha256: row.try_get("sha256")?,
        rows: row.try_get("row_count")?,
    })
}
