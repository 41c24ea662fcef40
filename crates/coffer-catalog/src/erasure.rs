//! Erasure of records from every kept backup (GDPR): tombstones, the parts that still hold an
//! erased record, and the catalog side of rewriting one.
//!
//! A tombstone ([`Catalog::record_erasure`]) is written first and kept for good: restores
//! leave erased records out from then on, even while their backups are being rewritten, and
//! even from backups taken later. [`Catalog::parts_holding`] lists the records parts that
//! still hold one of them; once a part is rewritten without their values,
//! [`Catalog::part_rewritten`] records its new size and checksum and drops the records' index
//! and link rows in the same transaction, so the part leaves the list (a crash before that
//! finds the part again, already rewritten, and only records it).

use std::collections::BTreeSet;

use coffer_core::{BackupId, OrgId, TenantId};
use sqlx::{MySql, QueryBuilder, Row};

use crate::{Catalog, CatalogError};

/// A records part that holds rows of erased records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartToErase {
    /// The backup.
    pub backup_id: BackupId,
    /// The part's object key.
    pub key: String,
    /// Its size as recorded.
    pub size: u64,
    /// Its SHA-256 as recorded.
    pub sha256: String,
    /// The erased records it holds.
    pub record_ids: Vec<String>,
}

impl Catalog {
    /// Writes tombstones for `record_ids` (kept if already there); returns how many are new.
    pub async fn record_erasure(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        record_ids: &[String],
        reason: &str,
    ) -> Result<u64, CatalogError> {
        let mut added = 0;
        for id in record_ids {
            added += sqlx::query(
                "INSERT IGNORE INTO erased_records (tenant_id, org_id, record_id, reason) VALUES (?, ?, ?, ?)",
            )
            .bind(tenant_id.as_str())
            .bind(org_id.as_str())
            .bind(id)
            .bind(reason)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(added)
    }

    /// Every erased record of the org (the tombstones restores honour).
    pub async fn erased_records(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
    ) -> Result<BTreeSet<String>, CatalogError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT record_id FROM erased_records WHERE tenant_id = ? AND org_id = ?",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().collect())
    }

    /// Erased records whose backups are not all rewritten yet.
    pub async fn pending_erasures(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
    ) -> Result<Vec<String>, CatalogError> {
        Ok(sqlx::query_scalar(
            "SELECT record_id FROM erased_records WHERE tenant_id = ? AND org_id = ? AND done_at IS NULL \
             ORDER BY record_id",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .fetch_all(&self.pool)
        .await?)
    }

    /// The records parts of the org's backups (not those being deleted) that hold one of
    /// `record_ids`, with which.
    pub async fn parts_holding(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        record_ids: &[String],
    ) -> Result<Vec<PartToErase>, CatalogError> {
        let mut parts: Vec<PartToErase> = Vec::new();
        for chunk in record_ids.chunks(crate::files::FILE_BATCH_ROWS) {
            let mut q = QueryBuilder::<MySql>::new(
                "SELECT r.backup_id, o.object_key, o.size_bytes, o.sha256, r.record_id \
                 FROM backup_records r JOIN backups b ON b.backup_id = r.backup_id \
                 JOIN backup_objects o ON o.backup_id = r.backup_id AND o.kind = 'records' \
                   AND o.sobject = r.sobject AND o.part = r.part \
                 WHERE b.state <> 'expiring' AND b.tenant_id = ",
            );
            q.push_bind(tenant_id.as_str())
                .push(" AND b.org_id = ")
                .push_bind(org_id.as_str())
                .push(" AND r.record_id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id);
            }
            list.push_unseparated(") ORDER BY r.backup_id, o.object_key, r.record_id");
            for row in q.build().fetch_all(&self.pool).await? {
                let backup_id: BackupId = row.try_get::<String, _>("backup_id")?.parse()?;
                let key: String = row.try_get("object_key")?;
                let record: String = row.try_get("record_id")?;
                match parts
                    .iter_mut()
                    .find(|p| p.backup_id == backup_id && p.key == key)
                {
                    Some(part) => part.record_ids.push(record),
                    None => parts.push(PartToErase {
                        backup_id,
                        key,
                        size: row.try_get("size_bytes")?,
                        sha256: row.try_get("sha256")?,
                        record_ids: vec![record],
                    }),
                }
            }
        }
        Ok(parts)
    }

    /// Records a part rewritten without the values of `part.record_ids`: its new size and
    /// checksum, and the records' index rows, links and file references in that backup gone.
    pub async fn part_rewritten(
        &self,
        part: &PartToErase,
        size: u64,
        sha256: &str,
    ) -> Result<(), CatalogError> {
        let backup = part.backup_id.to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE backup_objects SET size_bytes = ?, sha256 = ? WHERE backup_id = ? AND object_key = ?")
            .bind(size)
            .bind(sha256)
            .bind(&backup)
            .bind(&part.key)
            .execute(&mut *tx)
            .await?;
        for id in &part.record_ids {
            for sql in [
                "DELETE FROM backup_records WHERE backup_id = ? AND record_id = ?",
                "DELETE FROM backup_links WHERE backup_id = ? AND child_id = ?",
                "DELETE FROM backup_files WHERE backup_id = ? AND record_id = ?",
            ] {
                sqlx::query(sql)
                    .bind(&backup)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks the erasure of `record_ids` done: no kept backup holds their values any more.
    pub async fn erasure_done(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        record_ids: &[String],
    ) -> Result<(), CatalogError> {
        for id in record_ids {
            sqlx::query(
                "UPDATE erased_records SET done_at = CURRENT_TIMESTAMP(6) \
                 WHERE tenant_id = ? AND org_id = ? AND record_id = ? AND done_at IS NULL",
            )
            .bind(tenant_id.as_str())
            .bind(org_id.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }
}
