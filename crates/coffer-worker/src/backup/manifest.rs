//! `manifest.json`: the backup described inside the bucket itself.
//!
//! It lists every object of the backup with its size, SHA-256 and row count, every file record
//! with the content-addressed body it had, and carries the schema snapshot (the describe of
//! every object backed up), so a bucket can be read, verified and a restore planned even
//! without the catalog.

use std::collections::BTreeMap;

use coffer_catalog::{BackupFile, NewObject};
use coffer_core::IdError;
use coffer_core::layout::{Compression, OrgPrefix};
use coffer_salesforce::SObjectDescribe;
use serde::Serialize;

/// Format marker, for readers that find a manifest without context.
pub const MANIFEST_FORMAT: &str = "coffer.backup-manifest";

/// Version of the manifest's schema.
pub const MANIFEST_VERSION: u32 = 1;

/// The manifest document.
#[derive(Debug, Serialize)]
pub struct Manifest<'a> {
    /// Always [`MANIFEST_FORMAT`].
    pub format: &'static str,
    /// Always [`MANIFEST_VERSION`].
    pub version: u32,
    /// The backup.
    pub backup_id: String,
    /// Its tenant.
    pub tenant_id: &'a str,
    /// Its org.
    pub org_id: &'a str,
    /// `full` or `incremental`.
    pub kind: &'a str,
    /// For an incremental: the backup it holds the changes since (its base's records complete
    /// it); `null` for a full backup.
    pub base_backup_id: Option<String>,
    /// When the backup started (RFC 3339).
    pub started_at: String,
    /// Salesforce API version the data was read with.
    pub api_version: &'a str,
    /// Every records object of the backup.
    pub objects: Vec<ManifestObject<'a>>,
    /// Every file record (ContentVersion, Attachment, Document) and the body it had.
    pub files: Vec<ManifestFile<'a>>,
    /// Describe of every object backed up, by name.
    pub schema: BTreeMap<&'a str, &'a SObjectDescribe>,
}

/// One object in the manifest.
#[derive(Debug, Serialize)]
pub struct ManifestObject<'a> {
    /// Full key in the bucket.
    pub key: &'a str,
    /// The sObject.
    pub sobject: Option<&'a str>,
    /// Part number (from 1).
    pub part: Option<u32>,
    /// Records in the object.
    pub rows: u64,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the object's bytes, hex.
    pub sha256: &'a str,
    /// `csv+gzip` or `csv+zstd`: CSV with one header row, compressed.
    pub format: &'static str,
}

impl<'a> ManifestObject<'a> {
    /// Describes a records part.
    pub fn of(object: &'a NewObject) -> Self {
        ManifestObject {
            key: &object.key,
            sobject: object.sobject.as_deref(),
            part: object.part,
            rows: object.rows,
            size: object.size,
            sha256: &object.sha256,
            format: match Compression::of_key(&object.key) {
                Some(Compression::Zstd) => "csv+zstd",
                _ => "csv+gzip",
            },
        }
    }
}

/// One file record in the manifest.
#[derive(Debug, Serialize)]
pub struct ManifestFile<'a> {
    /// `ContentVersion`, `Attachment` or `Document`.
    pub source: &'a str,
    /// The record.
    pub record_id: &'a str,
    /// Its ContentDocument, for a ContentVersion.
    pub content_document_id: Option<&'a str>,
    /// Its parent (`Attachment.ParentId`, `Document.FolderId`).
    pub parent_id: Option<&'a str>,
    /// Key of the body (content-addressed, shared by the org's backups).
    pub key: String,
    /// Size of the body.
    pub size: u64,
    /// SHA-256 of the body, hex.
    pub sha256: &'a str,
    /// MD5 of the body, hex (as `ContentVersion.Checksum`).
    pub md5: &'a str,
}

impl<'a> ManifestFile<'a> {
    /// Describes a file reference; its key is the body's content address under `prefix`.
    pub fn of(prefix: &OrgPrefix, file: &'a BackupFile) -> Result<Self, IdError> {
        Ok(ManifestFile {
            source: &file.source,
            record_id: &file.record_id,
            content_document_id: file.content_document_id.as_deref(),
            parent_id: file.parent_id.as_deref(),
            key: prefix.file_key(&file.sha256)?,
            size: file.size,
            sha256: &file.sha256,
            md5: &file.md5,
        })
    }
}
