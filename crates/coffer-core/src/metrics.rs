//! The names of Coffer's metrics, their help text and their labels: one list, so the crates
//! that count and the endpoint that describes them cannot drift apart.
//!
//! Labels are bounded by construction: job kinds, outcomes and the few fixed values below,
//! never a tenant, org, backup or job id (those belong in traces and logs, whose cardinality
//! does not cost a time series each).

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution of observations.
    Histogram,
}

/// One metric: name, kind, help text, label names.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Prometheus name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// One line for `# HELP`.
    pub help: &'static str,
    /// Label names (their values are bounded).
    pub labels: &'static [&'static str],
}

macro_rules! metrics {
    ($($(#[$doc:meta])* $id:ident = $name:literal, $kind:ident, [$($label:literal),*], $help:literal;)*) => {
        $(
            $(#[$doc])*
            pub const $id: &str = $name;
        )*
        /// Every metric Coffer emits.
        pub const ALL: &[Metric] = &[
            $(Metric { name: $name, kind: MetricKind::$kind, help: $help, labels: &[$($label),*] },)*
        ];
    };
}

metrics! {
    /// Jobs settled, by kind and outcome (`ok`, `retry`, `dead_letter`, `parked`, `requeued`,
    /// `abandoned`: left unacked at shutdown for another worker).
    JOBS_TOTAL = "coffer_jobs_total", Counter, ["kind", "outcome"],
        "Jobs settled, by kind and outcome (ok, retry, dead_letter, parked, requeued, abandoned).";
    /// Jobs whose delivery was handed over to a parked copy after `max_hold`.
    JOBS_HANDED_OVER_TOTAL = "coffer_jobs_handed_over_total", Counter, ["kind"],
        "Jobs still running after max_hold whose delivery was handed over to a parked copy.";
    /// How long a job's handler ran, by kind.
    JOB_DURATION_SECONDS = "coffer_job_duration_seconds", Histogram, ["kind"],
        "Time a job's handler ran, by kind.";
    /// Jobs running in this process.
    JOBS_IN_FLIGHT = "coffer_jobs_in_flight", Gauge, [],
        "Jobs running in this process now.";
    /// From the publish of a job to its delivery here.
    QUEUE_LAG_SECONDS = "coffer_queue_lag_seconds", Histogram, ["kind"],
        "Time from a job's publish to its delivery to this worker (second resolution).";
    /// Messages ready in each of Coffer's queues, sampled.
    QUEUE_MESSAGES = "coffer_queue_messages", Gauge, ["queue"],
        "Messages ready in the queue, sampled by the worker.";
    /// Consumers of each of Coffer's queues, sampled.
    QUEUE_CONSUMERS = "coffer_queue_consumers", Gauge, ["queue"],
        "Consumers of the queue, sampled by the worker.";
    /// Records written to records parts whose task completed.
    RECORDS_BACKED_UP_TOTAL = "coffer_records_backed_up_total", Counter, [],
        "Records backed up by extract tasks that completed.";
    /// Records a restore wrote or failed to write.
    RECORDS_RESTORED_TOTAL = "coffer_records_restored_total", Counter, ["result"],
        "Records restored, by result (written, failed).";
    /// Objects recorded in the catalog, by kind.
    OBJECTS_STORED_TOTAL = "coffer_objects_stored_total", Counter, ["what"],
        "Objects stored and recorded in the catalog, by kind (records, files, manifest).";
    /// Bytes of the objects recorded in the catalog, by kind.
    BYTES_STORED_TOTAL = "coffer_bytes_stored_total", Counter, ["what"],
        "Bytes of the objects stored and recorded in the catalog, by kind (records, files, manifest).";
    /// Bytes sent to object storage (retried parts count again).
    BYTES_UPLOADED_TOTAL = "coffer_bytes_uploaded_total", Counter, [],
        "Bytes sent to object storage in single PUTs and upload parts (a retried part counts again).";
    /// Single PUTs and multipart parts uploaded.
    UPLOAD_PARTS_TOTAL = "coffer_upload_parts_total", Counter, [],
        "Single PUTs and multipart upload parts that succeeded.";
    /// Retries, by boundary.
    RETRIES_TOTAL = "coffer_retries_total", Counter, ["boundary"],
        "Calls Coffer itself tried again after a retryable failure, by boundary (salesforce; s3: DeleteObjects batches). Jobs retried through the queue are coffer_jobs_total{outcome=\"retry\"}; the AWS SDK's own request retries are not counted.";
    /// Salesforce API calls that count against the org's daily allocation.
    SALESFORCE_API_CALLS_TOTAL = "coffer_salesforce_api_calls_total", Counter, ["api"],
        "Salesforce API calls made, by API (rest, bulk, soap, blob, auth).";
    /// Share of an org's daily API allocation used, as Salesforce reported it on each call.
    SALESFORCE_API_USAGE_RATIO = "coffer_salesforce_api_usage_ratio", Histogram, [],
        "Share of the org's daily API allocation in use, observed on each response that reports it.";
    /// Org sweeps by outcome (`clean`, `with_failures`).
    SWEEPS_TOTAL = "coffer_sweeps_total", Counter, ["outcome"],
        "Retention sweeps of an org, by outcome (clean, with_failures: left for the next sweep).";
    /// Backups retention deleted.
    BACKUPS_EXPIRED_TOTAL = "coffer_backups_expired_total", Counter, [],
        "Backups retention deleted (objects and catalog rows).";
    /// Objects retention deleted, by kind.
    OBJECTS_DELETED_TOTAL = "coffer_objects_deleted_total", Counter, ["what"],
        "Objects retention deleted: backup objects (backups) and unreferenced file bodies (files).";
    /// Orgs paused because their API allowance was used up.
    ORGS_PAUSED_TOTAL = "coffer_orgs_paused_total", Counter, [],
        "Orgs paused because their API allowance was used up.";
}

/// The job kinds Coffer publishes; any other AMQP `type` is counted as `other`, so a
/// misbehaving publisher cannot grow the number of series.
pub const JOB_KINDS: &[&str] = &[
    "backup_requested",
    "extract_task",
    "restore_requested",
    "retention_sweep_requested",
];

/// The `kind` label of a job of AMQP type `kind`: one of [`JOB_KINDS`], `other`, or `none`.
pub fn kind_label(kind: Option<&str>) -> &'static str {
    match kind {
        None => "none",
        Some(k) => JOB_KINDS
            .iter()
            .find(|known| **known == k)
            .copied()
            .unwrap_or("other"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kinds_share_one_label() {
        assert_eq!(kind_label(Some("extract_task")), "extract_task");
        assert_eq!(kind_label(Some("x".repeat(200).as_str())), "other");
        assert_eq!(kind_label(None), "none");
    }

    #[test]
    fn names_are_unique_prefixed_and_labels_bounded() {
        let mut names: Vec<_> = ALL.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a metric name is listed twice");
        for m in ALL {
            assert!(m.name.starts_with("coffer_"), "{}", m.name);
            assert!(
                m.kind != MetricKind::Counter || m.name.ends_with("_total"),
                "counter {} should end in _total",
                m.name
            );
            for label in m.labels {
                assert!(!label.ends_with("id"), "{} has an id label", m.name);
            }
        }
    }
}
