//! The verifying object reader: streams an object back and checks it against what the catalog
//! recorded.
//!
//! [`VerifiedReader::open`] starts a `GetObject` and hands out the body chunk by chunk, hashing
//! every byte; the chunk that ends the body is followed by a check of the size and SHA-256
//! recorded when the object was written. A mismatch is [`StorageError::Corrupt`], so a caller
//! that consumes the whole stream never acts on damaged data without knowing. A body shorter or
//! longer than recorded is caught the same way. Memory is one chunk at a time.

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use crate::error::StorageError;

/// What the catalog recorded about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedObject {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256_hex: String,
}

/// An object being read back, verified at its end.
#[derive(Debug)]
pub struct VerifiedReader {
    bucket: String,
    key: String,
    expected: ExpectedObject,
    body: ByteStream,
    read: u64,
    sha256: Sha256,
    verified: bool,
}

impl VerifiedReader {
    /// Starts reading `key`, to be checked against `expected`.
    pub async fn open(
        client: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        expected: ExpectedObject,
    ) -> Result<Self, StorageError> {
        let out = client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("GetObject", bucket, e))?;
        Ok(VerifiedReader {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            expected,
            body: out.body,
            read: 0,
            sha256: Sha256::new(),
            verified: false,
        })
    }

    /// The next chunk of the body, or `None` once the whole body was read and matched. A
    /// mismatch at the end is an error, never a silent `None`.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, StorageError> {
        if self.verified {
            return Ok(None);
        }
        let chunk = self
            .body
            .try_next()
            .await
            .map_err(|e| StorageError::Transient {
                op: "GetObject",
                detail: format!("reading {}: {e}", self.key),
            })?;
        match chunk {
            Some(bytes) => {
                self.read += bytes.len() as u64;
                self.sha256.update(&bytes);
                self.check_not_longer()?;
                Ok(Some(bytes))
            }
            None => {
                self.check_end()?;
                self.verified = true;
                Ok(None)
            }
        }
    }

    /// Reads the whole object into memory, verified (for small objects such as manifests).
    pub async fn read_all(mut self) -> Result<Vec<u8>, StorageError> {
        let mut out = Vec::with_capacity(usize::try_from(self.expected.size).unwrap_or(0));
        while let Some(chunk) = self.next_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    fn check_not_longer(&self) -> Result<(), StorageError> {
        if self.read > self.expected.size {
            return Err(self.corrupt(format!("more than {} bytes", self.expected.size)));
        }
        Ok(())
    }

    fn check_end(&mut self) -> Result<(), StorageError> {
        let actual = hex::encode(std::mem::take(&mut self.sha256).finalize());
        if self.read != self.expected.size || actual != self.expected.sha256_hex {
            return Err(self.corrupt(format!("{} bytes, sha256 {actual}", self.read)));
        }
        Ok(())
    }

    fn corrupt(&self, actual: String) -> StorageError {
        StorageError::Corrupt {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            expected: format!(
                "{} bytes, sha256 {}",
                self.expected.size, self.expected.sha256_hex
            ),
            actual,
        }
    }
}
