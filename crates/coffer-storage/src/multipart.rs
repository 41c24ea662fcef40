//! The streaming multipart writer.
//!
//! Coffer writes compressed CSV whose length is unknown until the end, so the writer buffers
//! bytes into parts of `part_size` (at least 5 MiB, S3's minimum for all but the last part) and
//! uploads each as a `Bytes` body, which the SDK can retry. At most `max_in_flight` parts upload
//! at once, so memory stays below `part_size * (max_in_flight + 1)` per object.
//!
//! Every part carries a Content-MD5 so the store rejects a corrupted part, and the writer keeps a
//! SHA-256 of the whole object, which the catalog records (an ETag is not a checksum for
//! multipart or SSE-KMS objects).
//!
//! Invariant: an upload always ends in Complete or Abort. Any error aborts before it is returned;
//! a writer dropped without `finish` or `abort` (a cancelled task) spawns the abort. What a
//! crashed process leaves behind is swept by the janitor.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use md5::{Digest as _, Md5};
use sha2::Sha256;
use tokio::task::JoinSet;

use crate::error::StorageError;
use crate::target::BucketTarget;

/// S3's minimum size of every part but the last.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// S3's maximum number of parts in one upload.
pub const MAX_PARTS: u32 = 10_000;

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
    /// Number of parts uploaded.
    pub parts: u32,
}

/// Options of one upload.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Bytes per part (raised to [`MIN_PART_SIZE`] if smaller).
    pub part_size: usize,
    /// Parts uploading concurrently.
    pub max_in_flight: usize,
    /// Content-Type of the object.
    pub content_type: String,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            part_size: 8 * 1024 * 1024,
            max_in_flight: 2,
            content_type: "application/octet-stream".to_owned(),
        }
    }
}

type PartResult = Result<CompletedPart, StorageError>;

/// A multipart upload in progress. See the module docs for its guarantees.
pub struct MultipartWriter {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
    options: UploadOptions,
    buffer: BytesMut,
    next_part: u32,
    done: Vec<CompletedPart>,
    in_flight: JoinSet<PartResult>,
    size: u64,
    sha256: Sha256,
}

impl MultipartWriter {
    /// Starts a multipart upload of `key` with the target's encryption.
    pub async fn create(
        client: &aws_sdk_s3::Client,
        target: &BucketTarget,
        key: impl Into<String>,
        mut options: UploadOptions,
    ) -> Result<Self, StorageError> {
        let key = key.into();
        options.part_size = options.part_size.max(MIN_PART_SIZE);
        options.max_in_flight = options.max_in_flight.max(1);
        let request = client
            .create_multipart_upload()
            .bucket(&target.bucket)
            .key(&key)
            .content_type(&options.content_type);
        let created = target
            .apply_to_multipart(request)
            .send()
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
        Ok(MultipartWriter {
            client: client.clone(),
            bucket: target.bucket.clone(),
            key,
            upload_id: Some(upload_id),
            buffer: BytesMut::with_capacity(options.part_size),
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

    /// Appends bytes; uploads a part whenever the buffer reaches the part size. On error the
    /// upload is aborted before the error is returned.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), StorageError> {
        self.sha256.update(data);
        self.size += data.len() as u64;
        while !data.is_empty() {
            let room = self.options.part_size - self.buffer.len();
            let (now, rest) = data.split_at(room.min(data.len()));
            self.buffer.extend_from_slice(now);
            data = rest;
            if self.buffer.len() == self.options.part_size {
                let part = self.buffer.split().freeze();
                if let Err(e) = self.start_part(part).await {
                    return Err(self.fail(e).await);
                }
            }
        }
        Ok(())
    }

    /// Uploads what is buffered, completes the upload and returns what was written. On error
    /// the upload is aborted before the error is returned.
    pub async fn finish(mut self) -> Result<UploadedObject, StorageError> {
        match self.finish_inner().await {
            Ok(obj) => Ok(obj),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Abandons the upload: the store discards every part.
    pub async fn abort(mut self) -> Result<(), StorageError> {
        self.in_flight.abort_all();
        self.abort_upload().await
    }

    async fn finish_inner(&mut self) -> Result<UploadedObject, StorageError> {
        // The last part may be smaller than the minimum, even empty for an empty object.
        if !self.buffer.is_empty() || self.next_part == 1 {
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
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .multipart_upload(parts)
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("CompleteMultipartUpload", &self.bucket, e))?;
        self.upload_id = None;
        let sha256_hex = hex::encode(std::mem::take(&mut self.sha256).finalize());
        tracing::debug!(bucket = %self.bucket, key = %self.key, size = self.size, "multipart upload completed");
        Ok(UploadedObject {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            size: self.size,
            sha256_hex,
            parts: self.done.len() as u32,
        })
    }

    /// Queues one part, first waiting for a slot when `max_in_flight` parts are uploading.
    async fn start_part(&mut self, body: Bytes) -> Result<(), StorageError> {
        if self.next_part > MAX_PARTS {
            return Err(StorageError::TooManyParts {
                key: self.key.clone(),
                part_size: self.options.part_size,
            });
        }
        while self.in_flight.len() >= self.options.max_in_flight {
            if let Some(joined) = self.in_flight.join_next().await {
                self.done.push(joined_part(joined)?);
            }
        }
        let request = PartRequest {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            upload_id: self.upload_id.clone().unwrap_or_default(),
            number: self.next_part,
            body,
        };
        self.next_part += 1;
        self.in_flight.spawn(request.send());
        Ok(())
    }

    /// Aborts after an error and returns the error (the abort's own failure is only logged:
    /// the janitor sweeps what is left).
    async fn fail(&mut self, error: StorageError) -> StorageError {
        self.in_flight.abort_all();
        if let Err(abort_error) = self.abort_upload().await {
            tracing::warn!(bucket = %self.bucket, key = %self.key, error = %abort_error, "abort of failed multipart upload failed; the janitor will sweep it");
        }
        error
    }

    async fn abort_upload(&mut self) -> Result<(), StorageError> {
        let Some(upload_id) = self.upload_id.take() else {
            return Ok(());
        };
        abort(&self.client, &self.bucket, &self.key, &upload_id).await
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
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key.clone());
        tracing::warn!(%bucket, %key, "multipart writer dropped unfinished; aborting the upload");
        runtime.spawn(async move {
            if let Err(e) = abort(&client, &bucket, &key, &upload_id).await {
                tracing::warn!(%bucket, %key, error = %e, "abort of dropped multipart upload failed");
            }
        });
    }
}

async fn abort(
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
        let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&self.body));
        let number = self.number as i32;
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
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag)
            .build())
    }
}
