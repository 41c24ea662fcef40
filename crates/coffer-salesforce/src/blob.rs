//! Blob fields (`ContentVersion.VersionData`, `Attachment.Body`, `Document.Body`), downloaded as
//! a stream: `GET /sobjects/{object}/{id}/{field}` returns the raw bytes, which are handed on
//! chunk by chunk, never held whole. The MD5 is computed on the way; when an expected checksum
//! (`ContentVersion.Checksum`) is given, a mismatch ends the stream with
//! [`SalesforceError::ChecksumMismatch`] instead of a clean end.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use coffer_core::SObjectName;
use futures::Stream;
use futures::stream::BoxStream;
use md5::{Digest, Md5};

use crate::{SalesforceClient, SalesforceError};

/// The body of one blob, as a stream of chunks. Yields `Err` once and then ends if the transfer
/// breaks or the checksum does not match.
pub struct BlobStream {
    chunks: BoxStream<'static, reqwest::Result<Bytes>>,
    md5: Md5,
    bytes: u64,
    expected_md5: Option<String>,
    what: String,
    ended: bool,
    /// `{object} {id} {field}`.
    blob: String,
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("blob", &self.what)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl BlobStream {
    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The MD5 (lowercase hex) of the bytes received so far; the blob's MD5 once the stream has
    /// ended.
    pub fn md5_hex(&self) -> String {
        hex::encode(self.md5.clone().finalize())
    }

    /// At the end of the body: the checksum check.
    fn verify(&self) -> Result<(), SalesforceError> {
        let actual = self.md5_hex();
        match &self.expected_md5 {
            Some(expected) if !expected.trim().eq_ignore_ascii_case(&actual) => {
                Err(SalesforceError::ChecksumMismatch {
                    blob: self.blob.clone(),
                    bytes: self.bytes,
                    expected: expected.clone(),
                    actual,
                })
            }
            _ => Ok(()),
        }
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, SalesforceError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let next = match self.chunks.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(next) => next,
        };
        Poll::Ready(match next {
            Some(Ok(chunk)) => {
                self.md5.update(&chunk);
                self.bytes += chunk.len() as u64;
                Some(Ok(chunk))
            }
            Some(Err(source)) => {
                self.ended = true;
                Some(Err(SalesforceError::Transport {
                    operation: self.what.clone(),
                    source,
                }))
            }
            None => {
                self.ended = true;
                let verified = self.verify();
                tracing::debug!(blob = %self.what, bytes = self.bytes, ok = verified.is_ok(), "downloaded salesforce blob");
                verified.err().map(Err)
            }
        })
    }
}

impl SalesforceClient {
    /// Starts downloading blob `field` of record `id` of `sobject` (one API call). Pass the
    /// record's `ContentVersion.Checksum` as `expected_md5` to have the stream end in
    /// [`SalesforceError::ChecksumMismatch`] when the bytes do not match it.
    pub async fn download_blob(
        &self,
        sobject: &SObjectName,
        id: &str,
        field: &str,
        expected_md5: Option<&str>,
    ) -> Result<BlobStream, SalesforceError> {
        let what = format!("download {sobject} {id} {field}");
        let url = self.data_url(
            self.api_version(),
            &format!("sobjects/{sobject}/{id}/{field}"),
        );
        let resp = self
            .with_retries(&what, || {
                self.send(&what, |http| {
                    http.get(&url)
                        .header(reqwest::header::ACCEPT, "application/octet-stream")
                })
            })
            .await?;
        Ok(BlobStream {
            chunks: Box::pin(resp.bytes_stream()),
            md5: Md5::new(),
            bytes: 0,
            expected_md5: expected_md5.map(str::to_owned),
            what,
            ended: false,
            blob: format!("{sobject} {id} {field}"),
        })
    }
}
