//! Salesforce client: OAuth, describe, Bulk API 2.0 query, REST query, limits and blobs.
//!
//! [`SalesforceClient::connect`] mints a token with the client-credentials flow
//! ([`SalesforceClient::connect_jwt`]: the JWT bearer flow) and sends every
//! API call to the `instance_url` that came back. An expired session (`401 INVALID_SESSION_ID`)
//! is renewed once per request, transparently. [`SalesforceClient::bulk_query`] creates a Bulk
//! API 2.0 query job, polls it with backoff until `JobComplete`, and hands back
//! [`BulkQueryResults`], which downloads the result pages one by one (gzip, `Sforce-Locator`
//! paging until the literal `null`, the job's own API version) and parses each as CSV.
//!
//! Transient failures of idempotent requests (5xx, a cut connection, a short page) are retried
//! with backoff, a page by its own locator. Objects Bulk refuses (`INVALIDENTITY`) are read
//! through REST `query`. Every response's `Sforce-Limit-Info` is recorded
//! ([`SalesforceClient::api_usage`]); past [`ClientOptions::max_api_share`] of the org's daily
//! allocation the client refuses further calls, and it keeps to a request rate and a number of
//! requests in flight. [`SalesforceClient::download_blob`] streams file bodies with their MD5.
//!
//! Restores write through three paths. [`SalesforceClient::ingest`] loads rows with Bulk API 2.0
//! ingest jobs (one CSV upload per job, split into several jobs under a byte limit), with cells
//! typed as [`IngestValue`] so null (`#N/A`) and unchanged (empty) cannot be confused, and
//! returns each job's successful, failed and unprocessed rows, correlated by a real field with
//! [`IngestJobResult::by_column`]. [`SalesforceClient::create_records`],
//! [`SalesforceClient::update_records`] and [`SalesforceClient::delete_records`] use sObject
//! Collections (200 records a request, outcomes in request order).
//! [`SalesforceClient::undelete_records`] calls the SOAP API's `undelete`. Writes that are not
//! idempotent are sent again only when the connection could not be established.
//!
//! Reads by `SystemModstamp`: [`SalesforceClient::read_modstamp_range`] reads an object over a
//! half-open range `[from, to)` and bisects a range whose Bulk job fails with `QUERY_TIMEOUT`
//! (module [`split`]), reporting the ranges read so a caller can resume.
//! [`SalesforceClient::read_changes`] reads an object's changes since a [`Cursor`]
//! (`(SystemModstamp, Id)`) with `queryAll` and an overlap window for late commits, up to the
//! server's clock ([`SalesforceClient::server_time`]), classifying each row as deleted and/or
//! seen before (module [`incremental`]).
//!
//! Every error is a [`SalesforceError`], classified retryable or permanent through
//! [`coffer_core::Classify`]. Access tokens and client secrets are held in
//! [`coffer_core::secret::SecretString`] and never appear in errors, logs or `Debug` output.

mod auth;
pub mod blob;
pub mod bulk;
pub mod client;
pub mod collections;
pub mod describe;
pub mod error;
pub mod incremental;
pub mod ingest;
pub mod limits;
mod rest;
pub mod slices;
pub mod soap;
pub mod split;

pub use blob::BlobStream;
pub use bulk::{BulkQueryResults, CsvPage, QueryOperation};
pub use client::{ApiUsage, ClientOptions, JwtBearer, OrgConnection, SalesforceClient};
pub use collections::{RecordError, RecordOutcome, SObjectRecord};
pub use describe::{ChildRelationship, FieldDescribe, SObjectDescribe, SObjectSummary};
pub use error::SalesforceError;
pub use incremental::{ChangePage, ChangeReader, Cursor, IncrementalOptions, RowMeta};
pub use ingest::{
    IngestBatcher, IngestFailure, IngestJobResult, IngestOperation, IngestOutcome, IngestRow,
    IngestSpec, IngestSuccess, IngestUpload, IngestValue,
};
pub use limits::{Limit, OrgLimits};
pub use slices::IdRange;
pub use split::{ModstampRange, RangePage, RangeQuery, RangeReader};
