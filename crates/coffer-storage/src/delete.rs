//! Deleting objects in batches of at most 1,000 keys (the DeleteObjects limit), with per-key
//! errors reported rather than ignored.

use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use crate::error::StorageError;

/// The DeleteObjects limit.
pub const MAX_KEYS_PER_DELETE: usize = 1000;

/// Deletes `keys` from `bucket`. A key that does not exist counts as deleted (as S3 reports).
/// Fails on the first batch with a per-key error, naming the key and the store's code.
pub async fn delete_keys(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    keys: &[String],
) -> Result<(), StorageError> {
    for batch in keys.chunks(MAX_KEYS_PER_DELETE) {
        let objects = batch
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StorageError::InvalidRequest {
                op: "DeleteObjects",
                detail: e.to_string(),
            })?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| StorageError::InvalidRequest {
                op: "DeleteObjects",
                detail: e.to_string(),
            })?;
        let out = client
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("DeleteObjects", bucket, e))?;
        if let Some(err) = out.errors().first() {
            let failure = crate::error::ServiceFailure {
                status: 0,
                code: err.code().unwrap_or("Unknown").to_owned(),
                message: format!(
                    "{} (key {:?})",
                    err.message().unwrap_or(""),
                    err.key().unwrap_or("")
                ),
            };
            return Err(StorageError::from_service("DeleteObjects", bucket, failure));
        }
    }
    Ok(())
}

/// Deletes one key with DeleteObject (a missing key counts as deleted).
pub async fn delete_key(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<(), StorageError> {
    client
        .delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| StorageError::from_sdk("DeleteObject", bucket, e))?;
    Ok(())
}
