//! Tenant buckets: everything Coffer does with S3 and KMS.
//!
//! - [`client`]: building an S3 client for an endpoint (AWS, or an S3-compatible store such as the
//!   local emulator), with the settings that keep integrity checks working on both.
//! - [`credentials`]: reaching a customer's bucket through STS AssumeRole with the tenant's
//!   external id and a session policy narrowed to the tenant's prefix.
//! - [`target`]: where an object goes: bucket and server-side encryption (SSE-KMS with the
//!   tenant's key, or SSE-S3).
//! - [`multipart`]: the streaming multipart writer. It buffers bounded parts, checksums every
//!   byte, and always ends in Complete or Abort.
//! - [`provision`]: creating buckets and KMS keys, for the demo and the tests (in production the
//!   customer or the vendor's infrastructure code owns these).
//! - [`error`]: [`StorageError`], classified retryable or permanent, with messages that name the
//!   fix for the misconfigurations a customer can cause.

pub mod client;
pub mod credentials;
pub mod error;
pub mod multipart;
pub mod provision;
pub mod target;

pub use client::{S3Settings, StaticKeys};
pub use error::StorageError;
pub use multipart::{MIN_PART_SIZE, MultipartWriter, UploadOptions, UploadedObject};
pub use target::{BucketTarget, Encryption};

/// Re-export so callers can name the client type without depending on the SDK directly.
pub use aws_sdk_s3::Client as S3Client;
pub mod delete;
