//! Tenant buckets: everything Coffer does with S3 and KMS.
//!
//! - [`access`]: reaching a tenant's storage with the vendor's credentials, an assumed role or
//!   the customer's access keys ([`access::connect`]), and [`access::ClientCache`], one client per
//!   tenant storage over one shared connection pool.
//! - [`probe`]: the Test Connection ([`probe::test_connection`]): each step a backup relies on,
//!   timed, with a stable code and a fix for every failure.
//! - [`client`]: building an S3 client for an endpoint (AWS, or an S3-compatible store such as the
//!   local emulator), with the settings that keep integrity checks working on both.
//! - [`credentials`]: reaching a customer's bucket through STS AssumeRole with the tenant's
//!   external id and a session policy narrowed to the tenant's prefix.
//! - [`target`]: where an object goes: bucket and server-side encryption (SSE-KMS with the
//!   tenant's key, or SSE-S3).
//! - [`multipart`]: the streaming object writer. It buffers bounded parts sized so 10,000 cover
//!   the object, sends small objects in one PUT, checksums every byte, creates objects only if
//!   absent, and always ends in Complete or Abort.
//! - [`copy`]: server-side copies inside a bucket, created only if the destination is absent.
//! - [`list`]: listing a prefix: objects with size and time, every version and delete marker
//!   ([`list::list_versions`], [`list::versioning_on`]), and open multipart uploads with their
//!   start time, which [`list::abort_upload`] discards.
//! - [`delete`]: deleting objects and versions in batches of 1,000, several requests at a time
//!   ([`delete::delete_objects`]), retryable per-key refusals sent again and the rest reported.
//! - [`reader`]: streams an object back and checks its recorded size and SHA-256.
//! - [`provision`]: creating buckets and KMS keys, for the demo and the tests (in production the
//!   customer or the vendor's infrastructure code owns these).
//! - [`error`]: [`StorageError`], classified retryable or permanent, with messages that name the
//!   fix for the misconfigurations a customer can cause.

pub mod access;
pub mod client;
pub mod copy;
pub mod credentials;
pub mod delete;
pub mod error;
pub mod list;
pub mod multipart;
pub mod probe;
pub mod provision;
pub mod reader;
pub mod target;

pub use client::{S3Settings, StaticKeys};
pub use error::StorageError;
pub use multipart::{MIN_PART_SIZE, MultipartWriter, UploadOptions, UploadedObject};
pub use reader::{ExpectedObject, VerifiedReader};
pub use target::{BucketTarget, Encryption};

/// Re-export so callers can name the client type without depending on the SDK directly.
pub use aws_sdk_s3::Client as S3Client;
