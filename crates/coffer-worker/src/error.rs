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
    /// The org's Salesforce API allowance is used up (by Salesforce's count, or past the share
    /// the vendor allows Coffer): its work waits, without calling Salesforce, until `until`.
    #[error(
        "org {org} of tenant {tenant} is paused until {until} ({reason}); its work resumes then, or earlier with `coffer tenant resume-org`"
    )]
    OrgPaused {
        /// The tenant.
        tenant: String,
        /// The org.
        org: String,
        /// When work resumes (RFC 3339, UTC).
        until: String,
        /// The Salesforce error that paused it.
        reason: String,
    },
    /// Another delivery of the same job is running it (a message handed over before the
    /// broker's consumer timeout came back while the first still works): this one waits.
    #[error("{what} is being run by another worker; this delivery waits and checks again")]
    HeldElsewhere {
        /// What is held (`restore {id}`).
        what: String,
    },
    /// A file body did not match the checksum Salesforce gives for it
    /// (`ContentVersion.Checksum`): a corrupted transfer, or a damaged file in the org.
    #[error(
        "{sobject} {record_id}: the downloaded body ({bytes} bytes) has MD5 {actual}, but Salesforce's checksum is {expected}; retried, and if it persists the file is damaged in the org (download it in Salesforce to check)"
    )]
    FileChecksum {
        /// The object (`ContentVersion`).
        sobject: String,
        /// The record.
        record_id: String,
        /// Salesforce's checksum (MD5 hex).
        expected: String,
        /// The MD5 of what arrived.
        actual: String,
        /// Bytes received.
        bytes: u64,
    },
    /// A file body's length differs from the size its record gives (`ContentSize`,
    /// `BodyLength`): usually the file changed between the metadata query and the download.
    #[error(
        "{sobject} {record_id}: the downloaded body has {actual} bytes, but the record says {expected}; the file probably changed during the backup (it is retried)"
    )]
    FileSize {
        /// The object.
        sobject: String,
        /// The record.
        record_id: String,
        /// The size the record gives.
        expected: u64,
        /// Bytes received.
        actual: u64,
    },
    /// The janitor could not finish a step (keys the store refused, a fence lost); what it
    /// started stays recorded and the next sweep finishes it.
    #[error("retention: {0}")]
    Janitor(String),
}

impl WorkerError {
    /// Whether the failure means the org's API allowance is used up: the org is paused rather
    /// than the job retried.
    pub fn pauses_org(&self) -> bool {
        matches!(self, WorkerError::Salesforce(e) if e.pauses_org())
    }

    /// Whether the delivery is deferred rather than failed: its org is paused, or another
    /// delivery of the same job is running it.
    pub fn defers(&self) -> bool {
        matches!(
            self,
            WorkerError::OrgPaused { .. } | WorkerError::HeldElsewhere { .. }
        )
    }
}

impl Classify for WorkerError {
    fn class(&self) -> ErrorClass {
        match self {
            WorkerError::Salesforce(e) => e.class(),
            WorkerError::Storage(e) => e.class(),
            WorkerError::Catalog(e) => e.class(),
            WorkerError::Task(_)
            | WorkerError::OrgPaused { .. }
            | WorkerError::HeldElsewhere { .. }
            | WorkerError::FileChecksum { .. }
            | WorkerError::FileSize { .. }
            | WorkerError::Janitor(_) => ErrorClass::Retryable,
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
