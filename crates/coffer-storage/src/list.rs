//! Listing what a prefix holds: its objects, page by page (ListObjectsV2 continuation tokens),
//! every version and delete marker of a versioned bucket (ListObjectVersions key and version-id
//! markers), and the multipart uploads still in progress (ListMultipartUploads markers), which
//! [`abort_upload`] discards. [`versioning_on`] tells whether a bucket may hold old versions.

use aws_smithy_types::DateTime;
use time::OffsetDateTime;

use crate::delete::ObjectVersion;
use crate::error::StorageError;

/// An object under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, as the store reports it.
    pub last_modified: Option<OffsetDateTime>,
}

/// Every key under `prefix` in `bucket`, in the store's (lexicographic) order.
pub async fn list_keys(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, StorageError> {
    let objects = list_objects(client, bucket, prefix).await?;
    Ok(objects.into_iter().map(|o| o.key).collect())
}

/// Every object under `prefix` in `bucket`, with its size and time, in the store's
/// (lexicographic) order.
pub async fn list_objects(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<ListedObject>, StorageError> {
    let mut objects = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| StorageError::from_sdk("ListObjectsV2", bucket, e))?;
        objects.extend(page.contents().iter().filter_map(|o| {
            Some(ListedObject {
                key: o.key()?.to_owned(),
                size: o.size().unwrap_or(0).try_into().unwrap_or(0),
                last_modified: o.last_modified().and_then(to_offset),
            })
        }));
    }
    Ok(objects)
}

/// Every version and every delete marker under `prefix` in `bucket`, each with its version id
/// (`null` for an object written before versioning was enabled, or on a bucket without it).
pub async fn list_versions(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<ObjectVersion>, StorageError> {
    let mut versions = Vec::new();
    let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let page = client
            .list_object_versions()
            .bucket(bucket)
            .prefix(prefix)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(id_marker.take())
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("ListObjectVersions", bucket, e))?;
        let found = page.versions().iter().map(|v| (v.key(), v.version_id()));
        let markers = page
            .delete_markers()
            .iter()
            .map(|m| (m.key(), m.version_id()));
        versions.extend(found.chain(markers).filter_map(|(key, id)| {
            Some(ObjectVersion {
                key: key?.to_owned(),
                version_id: id.map(str::to_owned),
            })
        }));
        key_marker = page.next_key_marker().map(str::to_owned);
        id_marker = page.next_version_id_marker().map(str::to_owned);
        if !page.is_truncated().unwrap_or(false) || key_marker.is_none() {
            return Ok(versions);
        }
    }
}

/// Whether versioning was ever turned on for `bucket` (Enabled or Suspended), so that old
/// versions and delete markers may exist. A status this SDK does not know counts as on.
pub async fn versioning_on(
    client: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<bool, StorageError> {
    let out = client
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| StorageError::from_sdk("GetBucketVersioning", bucket, e))?;
    Ok(out.status().is_some())
}

/// A multipart upload in progress: started, neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    /// The key it would create.
    pub key: String,
    /// Its upload id.
    pub upload_id: String,
    /// When it was started, as the store reports it.
    pub initiated: Option<OffsetDateTime>,
}

/// Every multipart upload in progress under `prefix` in `bucket`.
pub async fn list_open_uploads(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<OpenUpload>, StorageError> {
    let mut uploads = Vec::new();
    let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let page = client
            .list_multipart_uploads()
            .bucket(bucket)
            .prefix(prefix)
            .set_key_marker(key_marker.take())
            .set_upload_id_marker(id_marker.take())
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("ListMultipartUploads", bucket, e))?;
        uploads.extend(page.uploads().iter().filter_map(|u| {
            Some(OpenUpload {
                key: u.key()?.to_owned(),
                upload_id: u.upload_id()?.to_owned(),
                initiated: u.initiated().and_then(to_offset),
            })
        }));
        if !page.is_truncated().unwrap_or(false) {
            return Ok(uploads);
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        id_marker = page.next_upload_id_marker().map(str::to_owned);
        if key_marker.is_none() && id_marker.is_none() {
            return Ok(uploads);
        }
    }
}

/// Aborts `upload`: the store discards its parts. An upload already gone (completed, aborted,
/// or expired: `NoSuchUpload`) counts as aborted.
pub async fn abort_upload(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    upload: &OpenUpload,
) -> Result<(), StorageError> {
    match crate::multipart::abort(client, bucket, &upload.key, &upload.upload_id).await {
        Err(StorageError::Refused { code, .. }) if code == "NoSuchUpload" => Ok(()),
        other => other,
    }
}

/// The SDK's time as an `OffsetDateTime` (None if out of `time`'s range).
fn to_offset(at: &DateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(at.as_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_times_convert_to_the_same_instant() {
        let at = DateTime::from_secs_and_nanos(1_767_225_600, 250_000_000);
        let converted = to_offset(&at).expect("in range");
        assert_eq!(converted.unix_timestamp(), 1_767_225_600);
        assert_eq!(converted.millisecond(), 250);
        let before_epoch = DateTime::from_secs_and_nanos(-1, 500_000_000);
        let converted = to_offset(&before_epoch).expect("in range");
        assert_eq!(converted.unix_timestamp_nanos(), -500_000_000);
    }
}
