//! The streaming object writer.
//!
//! Coffer writes compressed CSV whose length is unknown until the end, so the writer buffers
//! bytes into parts and uploads each as a `Bytes` body, which the SDK can retry. An object that
//! ends before its first part is full goes up in one `PutObject`; a larger one becomes a
//! multipart upload, created when the first part fills. At most `max_in_flight` parts upload at
//! once, so memory stays below `part_size * (max_in_flight + 1)` per object.
//!
//! Part sizes: at least 5 MiB (S3's minimum for all but the last part), raised so that 10,000
//! parts (S3's maximum) cover `expected_size` when the caller knows it; when it does not, the
//! part size doubles every 1,000 parts, so 10,000 parts cover more than S3's 5 TiB object limit
//! while small and medium objects keep small parts.
//!
//! Every request carries a Content-MD5 so the store rejects a corrupted body, and the writer keeps
//! a SHA-256 of the whole object, which the catalog records (an ETag is not a checksum for
//! multipart or SSE-KMS objects). Unless `overwrite` is set, the object is created with
//! `If-None-Match: *`: a retried job never silently replaces an object already at its key, it
//! gets [`StorageError::ObjectExists`] and decides.
//!
//! Invariant: an upload always ends in Complete or Abort. Any error aborts before it is returned;
//! a writer dropped without `finish` or `abort` (a cancelled task) spawns the abort. What a
//! crashed process leaves behind is swept by the janitor.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use md5::{Digest as _, Md5};
use sha2::Sha256;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::error::StorageError;
use crate::target::BucketTarget;

/// S3's minimum size of every part but the last.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// S3's maximum size of one part.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;

/// S3's maximum number of parts in one upload.
pub const MAX_PARTS: u32 = 10_000;

/// Without a size hint, the part size doubles after this many parts.
const PARTS_PER_TIER: u32 = 1_000;

/// What a finished upload wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedObject {
    /// Bucket the object is in.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the object's bytes, lowercase hex.
    pub sha256_hex: String,
    /// Number of parts uploaded (1 for a single `PutObject`).
    pub parts: u32,
}

/// Options of one upload.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Bytes per part (raised to [`MIN_PART_SIZE`] if smaller, and to what `expected_size`
    /// needs); also the size up to which an object takes a single `PutObject`.
    pub part_size: usize,
    /// Parts uploading concurrently.
    pub max_in_flight: usize,
    /// Content-Type of the object.
    pub content_type: String,
    /// The object's size if known in advance; the part size is raised so that 10,000 parts
    /// cover it.
    pub expected_size: Option<u64>,
    /// Replace an object already at the key. Off by default: the object is created with
    /// `If-None-Match: *` and an existing one gives [`StorageError::ObjectExists`].
    pub overwrite: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            part_size: 8 * 1024 * 1024,
            max_in_flight: 2,
            content_type: "application/octet-stream".to_owned(),
            expected_size: None,
            overwrite: false,
        }
    }
}

/// The size of part `number` (1-based) for a base part size: the base for the first 1,000
/// parts, then doubling every 1,000 parts, never above S3's 5 GiB.
pub fn part_size_for(base: usize, number: u32) -> usize {
    let tier = (number.saturating_sub(1) / PARTS_PER_TIER).min(20);
    base.saturating_mul(1 << tier).min(MAX_PART_SIZE)
}

/// The base part size for `options`: at least [`MIN_PART_SIZE`], and large enough that
/// [`MAX_PARTS`] parts of it hold `expected_size`.
pub fn base_part_size(options: &UploadOptions) -> usize {
    let needed = options.expected_size.map_or(0, |size| {
        let per_part = size.div_ceil(u64::from(MAX_PARTS));
        usize::try_from(per_part).unwrap_or(MAX_PART_SIZE)
    });
    options
        .part_size
        .max(MIN_PART_SIZE)
        .max(needed)
        .min(MAX_PART_SIZE)
}

type PartResult = Result<CompletedPart, StorageError>;

/// An object upload in progress. See the module docs for its guarantees.
pub struct MultipartWriter {
    client: aws_sdk_s3::Client,
    target: BucketTarget,
    key: String,
    upload_id: Option<String>,
    options: UploadOptions,
    base_part_size: usize,
    buffer: BytesMut,
    next_part: u32,
    done: Vec<CompletedPart>,
    in_flight: JoinSet<PartResult>,
    size: u64,
    sha256: Sha256,
}

impl MultipartWriter {
    /// Prepares the upload of `key` with the target's encryption. Nothing is sent until the
    /// first part is full or [`MultipartWriter::finish`] is called.
    pub async fn create(
        client: &aws_sdk_s3::Client,
        target: &BucketTarget,
        key: impl Into<String>,
        mut options: UploadOptions,
    ) -> Result<Self, StorageError> {
        options.max_in_flight = options.max_in_flight.max(1);
        let base_part_size = base_part_size(&options);
        Ok(MultipartWriter {
            client: client.clone(),
            target: target.clone(),
            key: key.into(),
            upload_id: None,
            buffer: BytesMut::with_capacity(base_part_size),
            base_part_size,
            options,
            next_part: 1,
            done: Vec::new(),
            in_flight: JoinSet::new(),
            size: 0,
            sha256: Sha256::new(),
        })
    }

    /// The key being written.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes accepted so far.
    pub fn bytes_written(&self) -> u64 {
        self.size
    }

    /// The size the part being filled will have.
    fn current_part_size(&self) -> usize {
        part_size_for(self.base_part_size, self.next_part)
    }

    /// Appends bytes; uploads a part whenever the buffer reaches the part size. On error the
    /// upload is aborted before the error is returned.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), StorageError> {
        self.sha256.update(data);
        self.size += data.len() as u64;
        while !data.is_empty() {
            let part_size = self.current_part_size();
            let room = part_size - self.buffer.len();
            let (now, rest) = data.split_at(room.min(data.len()));
            self.buffer.extend_from_slice(now);
            data = rest;
            if self.buffer.len() == part_size
                && let Err(e) = self.flush_part().await
            {
                return Err(self.fail(e).await);
            }
        }
        Ok(())
    }

    /// Uploads what is buffered, completes the upload and returns what was written. On error
    /// the upload is aborted before the error is returned.
    pub async fn finish(mut self) -> Result<UploadedObject, StorageError> {
        if self.upload_id.is_none() {
            return self.put_single().await;
        }
        match self.finish_multipart().await {
            Ok(obj) => Ok(obj),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Abandons the upload: the store discards every part.
    pub async fn abort(mut self) -> Result<(), StorageError> {
        self.in_flight.abort_all();
        self.abort_upload().await
    }

    /// Sends the full buffer as the next part, creating the multipart upload first if needed.
    async fn flush_part(&mut self) -> Result<(), StorageError> {
        if self.upload_id.is_none() {
            self.create_upload().await?;
        }
        let part = self.buffer.split().freeze();
        self.start_part(part).await?;
        self.buffer.reserve(self.current_part_size());
        Ok(())
    }

    async fn create_upload(&mut self) -> Result<(), StorageError> {
        let upload_id = create_multipart(
            &self.client,
            &self.target,
            &self.key,
            &self.options.content_type,
        )
        .await?;
        self.upload_id = Some(upload_id);
        Ok(())
    }

    /// The whole object in one `PutObject` (it never filled a part).
    async fn put_single(&mut self) -> Result<UploadedObject, StorageError> {
        let body = self.buffer.split().freeze();
        let mut request = self
            .client
            .put_object()
            .bucket(&self.target.bucket)
            .key(&self.key)
            .content_type(&self.options.content_type)
            .content_md5(content_md5(&body))
            .body(ByteStream::from(body));
        if !self.options.overwrite {
            request = request.if_none_match("*");
        }
        let span = tracing::info_span!("s3.put_object", bucket = %self.target.bucket, key = %self.key, size = self.size);
        Box::pin(self.target.apply_to_put(request).send())
            .instrument(span)
            .await
            .map_err(|e| self.write_error("PutObject", e))?;
        count_uploaded(self.size);
        tracing::debug!(bucket = %self.target.bucket, key = %self.key, size = self.size, "object written in one put");
        Ok(self.uploaded(1))
    }

    async fn finish_multipart(&mut self) -> Result<UploadedObject, StorageError> {
        if !self.buffer.is_empty() {
            let part = self.buffer.split().freeze();
            self.start_part(part).await?;
        }
        while let Some(joined) = self.in_flight.join_next().await {
            self.done.push(joined_part(joined)?);
        }
        self.complete().await
    }

    async fn complete(&mut self) -> Result<UploadedObject, StorageError> {
        let upload_id = self.upload_id.clone().unwrap_or_default();
        self.done.sort_by_key(|p| p.part_number());
        let parts = CompletedMultipartUpload::builder()
            .set_parts(Some(self.done.clone()))
            .build();
        let mut request = self
            .client
            .complete_multipart_upload()
            .bucket(&self.target.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .multipart_upload(parts);
        if !self.options.overwrite {
            request = request.if_none_match("*");
        }
        let span = tracing::info_span!("s3.complete_multipart_upload", bucket = %self.target.bucket, key = %self.key, size = self.size, parts = self.done.len());
        Box::pin(request.send())
            .instrument(span)
            .await
            .map_err(|e| self.write_error("CompleteMultipartUpload", e))?;
        self.upload_id = None;
        tracing::debug!(bucket = %self.target.bucket, key = %self.key, size = self.size, "multipart upload completed");
        Ok(self.uploaded(self.done.len() as u32))
    }

    /// Classifies a failed write; a failed `If-None-Match` becomes [`StorageError::ObjectExists`].
    fn write_error<E>(&self, op: &'static str, err: SdkError<E, HttpResponse>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        StorageError::from_conditional_write(op, &self.target.bucket, &self.key, err)
    }

    fn uploaded(&mut self, parts: u32) -> UploadedObject {
        UploadedObject {
            bucket: self.target.bucket.clone(),
            key: self.key.clone(),
            size: self.size,
            sha256_hex: hex::encode(std::mem::take(&mut self.sha256).finalize()),
            parts,
        }
    }

    /// Queues one part, first waiting for a slot when `max_in_flight` parts are uploading.
    async fn start_part(&mut self, body: Bytes) -> Result<(), StorageError> {
        if self.next_part > MAX_PARTS {
            return Err(StorageError::TooManyParts {
                key: self.key.clone(),
                part_size: self.base_part_size,
            });
        }
        while self.in_flight.len() >= self.options.max_in_flight {
            if let Some(joined) = self.in_flight.join_next().await {
                self.done.push(joined_part(joined)?);
            }
        }
        let request = PartRequest {
            client: self.client.clone(),
            bucket: self.target.bucket.clone(),
            key: self.key.clone(),
            upload_id: self.upload_id.clone().unwrap_or_default(),
            number: self.next_part,
            body,
        };
        let span = tracing::info_span!("s3.upload_part", bucket = %self.target.bucket, key = %self.key, part = self.next_part);
        self.next_part += 1;
        self.in_flight.spawn(request.send().instrument(span));
        Ok(())
    }

    /// Aborts after an error and returns the error (the abort's own failure is only logged:
    /// the janitor sweeps what is left).
    async fn fail(&mut self, error: StorageError) -> StorageError {
        self.in_flight.abort_all();
        if let Err(abort_error) = self.abort_upload().await {
            tracing::warn!(bucket = %self.target.bucket, key = %self.key, error = %abort_error, "abort of failed multipart upload failed; the janitor will sweep it");
        }
        error
    }

    async fn abort_upload(&mut self) -> Result<(), StorageError> {
        let Some(upload_id) = self.upload_id.take() else {
            return Ok(());
        };
        abort(&self.client, &self.target.bucket, &self.key, &upload_id).await
    }
}

impl Drop for MultipartWriter {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, bucket, key) = (
            self.client.clone(),
            self.target.bucket.clone(),
            self.key.clone(),
        );
        tracing::warn!(%bucket, %key, "multipart writer dropped unfinished; aborting the upload");
        runtime.spawn(async move {
            if let Err(e) = abort(&client, &bucket, &key, &upload_id).await {
                tracing::warn!(%bucket, %key, error = %e, "abort of dropped multipart upload failed");
            }
        });
    }
}

/// Counts one part (or single PUT) the store accepted, and its bytes.
fn count_uploaded(bytes: u64) {
    metrics::counter!(coffer_core::metrics::UPLOAD_PARTS_TOTAL).increment(1);
    metrics::counter!(coffer_core::metrics::BYTES_UPLOADED_TOTAL).increment(bytes);
}

/// The base64 MD5 of a body, for `Content-MD5`.
fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(body))
}

/// Starts a multipart upload of `key` with the target's encryption; returns its upload id.
pub(crate) async fn create_multipart(
    client: &aws_sdk_s3::Client,
    target: &BucketTarget,
    key: &str,
    content_type: &str,
) -> Result<String, StorageError> {
    let request = client
        .create_multipart_upload()
        .bucket(&target.bucket)
        .key(key)
        .content_type(content_type);
    let span = tracing::info_span!("s3.create_multipart_upload", bucket = %target.bucket, %key);
    let created = Box::pin(target.apply_to_multipart(request).send())
        .instrument(span)
        .await
        .map_err(|e| StorageError::from_sdk("CreateMultipartUpload", &target.bucket, e))?;
    let upload_id =
        created
            .upload_id()
            .map(str::to_owned)
            .ok_or_else(|| StorageError::InvalidRequest {
                op: "CreateMultipartUpload",
                detail: "the store returned no upload id".to_owned(),
            })?;
    tracing::debug!(bucket = %target.bucket, %key, "multipart upload started");
    Ok(upload_id)
}

/// Aborts every multipart upload in progress under `prefix` (what a killed process left: its
/// writer never got to Complete or Abort); returns how many. Only for prefixes no live writer
/// uses, such as a task's own keys under its lease. A bucket that refuses the listing
/// (`s3:ListBucketMultipartUploads` missing from the customer's policy) is not a reason to fail
/// a backup: the refusal is logged with the missing permission, and what is left is swept by
/// the bucket's lifecycle rule.
pub async fn abort_open_uploads(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<usize, StorageError> {
    abort_open_uploads_of(client, bucket, prefix, |_| true).await
}

/// [`abort_open_uploads`] for the uploads under `prefix` whose key `of` accepts (one slice's
/// parts, while other slices of the object may be uploading).
pub async fn abort_open_uploads_of(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    of: impl Fn(&str) -> bool,
) -> Result<usize, StorageError> {
    let open = match crate::list::list_open_uploads(client, bucket, prefix).await {
        Ok(open) => open,
        Err(e @ StorageError::AccessDenied { .. }) => {
            tracing::warn!(%bucket, %prefix, error = %e, "cannot list the uploads a killed attempt may have left; grant s3:ListBucketMultipartUploads on the bucket");
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    let open: Vec<_> = open.into_iter().filter(|u| of(&u.key)).collect();
    for upload in &open {
        abort(client, bucket, &upload.key, &upload.upload_id).await?;
    }
    if !open.is_empty() {
        tracing::info!(%bucket, %prefix, count = open.len(), "aborted multipart uploads a killed attempt left");
    }
    Ok(open.len())
}

/// Aborts a multipart upload: the store discards its parts.
pub(crate) async fn abort(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<(), StorageError> {
    client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
        .map_err(|e| StorageError::from_sdk("AbortMultipartUpload", bucket, e))?;
    tracing::debug!(%bucket, %key, "multipart upload aborted");
    Ok(())
}

fn joined_part(joined: Result<PartResult, tokio::task::JoinError>) -> PartResult {
    joined.map_err(|e| StorageError::Transient {
        op: "UploadPart",
        detail: format!("part upload task failed: {e}"),
    })?
}

/// One UploadPart call, owned so it can run on its own task.
struct PartRequest {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: String,
    number: u32,
    body: Bytes,
}

impl PartRequest {
    async fn send(self) -> PartResult {
        let md5 = content_md5(&self.body);
        let number = self.number as i32;
        let size = self.body.len() as u64;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .content_md5(md5)
            .body(ByteStream::from(self.body))
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("UploadPart", &self.bucket, e))?;
        count_uploaded(size);
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag)
            .build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn parts_never_fall_below_the_s3_minimum() {
        let options = UploadOptions {
            part_size: 1,
            ..UploadOptions::default()
        };
        assert_eq!(base_part_size(&options), MIN_PART_SIZE);
    }

    #[test]
    fn a_known_size_gets_parts_large_enough_for_ten_thousand_to_cover_it() {
        let size = 200 * 1024 * MIB as u64; // 200 GiB
        let options = UploadOptions {
            expected_size: Some(size),
            ..UploadOptions::default()
        };
        let base = base_part_size(&options);
        assert!(base as u64 * u64::from(MAX_PARTS) >= size);
        assert!(base < 21 * MIB, "not needlessly large: {base}");
        let small = UploadOptions {
            expected_size: Some(10 * MIB as u64),
            ..UploadOptions::default()
        };
        assert_eq!(base_part_size(&small), 8 * MIB, "the configured size wins");
    }

    #[test]
    fn without_a_hint_ten_thousand_growing_parts_cover_five_tebibytes() {
        let base = 8 * MIB;
        assert_eq!(part_size_for(base, 1), base);
        assert_eq!(part_size_for(base, 1000), base);
        assert_eq!(part_size_for(base, 1001), 2 * base);
        let total: u64 = (1..=MAX_PARTS).map(|n| part_size_for(base, n) as u64).sum();
        assert!(total >= 5 * 1024 * 1024 * MIB as u64, "{total}");
        assert!((1..=MAX_PARTS).all(|n| part_size_for(base, n) <= MAX_PART_SIZE));
    }
}
