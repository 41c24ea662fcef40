//! Blob fields (`ContentVersion.VersionData`, `Attachment.Body`, `Document.Body`), downloaded as
//! a stream: `GET /sobjects/{object}/{id}/{field}` returns the raw bytes, which are handed on
//! chunk by chunk, never held whole. The MD5 is computed on the way; when an expected checksum
//! (`ContentVersion.Checksum`) is given, a mismatch ends the stream with
//! [`SalesforceError::ChecksumMismatch`] instead of a clean end.
//!
//! A transfer cut mid-body resumes where it stopped instead of failing the file: the body is
//! asked for again with `Range: bytes=N-`. A `206 Partial Content` starting at N continues the
//! stream; a server that ignores the range (`200`, the whole body again) is read from the start
//! with the first N bytes dropped, so the caller sees one unbroken body either way and the MD5
//! covers every byte exactly once. After [`MAX_RESUMES`] cuts the error is handed on.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use coffer_core::SObjectName;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream};
use md5::{Digest, Md5};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_RANGE, RANGE};

use crate::{SalesforceClient, SalesforceError};

/// How many times one download resumes after a cut before the error is handed on.
pub const MAX_RESUMES: u32 = 3;

/// The body of one blob, as a stream of chunks. Yields `Err` once and then ends if the transfer
/// breaks more than [`MAX_RESUMES`] times or the checksum does not match.
pub struct BlobStream {
    client: SalesforceClient,
    url: String,
    state: State,
    md5: Md5,
    bytes: u64,
    /// Bytes still to drop from the front of a body re-sent whole by a server that ignored
    /// the range.
    skip: u64,
    resumes: u32,
    expected_md5: Option<String>,
    what: String,
    /// `{object} {id} {field}`.
    blob: String,
}

enum State {
    Reading(BoxStream<'static, reqwest::Result<Bytes>>),
    Resuming(BoxFuture<'static, Result<reqwest::Response, SalesforceError>>),
    Ended,
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("blob", &self.what)
            .field("bytes", &self.bytes)
            .field("resumes", &self.resumes)
            .finish_non_exhaustive()
    }
}

impl BlobStream {
    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// How many times the transfer was cut and resumed.
    pub fn resumes(&self) -> u32 {
        self.resumes
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

    /// Asks for the rest of the body, from byte [`BlobStream::bytes`] on.
    fn resume(&mut self) {
        let (client, url, what, from) = (
            self.client.clone(),
            self.url.clone(),
            self.what.clone(),
            self.bytes,
        );
        self.state = State::Resuming(
            async move { client.request_blob(&what, &url, Some(from)).await }.boxed(),
        );
    }

    /// Takes a resumed answer: a `206` must start where the stream stopped; a `200` is the
    /// whole body again, whose first bytes are dropped.
    fn continue_with(&mut self, resp: reqwest::Response) -> Result<(), SalesforceError> {
        self.skip = match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let start = range_start(&resp);
                if start != Some(self.bytes) {
                    return Err(SalesforceError::UnexpectedResponse {
                        operation: self.what.clone(),
                        detail: format!(
                            "asked for the body from byte {}, got Content-Range {:?}",
                            self.bytes,
                            resp.headers().get(CONTENT_RANGE)
                        ),
                    });
                }
                0
            }
            _ => self.bytes,
        };
        self.state = State::Reading(Box::pin(resp.bytes_stream()));
        Ok(())
    }

    /// Hashes and counts a chunk, after dropping what a whole-body resend repeats.
    fn take(&mut self, mut chunk: Bytes) -> Option<Bytes> {
        if self.skip > 0 {
            let dropped = self.skip.min(chunk.len() as u64);
            self.skip -= dropped;
            chunk = chunk.slice(dropped as usize..);
        }
        if chunk.is_empty() {
            return None;
        }
        self.md5.update(&chunk);
        self.bytes += chunk.len() as u64;
        Some(chunk)
    }

    fn fail(&mut self, e: SalesforceError) -> Poll<Option<Result<Bytes, SalesforceError>>> {
        self.state = State::Ended;
        Poll::Ready(Some(Err(e)))
    }
}

/// The first byte position of a `Content-Range: bytes START-END/TOTAL` header.
fn range_start(resp: &reqwest::Response) -> Option<u64> {
    let value = resp.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let (start, _) = value.strip_prefix("bytes ")?.split_once('-')?;
    start.trim().parse().ok()
}

impl Stream for BlobStream {
    type Item = Result<Bytes, SalesforceError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let this = &mut *self;
            match &mut this.state {
                State::Ended => return Poll::Ready(None),
                State::Resuming(pending) => match pending.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return this.fail(e),
                    Poll::Ready(Ok(resp)) => {
                        if let Err(e) = this.continue_with(resp) {
                            return this.fail(e);
                        }
                    }
                },
                State::Reading(chunks) => match chunks.as_mut().poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(chunk))) => {
                        if let Some(chunk) = this.take(chunk) {
                            return Poll::Ready(Some(Ok(chunk)));
                        }
                    }
                    Poll::Ready(Some(Err(source))) if this.resumes < MAX_RESUMES => {
                        this.resumes += 1;
                        tracing::warn!(blob = %this.blob, bytes = this.bytes, resume = this.resumes, error = %source, "salesforce blob transfer cut; resuming from the last byte received");
                        this.resume();
                    }
                    Poll::Ready(Some(Err(source))) => {
                        let operation = this.what.clone();
                        return this.fail(SalesforceError::Transport { operation, source });
                    }
                    Poll::Ready(None) => {
                        this.state = State::Ended;
                        let verified = this.verify();
                        tracing::debug!(blob = %this.blob, bytes = this.bytes, resumes = this.resumes, ok = verified.is_ok(), "downloaded salesforce blob");
                        return Poll::Ready(verified.err().map(Err));
                    }
                },
            }
        }
    }
}

impl SalesforceClient {
    /// Starts downloading blob `field` of record `id` of `sobject` (one API call, and one more
    /// per resumed cut). Pass the record's `ContentVersion.Checksum` as `expected_md5` to have
    /// the stream end in [`SalesforceError::ChecksumMismatch`] when the bytes do not match it.
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
        let resp = self.request_blob(&what, &url, None).await?;
        Ok(BlobStream {
            client: self.clone(),
            url,
            state: State::Reading(Box::pin(resp.bytes_stream())),
            md5: Md5::new(),
            bytes: 0,
            skip: 0,
            resumes: 0,
            expected_md5: expected_md5.map(str::to_owned),
            what,
            blob: format!("{sobject} {id} {field}"),
        })
    }

    /// `GET` of a blob URL, from byte `from` on when given, with the usual retries.
    async fn request_blob(
        &self,
        what: &str,
        url: &str,
        from: Option<u64>,
    ) -> Result<reqwest::Response, SalesforceError> {
        self.with_retries(what, || {
            self.send(what, |http| {
                let request = http.get(url).header(ACCEPT, "application/octet-stream");
                match from {
                    Some(from) => request.header(RANGE, format!("bytes={from}-")),
                    None => request,
                }
            })
        })
        .await
    }
}
