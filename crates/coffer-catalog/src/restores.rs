//! Restores: records of a backup written back into an org, and the reads of the record index a
//! restore is planned from.
//!
//! - [`Catalog::begin_restore`] is idempotent on the job id: a redelivered request finds the
//!   restore its first attempt created.
//! - [`Catalog::record_restore_plan`] records the plan, one [`RestoreRow`] per record; planning
//!   again (after a crash) keeps the first plan, so the rows a running restore works through
//!   never change under it.
//! - While it runs, each row goes `pending` -> `written` ([`Catalog::mark_written`], with the id
//!   Salesforce gave the record, recorded as soon as it is known so a retry never creates the
//!   record twice) -> `linked` ([`Catalog::mark_linked`], its lookups rebuilt under the new ids),
//!   or `failed` ([`Catalog::mark_failed`]). [`Catalog::target_ids`] is the id map.
//!
//! Planning reads the record index of a backup chain: [`Catalog::backup_chain`] is a backup and
//! its bases, [`Catalog::chain_records`] the newest version of each record in it (an incremental
//! holds only what changed, so an unchanged record comes from an older backup of the chain),
//! [`Catalog::version_links`] the lookups of given versions and [`Catalog::chain_children`] the
//! records pointing at given parents.
//!
//! A restore does not reference its backup by a foreign key: its report outlives the backup.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use coffer_core::{BackupId, JobId, OrgId, TenantId};
use sqlx::mysql::MySqlRow;
use sqlx::{MySql, QueryBuilder, Row};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::records::INDEX_BATCH_ROWS;
use crate::{BackupRecord, Catalog, CatalogError, bind_list};

/// What a restore does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreMode {
    /// Only plan: say what would be written, write nothing.
    Plan,
    /// Plan, then write the records into the target org.
    Execute,
}

impl RestoreMode {
    /// The stored (and displayed) name.
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreMode::Plan => "plan",
            RestoreMode::Execute => "execute",
        }
    }

    fn parse(s: &str) -> Result<Self, CatalogError> {
        match s {
            "plan" => Ok(RestoreMode::Plan),
            "execute" => Ok(RestoreMode::Execute),
            other => Err(CatalogError::Corrupt(format!(
                "unknown restore mode {other:?}"
            ))),
        }
    }
}

/// Life of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreState {
    /// Reading the backup chain to decide what to write.
    Planning,
    /// The plan is recorded (the end of a plan-only restore).
    Planned,
    /// Writing records into the target org.
    Running,
    /// Done; the rows say what happened to each record.
    Complete,
    /// Gave up; the reason is in `error`.
    Failed,
}

impl RestoreState {
    /// The stored (and displayed) name.
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreState::Planning => "planning",
            RestoreState::Planned => "planned",
            RestoreState::Running => "running",
            RestoreState::Complete => "complete",
            RestoreState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, CatalogError> {
        match s {
            "planning" => Ok(RestoreState::Planning),
            "planned" => Ok(RestoreState::Planned),
            "running" => Ok(RestoreState::Running),
            "complete" => Ok(RestoreState::Complete),
            "failed" => Ok(RestoreState::Failed),
            other => Err(CatalogError::Corrupt(format!(
                "unknown restore state {other:?}"
            ))),
        }
    }

    fn is_final(self) -> bool {
        matches!(self, RestoreState::Complete | RestoreState::Failed)
    }
}

/// What a restore does with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RestoreAction {
    /// Create it (it does not exist in the target org): it gets a new id.
    Insert,
    /// Overwrite it in place (it exists in the target org under its id).
    Update,
    /// Bring it back from the target org's Recycle Bin.
    Undelete,
    /// Leave it (nothing to do, or it cannot be restored); reported, not written.
    Skip,
}

impl RestoreAction {
    /// The stored (and displayed) name.
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreAction::Insert => "insert",
            RestoreAction::Update => "update",
            RestoreAction::Undelete => "undelete",
            RestoreAction::Skip => "skip",
        }
    }

    fn parse(s: &str) -> Result<Self, CatalogError> {
        match s {
            "insert" => Ok(RestoreAction::Insert),
            "update" => Ok(RestoreAction::Update),
            "undelete" => Ok(RestoreAction::Undelete),
            "skip" => Ok(RestoreAction::Skip),
            other => Err(CatalogError::Corrupt(format!(
                "unknown restore action {other:?}"
            ))),
        }
    }
}

/// Where one record of a restore is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    /// Not written yet.
    Pending,
    /// Written; its id in the target org is known.
    Written,
    /// Written, and its lookups rebuilt under the new ids (the second pass).
    Linked,
    /// Salesforce refused it; the reason is in `error`.
    Failed,
}

impl RecordState {
    /// The stored (and displayed) name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Pending => "pending",
            RecordState::Written => "written",
            RecordState::Linked => "linked",
            RecordState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, CatalogError> {
        match s {
            "pending" => Ok(RecordState::Pending),
            "written" => Ok(RecordState::Written),
            "linked" => Ok(RecordState::Linked),
            "failed" => Ok(RecordState::Failed),
            other => Err(CatalogError::Corrupt(format!(
                "unknown restore record state {other:?}"
            ))),
        }
    }
}

/// A restore to begin.
#[derive(Debug, Clone, Copy)]
pub struct NewRestore<'a> {
    /// The job requesting it (the idempotency key).
    pub job_id: JobId,
    /// Its tenant.
    pub tenant_id: &'a TenantId,
    /// The org the backup was taken from.
    pub org_id: &'a OrgId,
    /// The backup restored from.
    pub backup_id: BackupId,
    /// The org written to (the source org, or another one such as a sandbox).
    pub target_org_id: &'a OrgId,
    /// Plan only, or plan and write.
    pub mode: RestoreMode,
    /// The request as received (JSON), for the report.
    pub request_json: &'a str,
}

/// A restore as the catalog holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreRecord {
    /// The restore (a UUID).
    pub restore_id: String,
    /// The job that created it.
    pub job_id: JobId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The org the backup was taken from.
    pub org_id: OrgId,
    /// The backup restored from (it may since have been deleted).
    pub backup_id: BackupId,
    /// The org written to.
    pub target_org_id: OrgId,
    /// Plan only, or plan and write.
    pub mode: RestoreMode,
    /// Where it is in its life.
    pub state: RestoreState,
    /// The request as received (JSON).
    pub request_json: String,
    /// The plan (JSON), once recorded.
    pub plan_json: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was first requested.
    pub created_at: OffsetDateTime,
    /// When it completed or failed.
    pub finished_at: Option<OffsetDateTime>,
}

/// The newest version of a record in a backup chain, as [`Catalog::chain_records`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRecord {
    /// The record's sObject.
    pub sobject: String,
    /// The record's Salesforce id.
    pub record_id: String,
    /// The backup holding that version.
    pub backup_id: BackupId,
    /// The part holding its row.
    pub part: u32,
    /// Its row in the part (from 1).
    pub row_no: u32,
    /// Its `SystemModstamp`, when the object has one.
    pub system_modstamp: Option<OffsetDateTime>,
    /// That version was read from the Recycle Bin: the record was deleted then.
    pub deleted: bool,
}

/// One record of a plan, before it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRecord {
    /// The record's id in the backup.
    pub source_id: String,
    /// Its sObject.
    pub sobject: String,
    /// What to do with it.
    pub action: RestoreAction,
    /// The backup holding the row to restore.
    pub backup_id: BackupId,
    /// The part holding the row.
    pub part: u32,
    /// The row in the part (from 1).
    pub row_no: u32,
}

/// One record of a restore, as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRow {
    /// The record's id in the backup.
    pub source_id: String,
    /// Its sObject.
    pub sobject: String,
    /// What to do with it.
    pub action: RestoreAction,
    /// The backup holding the row to restore.
    pub backup_id: BackupId,
    /// The part holding the row.
    pub part: u32,
    /// The row in the part (from 1).
    pub row_no: u32,
    /// Its id in the target org, once written.
    pub target_id: Option<String>,
    /// Where it is.
    pub state: RecordState,
    /// The Salesforce error, when it failed.
    pub error: Option<String>,
    /// When a create of it without the restore key was last sent; while the row is pending,
    /// Salesforce may hold the record (the answer never got recorded).
    pub sent_at: Option<OffsetDateTime>,
}

/// How many records of one sObject, with one action, are in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreCount {
    /// The sObject.
    pub sobject: String,
    /// The action.
    pub action: RestoreAction,
    /// The state.
    pub state: RecordState,
    /// Records.
    pub count: u64,
}

macro_rules! select_restores {
    ($where:literal) => {
        concat!(
            "SELECT restore_id, job_id, tenant_id, org_id, backup_id, target_org_id, mode, state, \
             request_json, plan_json, error, created_at, finished_at FROM restores ",
            $where
        )
    };
}

impl Catalog {
    /// Finds or creates the restore of `new.job_id`, in state `planning` when created
    /// (idempotent on the job id: a redelivered request gets the same row, as it is now).
    #[tracing::instrument(name = "catalog.begin_restore", level = "info", skip_all)]
    pub async fn begin_restore(&self, new: &NewRestore<'_>) -> Result<RestoreRecord, CatalogError> {
        // Not INSERT IGNORE: that would also turn a too-long request into a truncated one.
        sqlx::query(
            "INSERT INTO restores (restore_id, job_id, tenant_id, org_id, backup_id, target_org_id, mode, request_json) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE job_id = job_id",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(new.job_id.to_string())
        .bind(new.tenant_id.as_str())
        .bind(new.org_id.as_str())
        .bind(new.backup_id.to_string())
        .bind(new.target_org_id.as_str())
        .bind(new.mode.as_str())
        .bind(new.request_json)
        .execute(&self.pool)
        .await?;
        self.restore_of_job(new.job_id).await?.ok_or_else(|| {
            CatalogError::NotFound(format!("restore of job {} vanished", new.job_id))
        })
    }

    /// One restore.
    pub async fn restore(&self, restore_id: &str) -> Result<Option<RestoreRecord>, CatalogError> {
        let row = sqlx::query(select_restores!("WHERE restore_id = ?"))
            .bind(restore_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(restore_from_row).transpose()
    }

    /// The restore created by `job_id`, if any.
    pub async fn restore_of_job(
        &self,
        job_id: JobId,
    ) -> Result<Option<RestoreRecord>, CatalogError> {
        let row = sqlx::query(select_restores!("WHERE job_id = ?"))
            .bind(job_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(restore_from_row).transpose()
    }

    /// Restores of a tenant, newest first.
    pub async fn restores_of(
        &self,
        tenant_id: &TenantId,
    ) -> Result<Vec<RestoreRecord>, CatalogError> {
        let rows = sqlx::query(select_restores!(
            "WHERE tenant_id = ? ORDER BY created_at DESC, restore_id DESC"
        ))
        .bind(tenant_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(restore_from_row).collect()
    }

    /// Sets the state of a restore and its error (`None` clears it). `finished_at` becomes now
    /// for `Complete` and `Failed`, and is cleared for any other state (a restore run again).
    /// [`CatalogError::NotFound`] if the restore does not exist.
    pub async fn set_restore_state(
        &self,
        restore_id: &str,
        state: RestoreState,
        error: Option<&str>,
    ) -> Result<(), CatalogError> {
        let done = sqlx::query(
            "UPDATE restores SET state = ?, error = ?, \
             finished_at = IF(?, CURRENT_TIMESTAMP(6), NULL) WHERE restore_id = ?",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(state.is_final())
        .bind(restore_id)
        .execute(&self.pool)
        .await?;
        // The connection reports matched rows (CLIENT_FOUND_ROWS), not changed ones.
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound(format!(
                "restore {restore_id} does not exist"
            )));
        }
        Ok(())
    }

    /// Stores the plan, in one transaction: `plan_json` on the restore and one row per record
    /// (state `pending`), in batches of [`INDEX_BATCH_ROWS`], only if the restore has no plan
    /// yet; a re-plan after a crash keeps the first plan, its JSON and its rows. Then the
    /// restore is `planned`, unless it is already past that (`running` or `complete`): a
    /// `planning` or `failed` restore becomes `planned`, its error cleared.
    ///
    /// [`CatalogError::NotFound`] if the restore does not exist; [`CatalogError::Refused`] if
    /// `records` lists a source id twice.
    #[tracing::instrument(name = "catalog.record_restore_plan", level = "info", skip_all)]
    pub async fn record_restore_plan(
        &self,
        restore_id: &str,
        plan_json: &str,
        records: &[PlannedRecord],
    ) -> Result<(), CatalogError> {
        let mut seen = HashSet::with_capacity(records.len());
        if let Some(twice) = records.iter().find(|r| !seen.insert(r.source_id.as_str())) {
            return Err(CatalogError::Refused(format!(
                "the plan of restore {restore_id} lists record {} twice",
                twice.source_id
            )));
        }
        let mut tx = self.pool.begin().await?;
        // Locks the restore: two workers planning it at once record one plan.
        let row = sqlx::query(
            "SELECT plan_json IS NOT NULL AS planned, \
             EXISTS (SELECT 1 FROM restore_records r WHERE r.restore_id = restores.restore_id) AS has_rows \
             FROM restores WHERE restore_id = ? FOR UPDATE",
        )
        .bind(restore_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| CatalogError::NotFound(format!("restore {restore_id} does not exist")))?;
        let planned: bool = row.try_get("planned")?;
        let has_rows: bool = row.try_get("has_rows")?;
        if !planned && !has_rows {
            for batch in records.chunks(INDEX_BATCH_ROWS) {
                let mut insert: QueryBuilder<MySql> = QueryBuilder::new(
                    "INSERT INTO restore_records (restore_id, source_id, sobject, action, backup_id, part, row_no) ",
                );
                insert.push_values(batch, |mut row, r| {
                    row.push_bind(restore_id)
                        .push_bind(&r.source_id)
                        .push_bind(&r.sobject)
                        .push_bind(r.action.as_str())
                        .push_bind(r.backup_id.to_string())
                        .push_bind(r.part)
                        .push_bind(r.row_no);
                });
                insert.build().execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE restores SET plan_json = ? WHERE restore_id = ?")
                .bind(plan_json)
                .bind(restore_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE restores SET state = 'planned', error = NULL, finished_at = NULL \
             WHERE restore_id = ? AND state IN ('planning', 'failed')",
        )
        .bind(restore_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The records of a restore, optionally only of one sObject and/or in one state, by
    /// sObject, backup, part and row.
    pub async fn restore_rows(
        &self,
        restore_id: &str,
        sobject: Option<&str>,
        state: Option<RecordState>,
    ) -> Result<Vec<RestoreRow>, CatalogError> {
        let state = state.map(RecordState::as_str);
        let rows = sqlx::query(
            "SELECT source_id, sobject, action, backup_id, part, row_no, target_id, state, error, \
             sent_at FROM restore_records WHERE restore_id = ? AND (? IS NULL OR sobject = ?) \
             AND (? IS NULL OR state = ?) ORDER BY sobject, backup_id, part, row_no, source_id",
        )
        .bind(restore_id)
        .bind(sobject)
        .bind(sobject)
        .bind(state)
        .bind(state)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(restore_row_from_row).collect()
    }

    /// Records target ids as soon as Salesforce gave them, for `(source_id, target_id)` pairs:
    /// state `written`, `target_id` set, error cleared. Only rows still `pending` or `failed`
    /// change; a row already written keeps its first target id.
    #[tracing::instrument(name = "catalog.mark_written", level = "info", skip_all)]
    pub async fn mark_written(
        &self,
        restore_id: &str,
        written: &[(String, String)],
    ) -> Result<(), CatalogError> {
        self.update_rows_with(
            restore_id,
            written,
            "UPDATE restore_records SET state = 'written', error = NULL, target_id = CASE source_id",
        )
        .await
    }

    /// Notes that creates of the pending rows `source_ids` are about to be sent (now), so that
    /// a later attempt knows Salesforce may hold them.
    pub async fn mark_sent(
        &self,
        restore_id: &str,
        source_ids: &[String],
    ) -> Result<(), CatalogError> {
        for batch in source_ids.chunks(INDEX_BATCH_ROWS) {
            let mut update: QueryBuilder<MySql> = QueryBuilder::new(
                "UPDATE restore_records SET sent_at = CURRENT_TIMESTAMP(6) WHERE state = 'pending' AND restore_id = ",
            );
            update.push_bind(restore_id).push(" AND source_id IN (");
            bind_list(&mut update, batch);
            update.build().execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Marks rows failed with their Salesforce error, for `(source_id, error)` pairs. Rows
    /// already written or linked keep their state.
    #[tracing::instrument(name = "catalog.mark_failed", level = "info", skip_all)]
    pub async fn mark_failed(
        &self,
        restore_id: &str,
        failed: &[(String, String)],
    ) -> Result<(), CatalogError> {
        self.update_rows_with(
            restore_id,
            failed,
            "UPDATE restore_records SET state = 'failed', error = CASE source_id",
        )
        .await
    }

    /// `UPDATE ... SET <column> = CASE source_id WHEN ? THEN ? ... END` over the pending or
    /// failed rows of `pairs`, in batches, in one transaction.
    async fn update_rows_with(
        &self,
        restore_id: &str,
        pairs: &[(String, String)],
        update_case: &'static str,
    ) -> Result<(), CatalogError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for batch in pairs.chunks(INDEX_BATCH_ROWS) {
            let mut update: QueryBuilder<MySql> = QueryBuilder::new(update_case);
            for (source_id, value) in batch {
                update
                    .push(" WHEN ")
                    .push_bind(source_id)
                    .push(" THEN ")
                    .push_bind(value);
            }
            update
                .push(" END WHERE restore_id = ")
                .push_bind(restore_id)
                .push(" AND state IN ('pending', 'failed') AND source_id IN (");
            let mut ids = update.separated(", ");
            for (source_id, _) in batch {
                ids.push_bind(source_id);
            }
            update.push(")");
            update.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks written rows linked (their second pass is done); rows in any other state keep it.
    #[tracing::instrument(name = "catalog.mark_linked", level = "info", skip_all)]
    pub async fn mark_linked(
        &self,
        restore_id: &str,
        source_ids: &[String],
    ) -> Result<(), CatalogError> {
        if source_ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for batch in source_ids.chunks(INDEX_BATCH_ROWS) {
            let mut update: QueryBuilder<MySql> = QueryBuilder::new(
                "UPDATE restore_records SET state = 'linked' WHERE state = 'written' AND restore_id = ",
            );
            update.push_bind(restore_id).push(" AND source_id IN (");
            bind_list(&mut update, batch);
            update.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The id map: the target id of each of `source_ids` that has one (source id -> target id).
    pub async fn target_ids(
        &self,
        restore_id: &str,
        source_ids: &[String],
    ) -> Result<HashMap<String, String>, CatalogError> {
        let mut map = HashMap::new();
        for batch in source_ids.chunks(INDEX_BATCH_ROWS) {
            let mut query: QueryBuilder<MySql> = QueryBuilder::new(
                "SELECT source_id, target_id FROM restore_records WHERE target_id IS NOT NULL AND restore_id = ",
            );
            query.push_bind(restore_id).push(" AND source_id IN (");
            bind_list(&mut query, batch);
            for row in query.build().fetch_all(&self.pool).await? {
                map.insert(row.try_get("source_id")?, row.try_get("target_id")?);
            }
        }
        Ok(map)
    }

    /// Where earlier restores of the tenant into `target_org_id` put each of `source_ids`: the
    /// target id of its newest restore that wrote it (a second restore of the same records
    /// finds them there instead of creating them again).
    pub async fn restored_before(
        &self,
        tenant_id: &TenantId,
        target_org_id: &OrgId,
        source_ids: &[String],
    ) -> Result<HashMap<String, String>, CatalogError> {
        let mut map: HashMap<String, String> = HashMap::new();
        for batch in source_ids.chunks(INDEX_BATCH_ROWS) {
            let mut query: QueryBuilder<MySql> = QueryBuilder::new(
                "SELECT r.source_id, r.target_id FROM restore_records r \
                 JOIN restores s ON s.restore_id = r.restore_id \
                 WHERE r.target_id IS NOT NULL AND r.state IN ('written', 'linked') AND s.tenant_id = ",
            );
            query
                .push_bind(tenant_id.as_str())
                .push(" AND s.target_org_id = ")
                .push_bind(target_org_id.as_str())
                .push(" AND r.source_id IN (");
            bind_list(&mut query, batch);
            query.push(" ORDER BY s.created_at, s.restore_id");
            for row in query.build().fetch_all(&self.pool).await? {
                map.insert(row.try_get("source_id")?, row.try_get("target_id")?);
            }
        }
        Ok(map)
    }

    /// How many records of the restore are in each (sObject, action, state), by sObject,
    /// action and state.
    pub async fn restore_counts(
        &self,
        restore_id: &str,
    ) -> Result<Vec<RestoreCount>, CatalogError> {
        let rows = sqlx::query(
            "SELECT sobject, action, state, COUNT(*) AS n FROM restore_records WHERE restore_id = ? \
             GROUP BY sobject, action, state ORDER BY sobject, action, state",
        )
        .bind(restore_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let n: i64 = row.try_get("n")?;
                Ok(RestoreCount {
                    sobject: row.try_get("sobject")?,
                    action: RestoreAction::parse(&row.try_get::<String, _>("action")?)?,
                    state: RecordState::parse(&row.try_get::<String, _>("state")?)?,
                    count: u64::try_from(n).map_err(|_| {
                        CatalogError::Corrupt(format!("negative count {n} in restore {restore_id}"))
                    })?,
                })
            })
            .collect()
    }

    /// The backup and its bases, newest first: follows `base_backup_id` until a backup without
    /// one, and stops (with a warning) on a loop. [`CatalogError::NotFound`] if the backup or one
    /// of its bases does not exist: a chain with a hole cannot say where unchanged records are.
    pub async fn backup_chain(
        &self,
        backup_id: BackupId,
    ) -> Result<Vec<BackupRecord>, CatalogError> {
        let mut chain: Vec<BackupRecord> = Vec::new();
        let mut seen = HashSet::new();
        let mut next = Some(backup_id);
        while let Some(id) = next {
            if !seen.insert(id) {
                tracing::warn!(backup_id = %backup_id, base = %id, "backup chain loops; stopping there");
                break;
            }
            let backup = self.backup(id).await?.ok_or_else(|| match chain.last() {
                Some(newer) => CatalogError::NotFound(format!(
                    "backup {id}, the base of backup {}, does not exist",
                    newer.backup_id
                )),
                None => CatalogError::NotFound(format!("backup {id} does not exist")),
            })?;
            next = backup.base_backup_id;
            chain.push(backup);
        }
        Ok(chain)
    }

    /// The newest version in `chain` (backup ids, newest first) of each record asked for: the
    /// row of the first backup of the chain whose index holds it. Asked for are the records
    /// `ids` (those of `sobjects` only, when given); with `ids = None`, every record of
    /// `sobjects`; with both `None`, every record. Records whose newest version is deleted are
    /// returned with `deleted = true`; records the chain does not hold are left out. By
    /// sObject, backup, part and row.
    pub async fn chain_records(
        &self,
        chain: &[BackupId],
        sobjects: Option<&[String]>,
        ids: Option<&[String]>,
    ) -> Result<Vec<ChainRecord>, CatalogError> {
        const COLUMNS: &str = "SELECT record_id, sobject, part, row_no, system_modstamp, deleted FROM backup_records WHERE backup_id = ";
        let mut found: HashMap<String, ChainRecord> = HashMap::new();
        match ids {
            Some(ids) => {
                // Only ids not found in a newer backup are looked for in an older one.
                let mut seen = HashSet::new();
                let mut wanted: Vec<&String> = ids.iter().filter(|id| seen.insert(*id)).collect();
                for &backup_id in chain {
                    if wanted.is_empty() {
                        break;
                    }
                    let backup = backup_id.to_string();
                    for batch in wanted.chunks(INDEX_BATCH_ROWS) {
                        let mut query: QueryBuilder<MySql> = QueryBuilder::new(COLUMNS);
                        query.push_bind(&backup).push(" AND record_id IN (");
                        bind_list(&mut query, batch.iter().copied());
                        for row in query.build().fetch_all(&self.pool).await? {
                            let record = chain_record_from_row(&row, backup_id)?;
                            found.entry(record.record_id.clone()).or_insert(record);
                        }
                    }
                    wanted.retain(|id| !found.contains_key(*id));
                }
                // A record's sObject is the same in every backup: filtering after the search
                // finds the same newest versions.
                if let Some(sobjects) = sobjects {
                    let sobjects: HashSet<&str> = sobjects.iter().map(String::as_str).collect();
                    found.retain(|_, r| sobjects.contains(r.sobject.as_str()));
                }
            }
            None => {
                for &backup_id in chain {
                    let backup = backup_id.to_string();
                    let mut rows = Vec::new();
                    match sobjects {
                        Some(sobjects) => {
                            for batch in sobjects.chunks(INDEX_BATCH_ROWS) {
                                let mut query: QueryBuilder<MySql> = QueryBuilder::new(COLUMNS);
                                query.push_bind(&backup).push(" AND sobject IN (");
                                bind_list(&mut query, batch);
                                rows.extend(query.build().fetch_all(&self.pool).await?);
                            }
                        }
                        None => {
                            let mut query: QueryBuilder<MySql> = QueryBuilder::new(COLUMNS);
                            query.push_bind(&backup);
                            rows = query.build().fetch_all(&self.pool).await?;
                        }
                    }
                    for row in &rows {
                        let record = chain_record_from_row(row, backup_id)?;
                        found.entry(record.record_id.clone()).or_insert(record);
                    }
                }
            }
        }
        let mut records: Vec<ChainRecord> = found.into_values().collect();
        records.sort_by(|a, b| {
            (&a.sobject, a.backup_id, a.part, a.row_no, &a.record_id).cmp(&(
                &b.sobject,
                b.backup_id,
                b.part,
                b.row_no,
                &b.record_id,
            ))
        });
        Ok(records)
    }

    /// The lookups of the given versions: for each (backup, child id), the links that backup
    /// recorded for that child, as (child id, field, parent id), by child and field.
    pub async fn version_links(
        &self,
        versions: &[(BackupId, String)],
    ) -> Result<Vec<(String, String, String)>, CatalogError> {
        let mut by_backup: BTreeMap<BackupId, BTreeSet<&String>> = BTreeMap::new();
        for (backup_id, child_id) in versions {
            by_backup.entry(*backup_id).or_default().insert(child_id);
        }
        let mut links = BTreeSet::new();
        for (backup_id, children) in by_backup {
            let backup = backup_id.to_string();
            let children: Vec<&String> = children.into_iter().collect();
            for batch in children.chunks(INDEX_BATCH_ROWS) {
                let mut query: QueryBuilder<MySql> = QueryBuilder::new(
                    "SELECT child_id, field, parent_id FROM backup_links WHERE backup_id = ",
                );
                query.push_bind(&backup).push(" AND child_id IN (");
                bind_list(&mut query, batch.iter().copied());
                for row in query.build().fetch_all(&self.pool).await? {
                    links.insert((
                        row.try_get("child_id")?,
                        row.try_get("field")?,
                        row.try_get("parent_id")?,
                    ));
                }
            }
        }
        Ok(links.into_iter().collect())
    }

    /// The records that have a lookup to any of `parent_ids` in some backup of `chain`, as
    /// (child id, child sObject), each once, by id.
    pub async fn chain_children(
        &self,
        chain: &[BackupId],
        parent_ids: &[String],
    ) -> Result<Vec<(String, String)>, CatalogError> {
        let chain: Vec<String> = chain.iter().map(BackupId::to_string).collect();
        let mut children = BTreeSet::new();
        for backups in chain.chunks(INDEX_BATCH_ROWS) {
            for parents in parent_ids.chunks(INDEX_BATCH_ROWS) {
                let mut query: QueryBuilder<MySql> = QueryBuilder::new(
                    "SELECT DISTINCT child_id, sobject FROM backup_links WHERE backup_id IN (",
                );
                bind_list(&mut query, backups);
                query.push(" AND parent_id IN (");
                bind_list(&mut query, parents);
                for row in query.build().fetch_all(&self.pool).await? {
                    children.insert((row.try_get("child_id")?, row.try_get("sobject")?));
                }
            }
        }
        Ok(children.into_iter().collect())
    }
}

fn restore_from_row(row: &MySqlRow) -> Result<RestoreRecord, CatalogError> {
    Ok(RestoreRecord {
        restore_id: row.try_get("restore_id")?,
        job_id: row.try_get::<String, _>("job_id")?.parse()?,
        tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id")?)?,
        org_id: OrgId::new(row.try_get::<String, _>("org_id")?)?,
        backup_id: row.try_get::<String, _>("backup_id")?.parse()?,
        target_org_id: OrgId::new(row.try_get::<String, _>("target_org_id")?)?,
        mode: RestoreMode::parse(&row.try_get::<String, _>("mode")?)?,
        state: RestoreState::parse(&row.try_get::<String, _>("state")?)?,
        request_json: row.try_get("request_json")?,
        plan_json: row.try_get("plan_json")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn restore_row_from_row(row: &MySqlRow) -> Result<RestoreRow, CatalogError> {
    Ok(RestoreRow {
        source_id: row.try_get("source_id")?,
        sobject: row.try_get("sobject")?,
        action: RestoreAction::parse(&row.try_get::<String, _>("action")?)?,
        backup_id: row.try_get::<String, _>("backup_id")?.parse()?,
        part: row.try_get("part")?,
        row_no: row.try_get("row_no")?,
        target_id: row.try_get("target_id")?,
        state: RecordState::parse(&row.try_get::<String, _>("state")?)?,
        error: row.try_get("error")?,
        sent_at: row.try_get("sent_at")?,
    })
}

fn chain_record_from_row(row: &MySqlRow, backup_id: BackupId) -> Result<ChainRecord, CatalogError> {
    let stamp: Option<PrimitiveDateTime> = row.try_get("system_modstamp")?;
    Ok(ChainRecord {
        sobject: row.try_get("sobject")?,
        record_id: row.try_get("record_id")?,
        backup_id,
        part: row.try_get("part")?,
        row_no: row.try_get("row_no")?,
        system_modstamp: stamp.map(PrimitiveDateTime::assume_utc),
        deleted: row.try_get("deleted")?,
    })
}

/// A restore held by this process: a MySQL named lock on a connection of its own. Dropping it
/// (or the process dying, or the connection breaking) releases the restore.
#[derive(Debug)]
pub struct RestoreHold {
    _conn: sqlx::MySqlConnection,
}

impl Catalog {
    /// Takes the restore for this process, without waiting (`GET_LOCK('coffer-restore.{id}', 0)`
    /// on a connection of its own): one delivery writes a restore at a time, even when its
    /// message was handed over and came back while the first still runs. `None` when another
    /// process holds it.
    pub async fn hold_restore(
        &self,
        restore_id: &str,
    ) -> Result<Option<RestoreHold>, CatalogError> {
        use sqlx::Connection as _;
        let mut conn = self.pool.acquire().await?.detach();
        let lock = format!("coffer-restore.{restore_id}");
        let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
            .bind(&lock)
            .fetch_one(&mut conn)
            .await?;
        if got == Some(1) {
            Ok(Some(RestoreHold { _conn: conn }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }
}
