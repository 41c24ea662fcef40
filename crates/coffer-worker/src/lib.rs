//! Coffer's pipelines, built from the boundary crates.
//!
//! [`Worker`] is the queue's job handler: it decodes a job envelope, runs the pipeline for its
//! kind, and turns the result into an ack, a retry or a dead letter ([`handler`]). The backup
//! pipeline ([`backup`]) reads like the flow in the design:
//!
//! ```text
//! look up tenant + org (never trusting the message for where data goes)
//! -> begin (or resume) the backup of this job in the catalog
//! -> describe the org, choose the objects
//! -> per object: Bulk API 2.0 query -> CSV pages -> gzip -> multipart upload -> object row
//! -> manifest.json -> backup complete -> ack
//! ```
//!
//! [`lookup`] reads one record as of a time back from the backup that holds it; [`restore`]
//! plans and writes records of a backup back into an org, links rebuilt; [`janitor`] plans
//! what retention no longer keeps; [`verify`] checks that a tenant's storages and the catalog
//! agree (`coffer verify`).

pub mod backup;
pub mod error;
pub mod handler;
pub mod janitor;
pub mod lookup;
mod metrics;
pub mod restore;
pub mod settings;
pub mod storage;
pub mod verify;

pub use error::WorkerError;
pub use handler::Worker;
pub use settings::WorkerSettings;
