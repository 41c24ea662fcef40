//! Records parts: CSV rows -> gzip -> multipart upload, one bounded object per part.
//!
//! [`PartSink`] takes the rows of one sObject page by page. It writes them into the current
//! part's CSV (header first), compresses on a blocking thread so the async runtime never stalls
//! on gzip, streams the compressed bytes into the part's multipart upload, and closes the part
//! once `max_part_bytes` of CSV went in. The next row opens the next part
//! (`part-00002.csv.gz`, ...). Every closed part becomes a [`NewObject`] for the catalog.

use std::io::Write;
use std::sync::{Arc, Mutex};

use coffer_catalog::{NewObject, ObjectKind};
use coffer_core::layout::{Compression, OrgPrefix};
use coffer_core::{BackupId, SObjectName};
use coffer_storage::multipart::UploadOptions;
use coffer_storage::{BucketTarget, MultipartWriter, S3Client};
use csv::StringRecord;
use flate2::write::GzEncoder;

use crate::error::WorkerError;

/// Where and how parts of one sObject are written.
pub struct PartPlan {
    /// S3 client of the backup's storage.
    pub client: S3Client,
    /// Bucket and encryption.
    pub target: BucketTarget,
    /// The org's prefix in the bucket.
    pub prefix: OrgPrefix,
    /// The backup.
    pub backup_id: BackupId,
    /// The object whose records these are.
    pub sobject: SObjectName,
    /// Close a part after this many CSV bytes.
    pub max_part_bytes: usize,
    /// Multipart options.
    pub upload: UploadOptions,
    /// gzip level.
    pub gzip_level: u32,
}

/// Where the gzip encoder puts compressed bytes until they are handed to the upload.
#[derive(Clone, Default)]
struct Compressed(Arc<Mutex<Vec<u8>>>);

impl Compressed {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

impl Write for Compressed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut v = self
            .0
            .lock()
            .map_err(|_| std::io::Error::other("compressed buffer poisoned"))?;
        v.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The part being written.
struct OpenPart {
    number: u32,
    csv: csv::Writer<GzEncoder<Compressed>>,
    compressed: Compressed,
    upload: MultipartWriter,
    csv_bytes: usize,
    rows: u64,
}

/// Writes the records of one sObject as a sequence of parts.
pub struct PartSink {
    plan: PartPlan,
    header: StringRecord,
    open: Option<OpenPart>,
    next_number: u32,
    closed: Vec<NewObject>,
}

impl PartSink {
    /// A sink whose parts all start with `header`.
    pub fn new(plan: PartPlan, header: StringRecord) -> Self {
        PartSink {
            plan,
            header,
            open: None,
            next_number: 1,
            closed: Vec::new(),
        }
    }

    /// Appends rows, opening and closing parts as the size bound requires.
    pub async fn write_rows(&mut self, mut rows: Vec<StringRecord>) -> Result<(), WorkerError> {
        while !rows.is_empty() {
            let part = match self.open.take() {
                Some(part) => part,
                None => self.open_part().await?,
            };
            let (mut part, rest, full) = encode_rows(part, rows, self.plan.max_part_bytes).await?;
            rows = rest;
            drain_compressed(&mut part).await?;
            if full {
                self.close_part(part).await?;
            } else {
                self.open = Some(part);
            }
        }
        Ok(())
    }

    /// Closes the last part (writing a header-only part if the object had no rows at all) and
    /// returns every part written.
    pub async fn finish(mut self) -> Result<Vec<NewObject>, WorkerError> {
        let part = match self.open.take() {
            Some(part) => Some(part),
            None if self.closed.is_empty() => Some(self.open_part().await?),
            None => None,
        };
        if let Some(part) = part {
            self.close_part(part).await?;
        }
        Ok(self.closed)
    }

    async fn open_part(&mut self) -> Result<OpenPart, WorkerError> {
        let number = self.next_number;
        self.next_number += 1;
        let key = self.plan.prefix.records_part_key(
            &self.plan.backup_id,
            &self.plan.sobject,
            number,
            Compression::Gzip,
        );
        let upload = MultipartWriter::create(
            &self.plan.client,
            &self.plan.target,
            key,
            self.plan.upload.clone(),
        )
        .await?;
        let compressed = Compressed::default();
        let gzip = GzEncoder::new(
            compressed.clone(),
            flate2::Compression::new(self.plan.gzip_level),
        );
        let mut csv = csv::Writer::from_writer(gzip);
        csv.write_record(&self.header).map_err(|e| self.bad(e))?;
        Ok(OpenPart {
            number,
            csv,
            compressed,
            upload,
            csv_bytes: 0,
            rows: 0,
        })
    }

    async fn close_part(&mut self, part: OpenPart) -> Result<(), WorkerError> {
        let OpenPart {
            number,
            csv,
            compressed,
            mut upload,
            rows,
            ..
        } = part;
        tokio::task::spawn_blocking(move || finish_gzip(csv))
            .await
            .map_err(|e| WorkerError::Task(e.to_string()))??;
        upload.write(&compressed.take()).await?;
        let uploaded = upload.finish().await?;
        tracing::debug!(key = %uploaded.key, rows, bytes = uploaded.size, "records part written");
        self.closed.push(NewObject {
            key: uploaded.key,
            kind: ObjectKind::Records,
            sobject: Some(self.plan.sobject.to_string()),
            part: Some(number),
            size: uploaded.size,
            sha256: uploaded.sha256_hex,
            rows,
        });
        Ok(())
    }

    fn bad(&self, e: impl std::fmt::Display) -> WorkerError {
        WorkerError::BadRecords {
            sobject: self.plan.sobject.to_string(),
            detail: e.to_string(),
        }
    }
}

/// Writes rows into the part's CSV on a blocking thread until the rows run out or the part is
/// full. Returns the part, the rows left over and whether the part is full.
async fn encode_rows(
    part: OpenPart,
    rows: Vec<StringRecord>,
    max_part_bytes: usize,
) -> Result<(OpenPart, Vec<StringRecord>, bool), WorkerError> {
    tokio::task::spawn_blocking(move || {
        let mut part = part;
        let mut rows = rows.into_iter();
        let mut full = false;
        for row in rows.by_ref() {
            part.csv
                .write_record(&row)
                .map_err(|e| WorkerError::Task(format!("csv encoding: {e}")))?;
            part.csv_bytes += row.as_byte_record().as_slice().len() + row.len();
            part.rows += 1;
            if part.csv_bytes >= max_part_bytes {
                full = true;
                break;
            }
        }
        part.csv
            .flush()
            .map_err(|e| WorkerError::Task(format!("csv flush: {e}")))?;
        Ok((part, rows.collect(), full))
    })
    .await
    .map_err(|e| WorkerError::Task(e.to_string()))?
}

/// Moves the compressed bytes produced so far into the part's upload.
async fn drain_compressed(part: &mut OpenPart) -> Result<(), WorkerError> {
    let compressed = part.compressed.take();
    if !compressed.is_empty() {
        part.upload.write(&compressed).await?;
    }
    Ok(())
}

/// Flushes the CSV writer and finishes the gzip stream (the trailer lands in the buffer).
fn finish_gzip(csv: csv::Writer<GzEncoder<Compressed>>) -> Result<(), WorkerError> {
    let gzip = csv
        .into_inner()
        .map_err(|e| WorkerError::Task(format!("csv flush: {e}")))?;
    gzip.finish()
        .map_err(|e| WorkerError::Task(format!("gzip finish: {e}")))?;
    Ok(())
}
