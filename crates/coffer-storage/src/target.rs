//! Where an object goes: a bucket and its server-side encryption.

use aws_sdk_s3::operation::copy_object::builders::CopyObjectFluentBuilder;
use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::types::ServerSideEncryption;

/// Server-side encryption requested on every object Coffer writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    /// `x-amz-server-side-encryption: aws:kms` with the tenant's key.
    SseKms {
        /// Key id, alias or ARN.
        key_id: String,
        /// Use an S3 Bucket Key (fewer KMS requests; encryption context becomes the bucket ARN).
        bucket_key: bool,
    },
    /// `x-amz-server-side-encryption: AES256` (S3-managed keys).
    SseS3,
}

/// A bucket plus the encryption every object in it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketTarget {
    /// Bucket name.
    pub bucket: String,
    /// Encryption for new objects.
    pub encryption: Encryption,
}

/// The same encryption headers on any request builder that has them (the SDK's builders share
/// no trait).
macro_rules! with_encryption {
    ($encryption:expr, $req:expr) => {
        match $encryption {
            Encryption::SseKms { key_id, bucket_key } => $req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(key_id)
                .bucket_key_enabled(*bucket_key),
            Encryption::SseS3 => $req.server_side_encryption(ServerSideEncryption::Aes256),
        }
    };
}

impl BucketTarget {
    /// Adds the encryption headers to a CreateMultipartUpload request.
    pub(crate) fn apply_to_multipart(
        &self,
        req: CreateMultipartUploadFluentBuilder,
    ) -> CreateMultipartUploadFluentBuilder {
        with_encryption!(&self.encryption, req)
    }

    /// Adds the encryption headers to a PutObject request.
    pub(crate) fn apply_to_put(&self, req: PutObjectFluentBuilder) -> PutObjectFluentBuilder {
        with_encryption!(&self.encryption, req)
    }

    /// Adds the encryption headers to a CopyObject request (the copy is encrypted anew).
    pub(crate) fn apply_to_copy(&self, req: CopyObjectFluentBuilder) -> CopyObjectFluentBuilder {
        with_encryption!(&self.encryption, req)
    }
}
