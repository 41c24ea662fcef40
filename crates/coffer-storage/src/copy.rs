//! Server-side copies inside a bucket, created only if the destination is absent.
//!
//! [`copy_if_absent`] copies with `CopyObject` up to `single_copy_limit` (S3 allows 5 GiB) and
//! with `UploadPartCopy` ranges above it, re-encrypting with the target's encryption. The copy is
//! made with `If-None-Match: *`: an object already at the destination gives
//! [`StorageError::ObjectExists`]. A multipart copy always ends in Complete or Abort.

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::error::StorageError;
use crate::multipart::{MAX_PARTS, MIN_PART_SIZE, abort, create_multipart};
use crate::target::BucketTarget;

/// How to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOptions {
    /// Largest object copied with one `CopyObject` (at most S3's 5 GiB).
    pub single_copy_limit: u64,
    /// Range of each `UploadPartCopy` above that (raised so 10,000 parts cover the object).
    pub copy_part_size: u64,
}

/// Copies `from` to `to` (both keys in `target.bucket`, `size` bytes) unless `to` exists.
pub async fn copy_if_absent(
    client: &aws_sdk_s3::Client,
    target: &BucketTarget,
    from: &str,
    to: &str,
    size: u64,
    options: CopyOptions,
) -> Result<(), StorageError> {
    if size <= options.single_copy_limit {
        copy_single(client, target, from, to).await
    } else {
        copy_multipart(client, target, from, to, size, options.copy_part_size).await
    }
}

/// The size of the object at `key`, or `None` if there is none.
pub async fn object_size(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<u64>, StorageError> {
    match client.head_object().bucket(bucket).key(key).send().await {
        Ok(head) => Ok(Some(
            head.content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
        )),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
        Err(e) => Err(StorageError::from_sdk("HeadObject", bucket, e)),
    }
}

async fn copy_single(
    client: &aws_sdk_s3::Client,
    target: &BucketTarget,
    from: &str,
    to: &str,
) -> Result<(), StorageError> {
    let bucket = &target.bucket;
    let request = client
        .copy_object()
        .bucket(bucket)
        .key(to)
        .copy_source(format!("{bucket}/{from}"))
        .content_type("application/octet-stream")
        .if_none_match("*");
    Box::pin(target.apply_to_copy(request).send())
        .await
        .map_err(|e| StorageError::from_conditional_write("CopyObject", bucket, to, e))?;
    Ok(())
}

/// `UploadPartCopy` in ranges of `part_size`, completed with `If-None-Match: *`; aborted on any
/// error.
async fn copy_multipart(
    client: &aws_sdk_s3::Client,
    target: &BucketTarget,
    from: &str,
    to: &str,
    size: u64,
    part_size: u64,
) -> Result<(), StorageError> {
    let bucket = &target.bucket;
    let upload_id = create_multipart(client, target, to, "application/octet-stream").await?;
    let copied = copy_parts(client, bucket, from, to, size, part_size, &upload_id).await;
    if copied.is_err()
        && let Err(e) = abort(client, bucket, to, &upload_id).await
    {
        tracing::warn!(%bucket, key = %to, error = %e, "abort of a failed copy failed; the janitor will sweep it");
    }
    copied
}

async fn copy_parts(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    from: &str,
    to: &str,
    size: u64,
    part_size: u64,
    upload_id: &str,
) -> Result<(), StorageError> {
    let part_size = part_size
        .max(MIN_PART_SIZE as u64)
        .max(size.div_ceil(u64::from(MAX_PARTS)));
    let mut parts = Vec::new();
    let mut start = 0u64;
    let mut number = 1i32;
    while start < size {
        let end = (start + part_size).min(size) - 1;
        let out = client
            .upload_part_copy()
            .bucket(bucket)
            .key(to)
            .upload_id(upload_id)
            .part_number(number)
            .copy_source(format!("{bucket}/{from}"))
            .copy_source_range(format!("bytes={start}-{end}"))
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("UploadPartCopy", bucket, e))?;
        let e_tag = out
            .copy_part_result()
            .and_then(|r| r.e_tag())
            .map(str::to_owned);
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(e_tag)
                .build(),
        );
        start = end + 1;
        number += 1;
    }
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(to)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .if_none_match("*")
        .send()
        .await
        .map_err(|e| {
            StorageError::from_conditional_write("CompleteMultipartUpload", bucket, to, e)
        })?;
    Ok(())
}
