//! Creating buckets and KMS keys.
//!
//! Used by `coffer demo` and the tests to stand in for the customer's (or the vendor's)
//! infrastructure. Both calls are idempotent where S3 and KMS allow it.

use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

use crate::error::StorageError;

/// Creates `bucket` in `region` unless the caller already owns it.
pub async fn ensure_bucket(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    region: &str,
) -> Result<(), StorageError> {
    let mut request = client.create_bucket().bucket(bucket);
    if region != "us-east-1" {
        let config = CreateBucketConfiguration::builder()
            .location_constraint(BucketLocationConstraint::from(region))
            .build();
        request = request.create_bucket_configuration(config);
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let owned = e
                .as_service_error()
                .is_some_and(|se| se.is_bucket_already_owned_by_you());
            if owned {
                Ok(())
            } else {
                Err(StorageError::from_sdk("CreateBucket", bucket, e))
            }
        }
    }
}

/// A KMS key created for a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKey {
    /// The key id (a UUID).
    pub key_id: String,
    /// The key's ARN, which S3 reports on objects it encrypted.
    pub arn: String,
}

/// Creates a symmetric encryption key with `description`.
pub async fn create_kms_key(
    client: &aws_sdk_kms::Client,
    description: &str,
) -> Result<KmsKey, StorageError> {
    let out = client
        .create_key()
        .description(description)
        .send()
        .await
        .map_err(|e| StorageError::from_sdk("kms:CreateKey", "", e))?;
    let meta = out
        .key_metadata()
        .ok_or_else(|| StorageError::InvalidRequest {
            op: "kms:CreateKey",
            detail: "no key metadata in the response".to_owned(),
        })?;
    Ok(KmsKey {
        key_id: meta.key_id().to_owned(),
        arn: meta.arn().unwrap_or_default().to_owned(),
    })
}
