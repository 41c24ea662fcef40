//! Records parts: CSV rows -> gzip (or zstd) -> multipart upload, one bounded object per part.
//!
//! [`PartSink`] takes the rows of one sObject page by page. It writes them into the current
//! part's CSV (header first), compresses on a blocking thread so the async runtime never stalls
//! on compression, streams the compressed bytes into the part's multipart upload, and closes the part
//! once `max_part_bytes` of CSV went in. The next row opens the next part
//! (`part-00002.csv.gz`, ...). Every closed part becomes a [`NewObject`] for the catalog.
//! With a [`RowIndex`], every row written is also indexed (part, row, links) and the index
//! handed to its [`IndexWriter`] in batches.

use std::io::Write;
use std::sync::{Arc, Mutex};

use coffer_catalog::{NewObject, ObjectKind};
use coffer_core::layout::{Compression, OrgPrefix};
use coffer_core::{BackupId, SObjectName};
use coffer_storage::multipart::UploadOptions;
use coffer_storage::{BucketTarget, MultipartWriter, S3Client};
use csv::StringRecord;
use flate2::write::GzEncoder;

use super::index::{IndexWriter, RowIndex};
use crate::error::WorkerError;
use coffer_catalog::records::INDEX_BATCH_ROWS;

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
    /// The part numbers this sink may use (its task's slice).
    pub parts: std::ops::RangeInclusive<u32>,
    /// Close a part after this many CSV bytes.
    pub max_part_bytes: usize,
    /// Multipart options.
    pub upload: UploadOptions,
    /// gzip or zstd.
    pub compression: Compression,
    /// Compression level (gzip 1-9, zstd 1-22).
    pub level: i32,
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

/// A part's compressor, writing into its [`Compressed`] buffer.
enum Encoder {
    Gzip(GzEncoder<Compressed>),
    Zstd(zstd::stream::write::Encoder<'static, Compressed>),
}

impl Encoder {
    fn new(compression: Compression, level: i32, out: Compressed) -> std::io::Result<Self> {
        Ok(match compression {
            Compression::Gzip => {
                let level = flate2::Compression::new(level.clamp(1, 9) as u32);
                Encoder::Gzip(GzEncoder::new(out, level))
            }
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(out, level)?),
        })
    }

    /// Ends the stream (its trailer lands in the buffer).
    fn finish(self) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.finish().map(drop),
            Encoder::Zstd(e) => e.finish().map(drop),
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// The part being written.
struct OpenPart {
    number: u32,
    csv: csv::Writer<Encoder>,
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
    index: Option<RowIndex>,
    index_writer: Option<IndexWriter>,
}

/// What a sink wrote.
#[derive(Debug)]
pub struct Written {
    /// Every part, in order.
    pub parts: Vec<NewObject>,
    /// The greatest `(SystemModstamp, Id)` indexed, when indexing.
    pub cursor: Option<coffer_salesforce::Cursor>,
}

impl PartSink {
    /// A sink whose parts all start with `header`.
    pub fn new(plan: PartPlan, header: StringRecord) -> Self {
        PartSink {
            next_number: *plan.parts.start(),
            plan,
            header,
            open: None,
            closed: Vec::new(),
            index: None,
            index_writer: None,
        }
    }

    /// Indexes every row written with `index`, written out by `writer`.
    pub fn with_index(mut self, index: RowIndex, writer: IndexWriter) -> Self {
        self.index = Some(index);
        self.index_writer = Some(writer);
        self
    }

    /// Appends rows, opening and closing parts as the size bound requires.
    pub async fn write_rows(&mut self, mut rows: Vec<StringRecord>) -> Result<(), WorkerError> {
        while !rows.is_empty() {
            let part = match self.open.take() {
                Some(part) => part,
                None => self.open_part().await?,
            };
            let (mut part, rest, full, index) =
                encode_rows(part, rows, self.plan.max_part_bytes, self.index.take()).await?;
            rows = rest;
            self.index = index;
            self.send_index(INDEX_BATCH_ROWS).await?;
            drain_compressed(&mut part).await?;
            if full {
                self.close_part(part).await?;
            } else {
                self.open = Some(part);
            }
        }
        Ok(())
    }

    /// Sends the index rows gathered so far, once there are at least `min`.
    async fn send_index(&mut self, min: usize) -> Result<(), WorkerError> {
        if let (Some(index), Some(writer)) = (self.index.as_mut(), self.index_writer.as_mut())
            && let Some(batch) = index.take_batch(min)
        {
            writer.send(batch).await?;
        }
        Ok(())
    }

    /// Closes the last part (writing a header-only part if the object had no rows at all),
    /// waits for the index to be written, and returns every part written.
    pub async fn finish(mut self) -> Result<Written, WorkerError> {
        let part = match self.open.take() {
            Some(part) => Some(part),
            None if self.closed.is_empty() => Some(self.open_part().await?),
            None => None,
        };
        if let Some(part) = part {
            self.close_part(part).await?;
        }
        self.send_index(1).await?;
        if let Some(writer) = self.index_writer.take() {
            writer.finish().await?;
        }
        let cursor = self.index.as_ref().and_then(|i| i.cursor().cloned());
        Ok(Written {
            parts: self.closed,
            cursor,
        })
    }

    /// Starts the index's cursor at `cursor` (what an incremental read that finds nothing keeps).
    pub fn start_cursor_from(&mut self, cursor: Option<coffer_salesforce::Cursor>) {
        if let Some(index) = self.index.as_mut() {
            index.start_from(cursor);
        }
    }

    async fn open_part(&mut self) -> Result<OpenPart, WorkerError> {
        let number = self.next_number;
        if !self.plan.parts.contains(&number) {
            return Err(WorkerError::Task(format!(
                "{}: the slice needs more than {} parts; raise max_part_bytes or slice the object finer",
                self.plan.sobject,
                self.plan.parts.clone().count()
            )));
        }
        self.next_number += 1;
        let key = self.plan.prefix.records_part_key(
            &self.plan.backup_id,
            &self.plan.sobject,
            number,
            self.plan.compression,
        );
        let upload = MultipartWriter::create(
            &self.plan.client,
            &self.plan.target,
            key,
            self.plan.upload.clone(),
        )
        .await?;
        let compressed = Compressed::default();
        let encoder = Encoder::new(self.plan.compression, self.plan.level, compressed.clone())
            .map_err(|e| self.bad(e))?;
        let mut csv = csv::Writer::from_writer(encoder);
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
        tokio::task::spawn_blocking(move || finish_compression(csv))
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

/// What [`encode_rows`] gives back: the part, the rows left over, whether the part is full,
/// and the index.
type Encoded = (OpenPart, Vec<StringRecord>, bool, Option<RowIndex>);

/// Writes rows into the part's CSV (indexing each) on a blocking thread until the rows run out
/// or the part is full.
async fn encode_rows(
    part: OpenPart,
    rows: Vec<StringRecord>,
    max_part_bytes: usize,
    index: Option<RowIndex>,
) -> Result<Encoded, WorkerError> {
    tokio::task::spawn_blocking(move || {
        let mut part = part;
        let mut index = index;
        let mut rows = rows.into_iter();
        let mut full = false;
        for row in rows.by_ref() {
            part.csv
                .write_record(&row)
                .map_err(|e| WorkerError::Task(format!("csv encoding: {e}")))?;
            part.csv_bytes += row.as_byte_record().as_slice().len() + row.len();
            part.rows += 1;
            if let Some(index) = index.as_mut() {
                let row_no = u32::try_from(part.rows).unwrap_or(u32::MAX);
                // The same rows come back on a retry: a row that cannot be indexed is bad data
                // from Salesforce (permanent), not a transient failure.
                index.observe(part.number, row_no, &row).map_err(|detail| {
                    WorkerError::BadRecords {
                        sobject: index.sobject().to_owned(),
                        detail,
                    }
                })?;
            }
            if part.csv_bytes >= max_part_bytes {
                full = true;
                break;
            }
        }
        part.csv
            .flush()
            .map_err(|e| WorkerError::Task(format!("csv flush: {e}")))?;
        Ok((part, rows.collect(), full, index))
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

/// Flushes the CSV writer and finishes the compressed stream (the trailer lands in the buffer).
fn finish_compression(csv: csv::Writer<Encoder>) -> Result<(), WorkerError> {
    let encoder = csv
        .into_inner()
        .map_err(|e| WorkerError::Task(format!("csv flush: {e}")))?;
    encoder
        .finish()
        .map_err(|e| WorkerError::Task(format!("compression finish: {e}")))?;
    Ok(())
}
