//! [`WorkerSettings`]: the knobs of the pipelines, validated by construction.

use std::time::Duration;

use coffer_core::layout::Compression;
use coffer_core::sealed::EnvelopeKey;
use coffer_salesforce::IncrementalOptions;

use crate::backup::files::{FilePolicy, FileSettings};
use crate::janitor::sweep::SweepSettings;
use coffer_storage::{MIN_PART_SIZE, S3Settings};

/// How the worker reaches storage and sizes what it writes.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The vendor's own credentials and default endpoint (a tenant's role is assumed with them).
    pub s3: S3Settings,
    /// Uncompressed CSV bytes after which a records part is closed and the next one starts.
    /// Bounded parts make retries, restores and verification cheap.
    pub max_part_bytes: usize,
    /// Size of each multipart upload part (at least 5 MiB).
    pub upload_part_size: usize,
    /// Upload parts in flight per object.
    pub upload_concurrency: usize,
    /// How records parts are compressed (gzip by default, or zstd).
    pub compression: Compression,
    /// gzip level (1 fastest, 9 smallest).
    pub gzip_level: u32,
    /// zstd level (1 fastest, 19 smallest in practice).
    pub zstd_level: i32,
    /// Rows per Bulk API 2.0 results page (`maxRecords`).
    pub salesforce_page_size: usize,
    /// The vendor's name, the start of every external id (`{vendor}-org-{org_id}`).
    pub vendor: String,
    /// How long a task's lease lasts without renewal; a worker renews it every third of this,
    /// and a task whose worker died is taken over this long after its last renewal.
    pub task_lease: Duration,
    /// Limits of the file step (ContentVersion, Attachment and Document bodies).
    pub files: FileSettings,
    /// Every ContentVersion, or only the latest of each file.
    pub file_policy: FilePolicy,
    /// An object with more records than this is read by several tasks side by side, each over
    /// a slice of its record ids.
    pub slice_rows: u64,
    /// Slices of one object at most.
    pub max_slices: u32,
    /// Overlap window (late commits) and splitting of incremental reads.
    pub incremental: IncrementalOptions,
    /// How often a running restore reports its progress on the events exchange.
    pub restore_progress_every: Duration,
    /// The external id field a restore keys its inserts by, where the target object has it:
    /// each inserted record carries its source id there, so an insert sent again (after a
    /// crash or a lost answer) finds the record instead of creating a second one, and Bulk
    /// API results can be matched to their rows.
    pub restore_key_field: String,
    /// Inserts of one object (and hierarchy level) from which a restore loads them with a
    /// Bulk API 2.0 ingest job instead of sObject Collections requests of 200; only for
    /// objects with the restore key.
    pub restore_bulk_threshold: usize,
    /// Share of each org's daily API allocation the worker may use (`None`: all of it); past
    /// it the org is paused.
    pub max_api_share: Option<f64>,
    /// How long an org whose API allowance is used up is paused before its work is tried again
    /// (the allocation is a rolling 24-hour window, so calls free up gradually).
    pub org_pause: Duration,
    /// Opens customers' sealed storage secrets; without it, storages with access keys fail
    /// with a message that says so.
    pub envelope_key: Option<EnvelopeKey>,
    /// How retention sweeps (from `RetentionSweepRequested` messages) delete.
    pub retention: SweepSettings,
}

/// The default [`WorkerSettings::restore_key_field`].
pub const DEFAULT_RESTORE_KEY_FIELD: &str = "Coffer_Source_Id__c";

impl WorkerSettings {
    /// Defaults for production: 128 MiB parts of CSV, 8 MiB upload parts, 2 in flight, gzip 3.
    pub fn new(s3: S3Settings) -> Self {
        WorkerSettings {
            s3,
            max_part_bytes: 128 * 1024 * 1024,
            upload_part_size: 8 * 1024 * 1024,
            upload_concurrency: 2,
            compression: Compression::Gzip,
            gzip_level: 3,
            zstd_level: 3,
            salesforce_page_size: 50_000,
            vendor: "coffer".to_owned(),
            task_lease: Duration::from_secs(60),
            files: FileSettings::default(),
            file_policy: FilePolicy::default(),
            slice_rows: 5_000_000,
            max_slices: 32,
            incremental: IncrementalOptions::default(),
            restore_progress_every: Duration::from_secs(5),
            restore_key_field: DEFAULT_RESTORE_KEY_FIELD.to_owned(),
            restore_bulk_threshold: 2_000,
            max_api_share: Some(0.8),
            org_pause: Duration::from_secs(3600),
            envelope_key: None,
            retention: SweepSettings::default(),
        }
    }

    /// The upload part size, raised to S3's minimum.
    pub fn effective_upload_part_size(&self) -> usize {
        self.upload_part_size.max(MIN_PART_SIZE)
    }
}
