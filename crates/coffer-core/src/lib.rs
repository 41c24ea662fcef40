//! Coffer's domain vocabulary, shared by every other crate.
//!
//! This crate does no I/O: no network, no files, no clocks. It holds the identifiers of tenants,
//! orgs, backups and jobs (validated at construction so that a value of these types is always safe
//! to put in a bucket key or a log line), the customer-facing bucket layout, and the classification
//! of errors into retryable and permanent that drives every ack/retry/dead-letter decision.

pub mod error;
pub mod ids;
pub mod layout;
pub mod metrics;
pub mod policy;
pub mod restore;
pub mod retention;
pub mod sealed;
pub mod secret;
pub mod sweep;

pub use error::{Classify, ErrorClass};
pub use ids::{BackupId, IdError, JobId, OrgId, RecordId, SObjectName, TenantId};
