//! Listing the keys under a prefix, page by page (ListObjectsV2 continuation tokens), and the
//! multipart uploads still in progress under a prefix (ListMultipartUploads markers).

use crate::error::StorageError;

/// Every key under `prefix` in `bucket`, in the store's (lexicographic) order.
pub async fn list_keys(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, StorageError> {
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| StorageError::from_sdk("ListObjectsV2", bucket, e))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    Ok(keys)
}

/// A multipart upload in progress: started, neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    /// The key it would create.
    pub key: String,
    /// Its upload id.
    pub upload_id: String,
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
