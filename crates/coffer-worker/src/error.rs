//! [`WorkerError`]: why a job failed, classified by the boundary error underneath.

use coffer_catalog::CatalogError;
use coffer_core::{Classify, ErrorClass};
use coffer_proto::DecodeError;
use coffer_salesforce::SalesforceError;
use coffer_storage::StorageError;

/// A failed job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The message could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The message decoded but asks for something impossible.
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// The job names a tenant the catalog does not know.
    #[error(
        "unknown tenant {0:?}: no such tenant in the catalog (create it before sending it jobs)"
    )]
    UnknownTenant(String),
    /// The job names an org the tenant has not connected.
    #[error("org {org:?} is not connected to tenant {tenant:?}")]
    UnknownOrg {
        /// The tenant.
        tenant: String,
        /// The org.
        org: String,
    },
    /// This job kind is not implemented by this worker yet.
    #[error("{0} jobs are not supported by this worker version")]
    Unsupported(&'static str),
    /// Salesforce failed.
    #[error("salesforce: {0}")]
    Salesforce(#[from] SalesforceError),
    /// The bucket failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The catalog failed.
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// Salesforce returned records that cannot be written (shape changed mid-query).
    #[error("bad records from salesforce for {sobject}: {detail}")]
    BadRecords {
        /// The object being read.
        sobject: String,
        /// What was wrong.
        detail: String,
    },
    /// A storage secret cannot be opened (no envelope key, or the wrong one).
    #[error("storage {storage_id} of tenant {tenant}: {detail}")]
    Secret {
        /// The tenant.
        tenant: String,
        /// The storage row.
        storage_id: u64,
        /// What is wrong and what to configure.
        detail: String,
    },
    /// An internal task (compression) failed or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl Classify for WorkerError {
    fn class(&self) -> ErrorClass {
        match self {
            WorkerError::Salesforce(e) => e.class(),
            WorkerError::Storage(e) => e.class(),
            WorkerError::Catalog(e) => e.class(),
            WorkerError::Task(_) => ErrorClass::Retryable,
            WorkerError::Decode(_)
            | WorkerError::InvalidJob(_)
            | WorkerError::UnknownTenant(_)
            | WorkerError::UnknownOrg { .. }
            | WorkerError::Unsupported(_)
            | WorkerError::Secret { .. }
            | WorkerError::BadRecords { .. } => ErrorClass::Permanent,
        }
    }
}
