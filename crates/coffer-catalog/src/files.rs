//! File bodies and the backups that reference them.
//!
//! A body (ContentVersion.VersionData, Attachment.Body, Document.Body) is stored once per org
//! and storage, content-addressed by its SHA-256 ([`FileObject`], table `file_objects`). Each
//! backup records, per file record it read, which body that record had ([`BackupFile`], table
//! `backup_files`). Both writes are idempotent under redelivery: a file object is inserted only
//! if absent ([`Catalog::record_file_object`]) and a reference row upserts on (backup, source,
//! record id) ([`Catalog::record_backup_files`]).
//!
//! Lookups that let a backup skip downloading a body it already has:
//! [`Catalog::file_object_by_md5`] (Salesforce gives a ContentVersion's MD5 before the download)
//! and [`Catalog::earlier_files`] (the body a record had in an earlier backup, with the
//! `SystemModstamp` it had then).

use std::collections::HashMap;

use coffer_core::{BackupId, OrgId, TenantId};
use sqlx::mysql::MySqlRow;
use sqlx::{MySql, QueryBuilder, Row};
use time::OffsetDateTime;

use crate::{Catalog, CatalogError};

/// Rows per multi-row `INSERT` or per `IN (...)` list: far below MySQL's 65,535 placeholders and
/// its default `max_allowed_packet`, large enough that a million references take 2,000
/// statements.
pub const FILE_BATCH_ROWS: usize = 500;

/// A body stored in a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileObject {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The org.
    pub org_id: OrgId,
    /// The storage (bucket and base path) it is in.
    pub storage_id: u64,
    /// SHA-256 of the body, lowercase hex.
    pub sha256: String,
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// MD5 of the body, lowercase hex.
    pub md5: String,
    /// When the row was written.
    pub created_at: OffsetDateTime,
}

/// A body just made durable in a bucket, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFileObject {
    /// The storage it is in.
    pub storage_id: u64,
    /// SHA-256 of the body, lowercase hex.
    pub sha256: String,
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// MD5 of the body, lowercase hex.
    pub md5: String,
}

/// One file record as a backup saw it: which body it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    /// The object the record belongs to: `ContentVersion`, `Attachment` or `Document`.
    pub source: String,
    /// The record's id.
    pub record_id: String,
    /// `ContentVersion.ContentDocumentId`.
    pub content_document_id: Option<String>,
    /// `Attachment.ParentId` or `Document.FolderId`.
    pub parent_id: Option<String>,
    /// SHA-256 of the body, lowercase hex (the body's key follows from it).
    pub sha256: String,
    /// Size of the body in bytes.
    pub size: u64,
    /// MD5 of the body, lowercase hex.
    pub md5: String,
    /// The record's `SystemModstamp` as Salesforce gave it, if read.
    pub modstamp: Option<String>,
}

impl Catalog {
    /// The body with this SHA-256 stored for the org in `storage_id`, if any.
    pub async fn file_object(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        storage_id: u64,
        sha256: &str,
    ) -> Result<Option<FileObject>, CatalogError> {
        let row = sqlx::query(
            "SELECT tenant_id, org_id, storage_id, sha256, object_key, size_bytes, md5, created_at \
             FROM file_objects WHERE tenant_id = ? AND org_id = ? AND storage_id = ? AND sha256 = ?",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .bind(storage_id)
        .bind(sha256)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(file_object_from_row).transpose()
    }

    /// A body with this MD5 and size stored for the org in `storage_id`, if any (the oldest).
    pub async fn file_object_by_md5(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        storage_id: u64,
        md5: &str,
        size: u64,
    ) -> Result<Option<FileObject>, CatalogError> {
        let row = sqlx::query(
            "SELECT tenant_id, org_id, storage_id, sha256, object_key, size_bytes, md5, created_at \
             FROM file_objects WHERE tenant_id = ? AND org_id = ? AND storage_id = ? AND md5 = ? \
             AND size_bytes = ? ORDER BY created_at, sha256 LIMIT 1",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .bind(storage_id)
        .bind(md5.to_ascii_lowercase())
        .bind(size)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(file_object_from_row).transpose()
    }

    /// Records a body once it is durable in the bucket; a row already there is kept (the body
    /// is the same: same SHA-256). Returns whether this call inserted the row.
    #[tracing::instrument(name = "catalog.record_file_object", level = "info", skip_all)]
    pub async fn record_file_object(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        object: &NewFileObject,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "INSERT IGNORE INTO file_objects (tenant_id, org_id, storage_id, sha256, object_key, size_bytes, md5) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .bind(object.storage_id)
        .bind(&object.sha256)
        .bind(&object.key)
        .bind(object.size)
        .bind(object.md5.to_ascii_lowercase())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records (or re-records, after a retry) the reference rows of a backup, in multi-row
    /// statements of [`FILE_BATCH_ROWS`] rows, each batch in one transaction with the next.
    #[tracing::instrument(name = "catalog.record_backup_files", level = "info", skip_all)]
    pub async fn record_backup_files(
        &self,
        backup_id: BackupId,
        files: &[BackupFile],
    ) -> Result<(), CatalogError> {
        if files.is_empty() {
            return Ok(());
        }
        let backup = backup_id.to_string();
        let mut tx = self.pool().begin().await?;
        for batch in files.chunks(FILE_BATCH_ROWS) {
            let mut insert: QueryBuilder<MySql> = QueryBuilder::new(
                "INSERT INTO backup_files (backup_id, source, record_id, content_document_id, \
                 parent_id, sha256, size_bytes, md5, source_modstamp) ",
            );
            insert.push_values(batch, |mut row, f| {
                row.push_bind(&backup)
                    .push_bind(&f.source)
                    .push_bind(&f.record_id)
                    .push_bind(f.content_document_id.as_deref())
                    .push_bind(f.parent_id.as_deref())
                    .push_bind(&f.sha256)
                    .push_bind(f.size)
                    .push_bind(f.md5.to_ascii_lowercase())
                    .push_bind(f.modstamp.as_deref());
            });
            insert.push(
                " ON DUPLICATE KEY UPDATE content_document_id = VALUES(content_document_id), \
                 parent_id = VALUES(parent_id), sha256 = VALUES(sha256), size_bytes = VALUES(size_bytes), \
                 md5 = VALUES(md5), source_modstamp = VALUES(source_modstamp)",
            );
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The reference rows of a backup, by source and record id.
    pub async fn backup_files(&self, backup_id: BackupId) -> Result<Vec<BackupFile>, CatalogError> {
        let rows = sqlx::query(
            "SELECT source, record_id, content_document_id, parent_id, sha256, size_bytes, md5, source_modstamp \
             FROM backup_files WHERE backup_id = ? ORDER BY source, record_id",
        )
        .bind(backup_id.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(backup_file_from_row).collect()
    }

    /// How many reference rows, across the org's backups, point at the body with this SHA-256
    /// (zero: the janitor may delete it).
    pub async fn file_references(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        sha256: &str,
    ) -> Result<u64, CatalogError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM backup_files f JOIN backups b ON b.backup_id = f.backup_id \
             WHERE f.sha256 = ? AND b.tenant_id = ? AND b.org_id = ?",
        )
        .bind(sha256)
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .fetch_one(self.pool())
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// For each of `record_ids` of `source`, the reference rows earlier backups of the org into
    /// `storage_id` (this one included) recorded whose body is still recorded as stored there:
    /// what lets a backup reuse a body without downloading it when the record is unchanged.
    /// Queried [`FILE_BATCH_ROWS`] ids at a time.
    pub async fn earlier_files(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        storage_id: u64,
        source: &str,
        record_ids: &[String],
    ) -> Result<HashMap<String, Vec<BackupFile>>, CatalogError> {
        let mut found: HashMap<String, Vec<BackupFile>> = HashMap::new();
        for batch in record_ids.chunks(FILE_BATCH_ROWS) {
            let mut query: QueryBuilder<MySql> = QueryBuilder::new(
                "SELECT DISTINCT f.source, f.record_id, f.content_document_id, f.parent_id, f.sha256, \
                 f.size_bytes, f.md5, f.source_modstamp FROM backup_files f \
                 JOIN backups b ON b.backup_id = f.backup_id \
                 JOIN file_objects o ON o.tenant_id = b.tenant_id AND o.org_id = b.org_id \
                 AND o.storage_id = b.storage_id AND o.sha256 = f.sha256 \
                 WHERE b.tenant_id = ",
            );
            query
                .push_bind(tenant_id.as_str())
                .push(" AND b.org_id = ")
                .push_bind(org_id.as_str())
                .push(" AND b.storage_id = ")
                .push_bind(storage_id)
                .push(" AND f.source = ")
                .push_bind(source)
                .push(" AND f.record_id IN (");
            let mut ids = query.separated(", ");
            for id in batch {
                ids.push_bind(id);
            }
            query.push(")");
            for row in query.build().fetch_all(self.pool()).await? {
                let file = backup_file_from_row(&row)?;
                found.entry(file.record_id.clone()).or_default().push(file);
            }
        }
        Ok(found)
    }
}

pub(crate) fn file_object_from_row(row: &MySqlRow) -> Result<FileObject, CatalogError> {
    Ok(FileObject {
        tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id")?)?,
        org_id: OrgId::new(row.try_get::<String, _>("org_id")?)?,
        storage_id: row.try_get("storage_id")?,
        sha256: row.try_get("sha256")?,
        key: row.try_get("object_key")?,
        size: row.try_get("size_bytes")?,
        md5: row.try_get("md5")?,
        created_at: row.try_get("created_at")?,
    })
}

fn backup_file_from_row(row: &MySqlRow) -> Result<BackupFile, CatalogError> {
    Ok(BackupFile {
        source: row.try_get("source")?,
        record_id: row.try_get("record_id")?,
        content_document_id: row.try_get("content_document_id")?,
        parent_id: row.try_get("parent_id")?,
        sha256: row.try_get("sha256")?,
        size: row.try_get("size_bytes")?,
        md5: row.try_get("md5")?,
        modstamp: row.try_get("source_modstamp")?,
    })
}
