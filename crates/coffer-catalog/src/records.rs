//! The record index and the links between records.
//!
//! Every record a backup wrote has an [`IndexedRecord`]: its part and row, its `SystemModstamp`,
//! and whether it was read from the Recycle Bin. Every lookup it had to another record has a
//! [`RecordLink`] (child, field, parent), which a restore walks to expand a scope and to rebuild
//! links under new ids.
//!
//! Rows are written while a part streams, in multi-row statements of [`INDEX_BATCH_ROWS`], before
//! the part is durable: nothing reads the index of a backup that is not complete, and a retried
//! task first removes what its earlier attempt indexed ([`Catalog::delete_record_index`]). A
//! record read twice by one backup (a range re-read after a split) keeps its last position.
//!
//! [`Catalog::record_as_of`] answers "the state of record X as of time T": the row of the newest
//! backup of the org that completed by T and holds X. Full and incremental backups answer alike:
//! an incremental holds only what changed since its base, so an unchanged record is found in an
//! older backup of the chain.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use coffer_core::{BackupId, OrgId, TenantId};
use sqlx::mysql::MySqlRow;
use sqlx::{MySql, QueryBuilder, Row};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::conflicts::rerun_on_lock_conflict;
use crate::{Catalog, CatalogError, bind_list};

/// Rows per multi-row statement: 7 placeholders a row stays far under MySQL's 65,535, and a
/// statement well under `max_allowed_packet`.
pub const INDEX_BATCH_ROWS: usize = 2_000;

/// Where one record is in a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRecord {
    /// The record's Salesforce id.
    pub record_id: String,
    /// Records part of its sObject (from 1).
    pub part: u32,
    /// Data row in that part (from 1; the header is not counted).
    pub row: u32,
    /// Its `SystemModstamp`, when the object has one.
    pub system_modstamp: Option<OffsetDateTime>,
    /// Read from the Recycle Bin (`IsDeleted = true`).
    pub deleted: bool,
}

/// A lookup from one record to another, as the backup read it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordLink {
    /// The record holding the lookup.
    pub child_id: String,
    /// The lookup field (`ParentId`, `AccountId`, `WhatId`, ...).
    pub field: String,
    /// The record it points at.
    pub parent_id: String,
}

/// The state of a record in one backup, as [`Catalog::record_as_of`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordVersion {
    /// The backup holding it.
    pub backup_id: BackupId,
    /// When that backup completed.
    pub backup_completed_at: OffsetDateTime,
    /// The record's sObject.
    pub sobject: String,
    /// The part holding its row.
    pub part: u32,
    /// Its row in the part (from 1).
    pub row: u32,
    /// The part's key in the backup's bucket.
    pub object_key: String,
    /// The part's size, as recorded when it was written.
    pub object_size: u64,
    /// The part's SHA-256 (hex), as recorded when it was written.
    pub object_sha256: String,
    /// Its `SystemModstamp`.
    pub system_modstamp: Option<OffsetDateTime>,
    /// It was deleted (in the Recycle Bin) when the backup read it.
    pub deleted: bool,
}

impl Catalog {
    /// Indexes records of `sobject` the backup is writing, with their links, in batches; a lost
    /// lock conflict with another task's writes runs the transaction again.
    #[tracing::instrument(name = "catalog.index_records", level = "info", skip_all)]
    pub async fn index_records(
        &self,
        backup_id: BackupId,
        sobject: &str,
        records: &[IndexedRecord],
        links: &[(String, RecordLink)],
    ) -> Result<(), CatalogError> {
        let backup = backup_id.to_string();
        rerun_on_lock_conflict("index records", || {
            self.index_records_once(&backup, sobject, records, links)
        })
        .await
    }

    async fn index_records_once(
        &self,
        backup: &str,
        sobject: &str,
        records: &[IndexedRecord],
        links: &[(String, RecordLink)],
    ) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        for batch in records.chunks(INDEX_BATCH_ROWS) {
            let mut insert: QueryBuilder<MySql> = QueryBuilder::new(
                "INSERT INTO backup_records (backup_id, record_id, sobject, part, row_no, system_modstamp, deleted) ",
            );
            insert.push_values(batch, |mut row, r| {
                row.push_bind(backup)
                    .push_bind(&r.record_id)
                    .push_bind(sobject)
                    .push_bind(r.part)
                    .push_bind(r.row)
                    .push_bind(r.system_modstamp.map(to_utc_datetime))
                    .push_bind(r.deleted);
            });
            insert.push(
                " ON DUPLICATE KEY UPDATE sobject = VALUES(sobject), part = VALUES(part), row_no = VALUES(row_no), \
                 system_modstamp = VALUES(system_modstamp), deleted = VALUES(deleted)",
            );
            insert.build().execute(&mut *tx).await?;
        }
        for batch in links.chunks(INDEX_BATCH_ROWS) {
            let mut insert: QueryBuilder<MySql> = QueryBuilder::new(
                "INSERT INTO backup_links (backup_id, child_id, field, parent_id, sobject) ",
            );
            insert.push_values(batch, |mut row, (child_sobject, l)| {
                row.push_bind(backup)
                    .push_bind(&l.child_id)
                    .push_bind(&l.field)
                    .push_bind(&l.parent_id)
                    .push_bind(child_sobject);
            });
            insert.push(" ON DUPLICATE KEY UPDATE parent_id = VALUES(parent_id)");
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes what the backup indexed for `sobject` in parts `parts` (one task's slice),
    /// with the links of those records, before a retried task writes them again.
    ///
    /// The records are found with a plain read, which takes no locks, and removed by primary
    /// key in batches: other tasks of the backup index their own records meanwhile, and a
    /// range delete would lock the gaps they insert into. A first attempt finds nothing and
    /// locks nothing.
    #[tracing::instrument(name = "catalog.delete_record_index", level = "info", skip_all)]
    pub async fn delete_record_index(
        &self,
        backup_id: BackupId,
        sobject: &str,
        parts: RangeInclusive<u32>,
    ) -> Result<(), CatalogError> {
        let backup = backup_id.to_string();
        loop {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT record_id FROM backup_records \
                 WHERE backup_id = ? AND sobject = ? AND part BETWEEN ? AND ? LIMIT ?",
            )
            .bind(&backup)
            .bind(sobject)
            .bind(parts.start())
            .bind(parts.end())
            .bind(INDEX_BATCH_ROWS as u64)
            .fetch_all(&self.pool)
            .await?;
            if ids.is_empty() {
                return Ok(());
            }
            rerun_on_lock_conflict("remove record index", || {
                self.delete_indexed_records(&backup, &ids)
            })
            .await?;
        }
    }

    /// Removes the index rows and links of `ids` in one backup, by primary key.
    async fn delete_indexed_records(
        &self,
        backup: &str,
        ids: &[String],
    ) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        for (table, id_column) in [
            ("backup_links", "child_id"),
            ("backup_records", "record_id"),
        ] {
            let mut delete: QueryBuilder<MySql> =
                QueryBuilder::new(format!("DELETE FROM {table} WHERE backup_id = "));
            delete.push_bind(backup);
            delete.push(format!(" AND {id_column} IN ("));
            bind_list(&mut delete, ids);
            delete.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The records a backup indexed for `sobject` (all of them when `None`), by part and row.
    pub async fn indexed_records(
        &self,
        backup_id: BackupId,
        sobject: Option<&str>,
    ) -> Result<Vec<(String, IndexedRecord)>, CatalogError> {
        let rows = sqlx::query(
            "SELECT sobject, record_id, part, row_no, system_modstamp, deleted FROM backup_records \
             WHERE backup_id = ? AND (? IS NULL OR sobject = ?) ORDER BY sobject, part, row_no",
        )
        .bind(backup_id.to_string())
        .bind(sobject)
        .bind(sobject)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("sobject")?, indexed_from_row(row)?)))
            .collect()
    }

    /// The links a backup recorded, by child and field.
    pub async fn record_links(&self, backup_id: BackupId) -> Result<Vec<RecordLink>, CatalogError> {
        let rows = sqlx::query(
            "SELECT child_id, field, parent_id FROM backup_links WHERE backup_id = ? ORDER BY child_id, field",
        )
        .bind(backup_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RecordLink {
                    child_id: row.try_get("child_id")?,
                    field: row.try_get("field")?,
                    parent_id: row.try_get("parent_id")?,
                })
            })
            .collect()
    }

    /// Which of `versions` (record id, `SystemModstamp`) a complete backup of the org already
    /// holds: an incremental read re-reads an overlap window and skips what is already stored.
    pub async fn stored_versions(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        versions: &[(String, OffsetDateTime)],
    ) -> Result<HashSet<(String, OffsetDateTime)>, CatalogError> {
        let mut found = HashSet::new();
        for batch in versions.chunks(INDEX_BATCH_ROWS) {
            let mut query: QueryBuilder<MySql> = QueryBuilder::new(
                "SELECT r.record_id, r.system_modstamp FROM backup_records r \
                 JOIN backups b ON b.backup_id = r.backup_id \
                 WHERE b.state = 'complete' AND b.tenant_id = ",
            );
            query
                .push_bind(tenant_id.as_str())
                .push(" AND b.org_id = ")
                .push_bind(org_id.as_str())
                .push(" AND r.record_id IN (");
            let mut ids = query.separated(", ");
            for (id, _) in batch {
                ids.push_bind(id);
            }
            query.push(")");
            let wanted: HashSet<&(String, OffsetDateTime)> = batch.iter().collect();
            for row in query.build().fetch_all(&self.pool).await? {
                let id: String = row.try_get("record_id")?;
                let stamp: Option<PrimitiveDateTime> = row.try_get("system_modstamp")?;
                if let Some(stamp) = stamp.map(PrimitiveDateTime::assume_utc) {
                    let key = (id, stamp);
                    if wanted.contains(&key) {
                        found.insert(key);
                    }
                }
            }
        }
        Ok(found)
    }

    /// The state of `record_id` as of `at`: its row in the newest complete backup of the org
    /// that completed by `at` and holds it; `None` if no such backup holds it.
    pub async fn record_as_of(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        record_id: &str,
        at: OffsetDateTime,
    ) -> Result<Option<RecordVersion>, CatalogError> {
        let row = sqlx::query(
            "SELECT r.backup_id, b.completed_at, r.record_id, r.sobject, r.part, r.row_no, r.system_modstamp, r.deleted, \
             o.object_key, o.size_bytes, o.sha256 FROM backup_records r \
             JOIN backups b ON b.backup_id = r.backup_id \
             JOIN backup_objects o ON o.backup_id = r.backup_id AND o.kind = 'records' \
               AND o.sobject = r.sobject AND o.part = r.part \
             WHERE r.record_id = ? AND b.tenant_id = ? AND b.org_id = ? AND b.state = 'complete' \
               AND b.completed_at <= ? \
             ORDER BY b.completed_at DESC LIMIT 1",
        )
        .bind(record_id)
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let indexed = indexed_from_row(&row)?;
            Ok(RecordVersion {
                backup_id: row.try_get::<String, _>("backup_id")?.parse()?,
                backup_completed_at: row.try_get("completed_at")?,
                sobject: row.try_get("sobject")?,
                part: indexed.part,
                row: indexed.row,
                object_key: row.try_get("object_key")?,
                object_size: row.try_get("size_bytes")?,
                object_sha256: row.try_get("sha256")?,
                system_modstamp: indexed.system_modstamp,
                deleted: indexed.deleted,
            })
        })
        .transpose()
    }
}

/// A time as the UTC wall-clock `DATETIME` the index stores.
fn to_utc_datetime(t: OffsetDateTime) -> PrimitiveDateTime {
    let utc = t.to_offset(UtcOffset::UTC);
    PrimitiveDateTime::new(utc.date(), utc.time())
}

fn indexed_from_row(row: &MySqlRow) -> Result<IndexedRecord, CatalogError> {
    let stamp: Option<PrimitiveDateTime> = row.try_get("system_modstamp")?;
    Ok(IndexedRecord {
        record_id: row.try_get("record_id")?,
        part: row.try_get("part")?,
        row: row.try_get("row_no")?,
        system_modstamp: stamp.map(PrimitiveDateTime::assume_utc),
        deleted: row.try_get("deleted")?,
    })
}
