//! Salesforce client: OAuth, describe, Bulk API 2.0 query.
//!
//! [`SalesforceClient::connect`] mints a token with the client-credentials flow and sends every
//! API call to the `instance_url` that came back. An expired session (`401 INVALID_SESSION_ID`)
//! is renewed once per request, transparently. [`SalesforceClient::bulk_query`] creates a Bulk
//! API 2.0 query job, polls it with backoff until `JobComplete`, and hands back
//! [`BulkQueryResults`], which downloads the result pages one by one (gzip, `Sforce-Locator`
//! paging until the literal `null`, the job's own API version) and parses each as CSV.
//!
//! Every error is a [`SalesforceError`], classified retryable or permanent through
//! [`coffer_core::Classify`]. Access tokens and client secrets are held in
//! [`coffer_core::secret::SecretString`] and never appear in errors, logs or `Debug` output.

mod auth;
pub mod bulk;
pub mod client;
pub mod describe;
pub mod error;

pub use bulk::{BulkQueryResults, CsvPage, QueryOperation};
pub use client::{ClientOptions, OrgConnection, SalesforceClient};
pub use describe::{ChildRelationship, FieldDescribe, SObjectDescribe, SObjectSummary};
pub use error::SalesforceError;
