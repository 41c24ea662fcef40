//! File bodies: ContentVersion.VersionData, Attachment.Body and Document.Body, stored once per
//! org, content-addressed at `files/{sha256[0..2]}/{sha256}`, with a reference row per record per
//! backup (`backup_files`).
//!
//! [`backup_files`] backs up one [`FileSource`]:
//!
//! 1. a Bulk API 2.0 query reads the metadata (never the bodies, which Bulk cannot select):
//!    id, size, `SystemModstamp`, the parent (`ContentDocumentId`, `ParentId`, `FolderId`) and,
//!    for ContentVersion, `Checksum` (MD5), `IsLatest` and `ContentLocation` (external files,
//!    `ContentLocation != 'S'`, have no bytes in Salesforce and are skipped; [`FilePolicy`] picks
//!    every version or only `IsLatest = true`);
//! 2. per batch of records, the catalog says which bodies the org already has, so an unchanged
//!    file costs no transfer:
//!    - the record was backed up before with the same MD5 and size (ContentVersion) or the same
//!      `SystemModstamp` and size (Attachment, Document, which have no checksum), and that body
//!      is still recorded as stored: its reference is reused;
//!    - else, for a ContentVersion, a body of this org with the same MD5 and size is stored
//!      (another record with the same file): it is referenced. MD5 is not collision resistant:
//!      someone able to put a crafted file into the org could make a different file with the
//!      same MD5 and size be referenced instead; [`FileSettings::reuse_by_md5`] turns this step
//!      off where that matters (the bodies are then downloaded and addressed by SHA-256);
//! 3. otherwise the body is downloaded (one API call), its MD5 checked against `Checksum` where
//!    Salesforce gives one ([`WorkerError::FileChecksum`] names the record) and its length
//!    against the record's size ([`WorkerError::FileSize`]);
//! 4. a reference row per record is written, in batches ([`Catalog::record_backup_files`]).
//!
//! # Content addressing while streaming
//!
//! The key is the SHA-256 of the body, known only once the whole body has been read, and a body
//! may be up to 2 GB (more for some ContentVersions); memory must stay bounded. So:
//!
//! - a body of at most [`FileSettings::inline_limit`] bytes (8 MiB by default: nearly every
//!   attachment and most files) is held in memory, hashed, and written straight to its content
//!   address with `If-None-Match: *`;
//! - a larger body is streamed, as it arrives, into a [`MultipartWriter`] at a staging key of
//!   this backup (`backups/{backup_id}/staging/{sobject}/{record_id}`), which computes the
//!   SHA-256 on the way. Then, unless the content address already holds it (`HeadObject`), the
//!   store copies it server-side (`CopyObject` up to 5 GiB, `UploadPartCopy` parts above) to the
//!   content address, with the tenant's encryption and `If-None-Match: *`, and the staging
//!   object is deleted. The bytes leave the worker once and never touch its disk; the price of
//!   a large new file is one server-side copy.
//!
//! A file object row is written only once the object is durable, so the catalog never points at
//! a body that is not in the bucket. Finding an object already at the content address (a crash
//! after the upload but before the row, or another backup racing on the same body) is success,
//! after checking its size: same SHA-256, same bytes.
//!
//! # Redelivery
//!
//! Rerunning the same backup downloads nothing it already referenced (step 2 finds its own
//! rows), writes no second object (content addresses are created only if absent), inserts no
//! second file object row (insert-ignore) and no second reference row (upsert on backup,
//! source, record id). A staging object left by a killed attempt is overwritten by the next one
//! (staging keys are this backup's scratch space, so they are the one place written without
//! `If-None-Match`), and removed after its copy; what a crash leaves under `staging/` is swept
//! with the backup's other leftovers.
//!
//! # Bounds
//!
//! At most [`FileSettings::files_in_flight`] bodies are in flight; each holds at most
//! `inline_limit` bytes, or the writer's parts (`upload_part_size * (upload_in_flight + 1)`).

use bytes::{Bytes, BytesMut};
use coffer_catalog::files::FILE_BATCH_ROWS;
use coffer_catalog::{BackupFile, BackupRecord, Catalog, NewFileObject};
use coffer_core::SObjectName;
use coffer_core::layout::OrgPrefix;
use coffer_salesforce::{SalesforceClient, SalesforceError};
use coffer_storage::copy::CopyOptions;
use coffer_storage::multipart::UploadOptions;
use coffer_storage::{BucketTarget, MultipartWriter, S3Client, StorageError};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use crate::error::WorkerError;

/// S3's largest object `CopyObject` copies in one request.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// Where file bodies come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileSource {
    /// `ContentVersion.VersionData` (Salesforce Files), MD5-checked against `Checksum`.
    ContentVersion,
    /// `Attachment.Body`.
    Attachment,
    /// `Document.Body` (documents that are links, with a `Url`, have no body).
    Document,
}

impl FileSource {
    /// The source whose bodies the records of `sobject` carry, if any.
    pub fn of(sobject: &str) -> Option<FileSource> {
        [
            FileSource::ContentVersion,
            FileSource::Attachment,
            FileSource::Document,
        ]
        .into_iter()
        .find(|s| s.as_str() == sobject)
    }

    /// The object's API name, also the `source` of its reference rows.
    pub fn as_str(self) -> &'static str {
        match self {
            FileSource::ContentVersion => "ContentVersion",
            FileSource::Attachment => "Attachment",
            FileSource::Document => "Document",
        }
    }

    /// The blob field holding the body.
    pub fn body_field(self) -> &'static str {
        match self {
            FileSource::ContentVersion => "VersionData",
            FileSource::Attachment | FileSource::Document => "Body",
        }
    }

    /// The metadata query (Bulk API 2.0 cannot select the body itself).
    pub fn soql(self, policy: FilePolicy) -> String {
        match (self, policy) {
            (FileSource::ContentVersion, FilePolicy::AllVersions) => {
                "SELECT Id, ContentDocumentId, Checksum, ContentSize, IsLatest, ContentLocation, SystemModstamp FROM ContentVersion".to_owned()
            }
            (FileSource::ContentVersion, FilePolicy::LatestOnly) => {
                "SELECT Id, ContentDocumentId, Checksum, ContentSize, IsLatest, ContentLocation, SystemModstamp FROM ContentVersion WHERE IsLatest = true".to_owned()
            }
            (FileSource::Attachment, _) => {
                "SELECT Id, ParentId, BodyLength, SystemModstamp FROM Attachment".to_owned()
            }
            (FileSource::Document, _) => {
                "SELECT Id, FolderId, BodyLength, Url, SystemModstamp FROM Document".to_owned()
            }
        }
    }

    fn sobject(self) -> SObjectName {
        SObjectName::new(self.as_str()).expect("static object names are valid")
    }
}

/// Which ContentVersions a backup keeps (Attachments and Documents have one body each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FilePolicy {
    /// Every version of every file.
    #[default]
    AllVersions,
    /// Only the latest version of each file (`IsLatest = true`).
    LatestOnly,
}

/// Sizes and limits of the file step.
#[derive(Debug, Clone)]
pub struct FileSettings {
    /// Bodies downloaded at once.
    pub files_in_flight: usize,
    /// Bodies up to this size are hashed in memory and written straight to their content
    /// address; larger ones go through a staging object and a server-side copy.
    pub inline_limit: usize,
    /// Part size of staging uploads.
    pub upload_part_size: usize,
    /// Parts of one staging upload in flight.
    pub upload_in_flight: usize,
    /// Reference an already stored body with the same MD5 and size as a ContentVersion's
    /// `Checksum` without downloading it (see the module docs for the trade-off).
    pub reuse_by_md5: bool,
    /// Above this size the copy to the content address uses `UploadPartCopy`.
    pub single_copy_limit: u64,
    /// Part size of an `UploadPartCopy` copy.
    pub copy_part_size: u64,
}

impl Default for FileSettings {
    fn default() -> Self {
        FileSettings {
            files_in_flight: 4,
            inline_limit: 8 * 1024 * 1024,
            upload_part_size: 8 * 1024 * 1024,
            upload_in_flight: 2,
            reuse_by_md5: true,
            single_copy_limit: MAX_SINGLE_COPY,
            copy_part_size: 512 * 1024 * 1024,
        }
    }
}

/// What [`backup_files`] needs: where files come from and go, and the backup they belong to.
#[derive(Debug, Clone, Copy)]
pub struct FilesContext<'a> {
    /// The catalog.
    pub catalog: &'a Catalog,
    /// The org.
    pub sf: &'a SalesforceClient,
    /// The backup's storage.
    pub client: &'a S3Client,
    /// Bucket and encryption of the backup's storage.
    pub target: &'a BucketTarget,
    /// The org's prefix in that storage.
    pub prefix: &'a OrgPrefix,
    /// The backup (its storage row decides where file objects are looked up).
    pub backup: &'a BackupRecord,
    /// Limits.
    pub settings: &'a FileSettings,
}

/// What one [`backup_files`] call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilesSummary {
    /// Reference rows written (one per file record with a body).
    pub files: u64,
    /// Bodies downloaded from Salesforce.
    pub downloaded: u64,
    /// Bytes downloaded.
    pub downloaded_bytes: u64,
    /// Bodies this call stored as new objects.
    pub stored: u64,
    /// Bytes of those objects.
    pub stored_bytes: u64,
    /// Records whose body an earlier backup (or an earlier attempt) already referenced.
    pub unchanged: u64,
    /// ContentVersions referenced by MD5 and size without a download.
    pub reused_by_md5: u64,
    /// Records without a body in Salesforce (external ContentVersions, link Documents).
    pub skipped: u64,
}

/// How one record's body was found.
enum Found {
    Unchanged,
    SameMd5,
    Downloaded { bytes: u64, stored: bool },
}

/// One metadata row.
#[derive(Debug, Clone)]
struct FileMeta {
    id: String,
    content_document_id: Option<String>,
    parent_id: Option<String>,
    md5: Option<String>,
    size: Option<u64>,
    modstamp: Option<String>,
}

impl FileMeta {
    /// Whether `earlier` (a reference of the same record) is the body this record still has.
    fn unchanged_since(&self, earlier: &BackupFile) -> bool {
        let same_size = self.size.is_none_or(|size| size == earlier.size);
        match (&self.md5, &self.modstamp) {
            (Some(md5), _) => same_size && md5.eq_ignore_ascii_case(&earlier.md5),
            (None, Some(modstamp)) => same_size && earlier.modstamp.as_deref() == Some(modstamp),
            (None, None) => false,
        }
    }

    fn reference(&self, source: FileSource, sha256: String, size: u64, md5: String) -> BackupFile {
        BackupFile {
            source: source.as_str().to_owned(),
            record_id: self.id.clone(),
            content_document_id: self.content_document_id.clone(),
            parent_id: self.parent_id.clone(),
            sha256,
            size,
            md5: md5.to_ascii_lowercase(),
            modstamp: self.modstamp.clone(),
        }
    }
}

/// Backs up the bodies of `source` into the backup's storage and records a reference row per
/// record. See the module docs for the steps and guarantees.
pub async fn backup_files(
    ctx: &FilesContext<'_>,
    source: FileSource,
    policy: FilePolicy,
) -> Result<FilesSummary, WorkerError> {
    let soql = source.soql(policy);
    let mut pages = match ctx.sf.bulk_query(&soql).await {
        Ok(pages) => pages,
        // The file list is not split by id range (yet): a timeout is tried again later, and
        // dead-lettered with this reason only if it keeps happening.
        Err(e) if e.needs_split() => {
            return Err(WorkerError::Task(format!(
                "the list of file bodies: {e}; it is read again later"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let mut summary = FilesSummary::default();
    while let Some(page) = pages.next_page().await? {
        let columns = Columns::of(&page.headers, source)?;
        let mut metas = Vec::with_capacity(page.records.len());
        for row in &page.records {
            match columns.parse(row)? {
                Some(meta) => metas.push(meta),
                None => summary.skipped += 1,
            }
        }
        for batch in metas.chunks(FILE_BATCH_ROWS) {
            back_up_batch(ctx, source, batch, &mut summary).await?;
        }
    }
    tracing::info!(
        backup_id = %ctx.backup.backup_id,
        source = source.as_str(),
        files = summary.files,
        downloaded = summary.downloaded,
        downloaded_bytes = summary.downloaded_bytes,
        stored = summary.stored,
        stored_bytes = summary.stored_bytes,
        unchanged = summary.unchanged,
        reused_by_md5 = summary.reused_by_md5,
        skipped = summary.skipped,
        "files backed up"
    );
    Ok(summary)
}

/// One batch of records: the catalog lookup, the bodies (a few at a time), the reference rows.
async fn back_up_batch(
    ctx: &FilesContext<'_>,
    source: FileSource,
    batch: &[FileMeta],
    summary: &mut FilesSummary,
) -> Result<(), WorkerError> {
    let backup = ctx.backup;
    let ids: Vec<String> = batch.iter().map(|m| m.id.clone()).collect();
    let earlier = ctx
        .catalog
        .earlier_files(
            &backup.tenant_id,
            &backup.org_id,
            backup.storage_id,
            source.as_str(),
            &ids,
        )
        .await?;
    // Made before streaming them: a closure inside the stream would have to be general over
    // lifetimes, which the worker's Send future cannot prove.
    let bodies: Vec<_> = batch
        .iter()
        .map(|meta| {
            let earlier = earlier
                .get(&meta.id)
                .and_then(|rows| rows.iter().find(|row| meta.unchanged_since(row)));
            back_up_one(ctx, source, meta, earlier)
        })
        .collect();
    let results: Vec<(BackupFile, Found)> = futures::stream::iter(bodies)
        .buffer_unordered(ctx.settings.files_in_flight.max(1))
        .try_collect()
        .await?;
    let mut rows = Vec::with_capacity(results.len());
    for (row, found) in results {
        match found {
            Found::Unchanged => summary.unchanged += 1,
            Found::SameMd5 => summary.reused_by_md5 += 1,
            Found::Downloaded { bytes, stored } => {
                summary.downloaded += 1;
                summary.downloaded_bytes += bytes;
                if stored {
                    summary.stored += 1;
                    summary.stored_bytes += bytes;
                }
            }
        }
        rows.push(row);
    }
    ctx.catalog
        .record_backup_files(backup.backup_id, &rows)
        .await?;
    summary.files += rows.len() as u64;
    Ok(())
}

/// One record: reuse what the org already has, or download and store the body.
async fn back_up_one(
    ctx: &FilesContext<'_>,
    source: FileSource,
    meta: &FileMeta,
    earlier: Option<&BackupFile>,
) -> Result<(BackupFile, Found), WorkerError> {
    let backup = ctx.backup;
    if let Some(earlier) = earlier {
        let row = meta.reference(
            source,
            earlier.sha256.clone(),
            earlier.size,
            earlier.md5.clone(),
        );
        return Ok((row, Found::Unchanged));
    }
    if ctx.settings.reuse_by_md5
        && let (Some(md5), Some(size)) = (&meta.md5, meta.size)
        && let Some(object) = ctx
            .catalog
            .file_object_by_md5(
                &backup.tenant_id,
                &backup.org_id,
                backup.storage_id,
                md5,
                size,
            )
            .await?
    {
        let row = meta.reference(source, object.sha256, object.size, object.md5);
        return Ok((row, Found::SameMd5));
    }
    let (sha256, size, md5, stored) = download_and_store(ctx, source, meta).await?;
    let row = meta.reference(source, sha256, size, md5);
    Ok((
        row,
        Found::Downloaded {
            bytes: size,
            stored,
        },
    ))
}

/// Where a downloaded body is while its SHA-256 is not known yet.
enum Held {
    Memory(BytesMut),
    Staging(Box<MultipartWriter>),
}

/// Downloads one body and makes it durable at its content address; returns (SHA-256, size,
/// MD5, whether this call stored the object).
async fn download_and_store(
    ctx: &FilesContext<'_>,
    source: FileSource,
    meta: &FileMeta,
) -> Result<(String, u64, String, bool), WorkerError> {
    let sobject = source.sobject();
    let mut blob = ctx
        .sf
        .download_blob(&sobject, &meta.id, source.body_field(), meta.md5.as_deref())
        .await?;
    let mut held = Held::Memory(BytesMut::new());
    while let Some(chunk) = blob.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                abort_staging(held).await;
                return Err(blob_error(source, &meta.id, e));
            }
        };
        held = match held {
            Held::Staging(mut writer) => {
                writer.write(&chunk).await?;
                Held::Staging(writer)
            }
            Held::Memory(mut buffer) => {
                buffer.extend_from_slice(&chunk);
                if buffer.len() > ctx.settings.inline_limit {
                    Held::Staging(Box::new(start_staging(ctx, &sobject, meta, &buffer).await?))
                } else {
                    Held::Memory(buffer)
                }
            }
        };
    }
    let (size, md5) = (blob.bytes(), blob.md5_hex());
    if let Some(expected) = meta.size.filter(|expected| *expected != size) {
        abort_staging(held).await;
        return Err(WorkerError::FileSize {
            sobject: source.as_str().to_owned(),
            record_id: meta.id.clone(),
            expected,
            actual: size,
        });
    }
    let (sha256, stored) = match held {
        Held::Memory(buffer) => store_inline(ctx, buffer.freeze(), &md5).await?,
        Held::Staging(writer) => store_staged(ctx, *writer, &md5).await?,
    };
    tracing::debug!(source = source.as_str(), record_id = %meta.id, size, %sha256, stored, "file body downloaded");
    Ok((sha256, size, md5, stored))
}

fn blob_error(source: FileSource, record_id: &str, error: SalesforceError) -> WorkerError {
    match error {
        SalesforceError::ChecksumMismatch {
            bytes,
            expected,
            actual,
            ..
        } => WorkerError::FileChecksum {
            sobject: source.as_str().to_owned(),
            record_id: record_id.to_owned(),
            expected,
            actual,
            bytes,
        },
        other => WorkerError::Salesforce(other),
    }
}

async fn start_staging(
    ctx: &FilesContext<'_>,
    sobject: &SObjectName,
    meta: &FileMeta,
    head: &[u8],
) -> Result<MultipartWriter, WorkerError> {
    let key = ctx
        .prefix
        .file_staging_key(&ctx.backup.backup_id, sobject, &meta.id)
        .map_err(|e| bad_record(sobject.as_str(), e.to_string()))?;
    let options = UploadOptions {
        part_size: ctx.settings.upload_part_size,
        max_in_flight: ctx.settings.upload_in_flight,
        content_type: "application/octet-stream".to_owned(),
        expected_size: meta.size,
        // Scratch space of this backup: a killed attempt's leftover is replaced.
        overwrite: true,
    };
    let mut writer = MultipartWriter::create(ctx.client, ctx.target, key, options).await?;
    writer.write(head).await?;
    Ok(writer)
}

async fn abort_staging(held: Held) {
    if let Held::Staging(writer) = held {
        let key = writer.key().to_owned();
        if let Err(e) = writer.abort().await {
            tracing::warn!(%key, error = %e, "abort of a staging upload failed; it is swept with the backup's leftovers");
        }
    }
}

/// A body held in memory: hashed, then written to its content address unless already there.
async fn store_inline(
    ctx: &FilesContext<'_>,
    body: Bytes,
    md5: &str,
) -> Result<(String, bool), WorkerError> {
    let sha256 = hex::encode(Sha256::digest(&body));
    let size = body.len() as u64;
    if recorded(ctx, &sha256).await? {
        return Ok((sha256, false));
    }
    let key = content_key(ctx, &sha256)?;
    let options = UploadOptions {
        part_size: ctx.settings.upload_part_size,
        max_in_flight: ctx.settings.upload_in_flight,
        content_type: "application/octet-stream".to_owned(),
        expected_size: Some(size),
        overwrite: false,
    };
    let mut writer = MultipartWriter::create(ctx.client, ctx.target, key.clone(), options).await?;
    writer.write(&body).await?;
    let stored = match writer.finish().await {
        Ok(_) => true,
        Err(StorageError::ObjectExists { .. }) => {
            check_existing(ctx, &key, size).await?;
            false
        }
        Err(e) => return Err(e.into()),
    };
    record(ctx, &sha256, key, size, md5).await?;
    Ok((sha256, stored))
}

/// A body streamed to a staging object: copied server-side to its content address unless
/// already there, then the staging object is deleted.
async fn store_staged(
    ctx: &FilesContext<'_>,
    writer: MultipartWriter,
    md5: &str,
) -> Result<(String, bool), WorkerError> {
    let staged = writer.finish().await?;
    let sha256 = staged.sha256_hex.clone();
    let mut stored = false;
    if !recorded(ctx, &sha256).await? {
        let key = content_key(ctx, &sha256)?;
        stored = copy_if_absent(ctx, &staged.key, &key, staged.size).await?;
        record(ctx, &sha256, key, staged.size, md5).await?;
    }
    ctx.client
        .delete_object()
        .bucket(&ctx.target.bucket)
        .key(&staged.key)
        .send()
        .await
        .map_err(|e| StorageError::from_sdk("DeleteObject", &ctx.target.bucket, e))?;
    Ok((sha256, stored))
}

fn content_key(ctx: &FilesContext<'_>, sha256: &str) -> Result<String, WorkerError> {
    ctx.prefix
        .file_key(sha256)
        .map_err(|e| WorkerError::Task(format!("content address: {e}")))
}

async fn recorded(ctx: &FilesContext<'_>, sha256: &str) -> Result<bool, WorkerError> {
    let backup = ctx.backup;
    Ok(ctx
        .catalog
        .file_object(&backup.tenant_id, &backup.org_id, backup.storage_id, sha256)
        .await?
        .is_some())
}

async fn record(
    ctx: &FilesContext<'_>,
    sha256: &str,
    key: String,
    size: u64,
    md5: &str,
) -> Result<(), WorkerError> {
    let backup = ctx.backup;
    let object = NewFileObject {
        storage_id: backup.storage_id,
        sha256: sha256.to_owned(),
        key,
        size,
        md5: md5.to_owned(),
    };
    ctx.catalog
        .record_file_object(&backup.tenant_id, &backup.org_id, &object)
        .await?;
    crate::metrics::file_stored(size);
    Ok(())
}

/// The size of the object at `key`, or `None` if there is none.
async fn head_size(ctx: &FilesContext<'_>, key: &str) -> Result<Option<u64>, WorkerError> {
    Ok(coffer_storage::copy::object_size(ctx.client, &ctx.target.bucket, key).await?)
}

/// An object found at a content address must have the body's size (same SHA-256, same bytes:
/// anything else was changed outside Coffer).
async fn check_existing(ctx: &FilesContext<'_>, key: &str, size: u64) -> Result<(), WorkerError> {
    match head_size(ctx, key).await? {
        Some(found) if found == size => Ok(()),
        found => Err(StorageError::Corrupt {
            bucket: ctx.target.bucket.clone(),
            key: key.to_owned(),
            expected: format!("{size} bytes"),
            actual: found.map_or_else(|| "no object".to_owned(), |n| format!("{n} bytes")),
        }
        .into()),
    }
}

/// Copies `from` to `to` inside the bucket unless `to` exists; returns whether it copied.
async fn copy_if_absent(
    ctx: &FilesContext<'_>,
    from: &str,
    to: &str,
    size: u64,
) -> Result<bool, WorkerError> {
    if head_size(ctx, to).await?.is_some() {
        check_existing(ctx, to, size).await?;
        return Ok(false);
    }
    let options = CopyOptions {
        single_copy_limit: ctx.settings.single_copy_limit,
        copy_part_size: ctx.settings.copy_part_size,
    };
    match coffer_storage::copy::copy_if_absent(ctx.client, ctx.target, from, to, size, options)
        .await
    {
        Ok(()) => Ok(true),
        Err(StorageError::ObjectExists { .. }) => {
            check_existing(ctx, to, size).await?;
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

fn bad_record(sobject: &str, detail: String) -> WorkerError {
    WorkerError::BadRecords {
        sobject: sobject.to_owned(),
        detail,
    }
}

/// A Salesforce id (15 or 18 ASCII letters and digits), or `None` for an empty cell.
fn sf_id(sobject: &str, column: &str, cell: &str) -> Result<Option<String>, WorkerError> {
    if cell.is_empty() {
        return Ok(None);
    }
    if matches!(cell.len(), 15 | 18) && cell.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(Some(cell.to_owned()))
    } else {
        Err(bad_record(
            sobject,
            format!("{column} {cell:?} is not a Salesforce id"),
        ))
    }
}

/// Where the metadata columns are in a results page.
struct Columns {
    source: FileSource,
    id: usize,
    parent: Option<usize>,
    size: Option<usize>,
    md5: Option<usize>,
    location: Option<usize>,
    url: Option<usize>,
    modstamp: Option<usize>,
}

impl Columns {
    fn of(headers: &csv::StringRecord, source: FileSource) -> Result<Self, WorkerError> {
        let find = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        let id = find("Id").ok_or_else(|| {
            bad_record(source.as_str(), "the results have no Id column".to_owned())
        })?;
        let (parent, size) = match source {
            FileSource::ContentVersion => (find("ContentDocumentId"), find("ContentSize")),
            FileSource::Attachment => (find("ParentId"), find("BodyLength")),
            FileSource::Document => (find("FolderId"), find("BodyLength")),
        };
        Ok(Columns {
            source,
            id,
            parent,
            size,
            md5: find("Checksum"),
            location: find("ContentLocation"),
            url: find("Url"),
            modstamp: find("SystemModstamp"),
        })
    }

    /// The row's metadata, or `None` for a record without a body in Salesforce.
    fn parse(&self, row: &csv::StringRecord) -> Result<Option<FileMeta>, WorkerError> {
        let sobject = self.source.as_str();
        let cell = |i: Option<usize>| i.and_then(|i| row.get(i)).unwrap_or("");
        let external = self.location.is_some_and(|_| cell(self.location) != "S");
        let link = !cell(self.url).is_empty();
        if external || link {
            return Ok(None);
        }
        let id = sf_id(sobject, "Id", cell(Some(self.id)))?
            .ok_or_else(|| bad_record(sobject, "a row has no Id".to_owned()))?;
        let parent = sf_id(sobject, "parent", cell(self.parent))?;
        let size =
            match cell(self.size) {
                "" => None,
                n => Some(n.parse::<u64>().map_err(|_| {
                    bad_record(sobject, format!("{id}: size {n:?} is not a number"))
                })?),
            };
        let md5 = match cell(self.md5) {
            "" => None,
            m if m.len() == 32 && m.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(m.to_ascii_lowercase())
            }
            m => {
                return Err(bad_record(
                    sobject,
                    format!("{id}: Checksum {m:?} is not an MD5"),
                ));
            }
        };
        let modstamp = Some(cell(self.modstamp).to_owned()).filter(|m| !m.is_empty());
        let (content_document_id, parent_id) = match self.source {
            FileSource::ContentVersion => (parent, None),
            _ => (None, parent),
        };
        Ok(Some(FileMeta {
            id,
            content_document_id,
            parent_id,
            md5,
            size,
            modstamp,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(md5: Option<&str>, modstamp: Option<&str>, size: u64) -> FileMeta {
        FileMeta {
            id: "00P5g000000AbCdEAA".to_owned(),
            content_document_id: None,
            parent_id: None,
            md5: md5.map(str::to_owned),
            size: Some(size),
            modstamp: modstamp.map(str::to_owned),
        }
    }

    #[test]
    fn a_record_is_unchanged_by_checksum_or_else_by_modstamp_and_size() {
        let earlier = meta(Some("aa"), Some("t1"), 10).reference(
            FileSource::ContentVersion,
            "s".into(),
            10,
            "AA".into(),
        );
        assert!(meta(Some("AA"), Some("t2"), 10).unchanged_since(&earlier));
        assert!(!meta(Some("bb"), Some("t1"), 10).unchanged_since(&earlier));
        assert!(!meta(Some("aa"), Some("t1"), 11).unchanged_since(&earlier));
        assert!(meta(None, Some("t1"), 10).unchanged_since(&earlier));
        assert!(!meta(None, Some("t2"), 10).unchanged_since(&earlier));
        assert!(!meta(None, None, 10).unchanged_since(&earlier));
    }

    #[test]
    fn external_files_and_link_documents_have_no_body() {
        let headers = csv::StringRecord::from(vec![
            "Id",
            "ContentDocumentId",
            "Checksum",
            "ContentSize",
            "IsLatest",
            "ContentLocation",
            "SystemModstamp",
        ]);
        let columns = Columns::of(&headers, FileSource::ContentVersion).unwrap();
        let row = |location: &str| {
            csv::StringRecord::from(vec![
                "0685g000000AbCdEAA",
                "0695g000000AbCdEAA",
                "D41D8CD98F00B204E9800998ECF8427E",
                "0",
                "true",
                location,
                "2024-01-01T00:00:00.000+0000",
            ])
        };
        let parsed = columns.parse(&row("S")).unwrap().expect("internal");
        assert_eq!(
            parsed.md5.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(
            parsed.content_document_id.as_deref(),
            Some("0695g000000AbCdEAA")
        );
        assert!(columns.parse(&row("E")).unwrap().is_none());
        assert!(columns.parse(&row("L")).unwrap().is_none());
        let mut bad = row("S");
        bad = csv::StringRecord::from(
            bad.iter()
                .enumerate()
                .map(|(i, c)| if i == 0 { "../../x" } else { c })
                .collect::<Vec<_>>(),
        );
        assert!(matches!(
            columns.parse(&bad),
            Err(WorkerError::BadRecords { .. })
        ));

        let headers = csv::StringRecord::from(vec!["Id", "FolderId", "BodyLength", "Url"]);
        let columns = Columns::of(&headers, FileSource::Document).unwrap();
        let link = csv::StringRecord::from(vec![
            "0155g000000AbCdEAA",
            "00l5g000000AbCdEAA",
            "",
            "https://example.com",
        ]);
        assert!(columns.parse(&link).unwrap().is_none());
    }
}
