//! Deleting objects and object versions in batches of at most 1,000 (the DeleteObjects limit),
//! several requests at a time, with per-key refusals retried when the store's code says they
//! may pass later and reported, never ignored, when they do not.
//!
//! [`delete_objects`] is the general form (the retention janitor's); [`delete_keys`] and
//! [`delete_key`] delete current objects and fail on any refusal. Reading a DeleteObjects answer
//! into deleted and refused targets is one pure function, tested without a store.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use coffer_core::{Classify, ErrorClass};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::error::{ServiceFailure, StorageError};

/// The DeleteObjects limit.
pub const MAX_KEYS_PER_DELETE: usize = 1000;

/// How many times a refused key, or a request failed as a whole with a retryable error, is sent
/// again.
pub const DELETE_RETRIES: u32 = 3;

/// The wait before the first resend; it doubles for each further one.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Per-key codes that may pass when sent again: throttling, the store's internal failures, and a
/// conflicting operation on the key in progress.
const RETRYABLE_KEY_CODES: &[&str] = &[
    "InternalError",
    "SlowDown",
    "ServiceUnavailable",
    "RequestTimeout",
    "OperationAborted",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
];

/// Per-key codes that mean the object or version is already gone: counted as deleted.
const GONE_CODES: &[&str] = &["NoSuchKey", "NoSuchVersion"];

/// One object version to delete: a key, and a version id (None: the current object; on a
/// versioned bucket that adds a delete marker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The object key.
    pub key: String,
    /// The version (or delete marker) id; None for the current object.
    pub version_id: Option<String>,
}

impl ObjectVersion {
    /// The current object at `key` (no version id).
    pub fn current(key: impl Into<String>) -> ObjectVersion {
        ObjectVersion {
            key: key.into(),
            version_id: None,
        }
    }
}

/// A key the store refused to delete, with its code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyFailure {
    /// The key asked for.
    pub key: String,
    /// The version id asked for (None: the current object).
    pub version_id: Option<String>,
    /// The store's error code, e.g. `AccessDenied`.
    pub code: String,
    /// The store's message.
    pub message: String,
}

impl KeyFailure {
    /// Whether sending the key again may succeed (throttling, internal errors, a conflicting
    /// operation); AccessDenied and other refusals are permanent.
    pub fn is_retryable(&self) -> bool {
        RETRYABLE_KEY_CODES.contains(&self.code.as_str())
    }

    fn target(&self) -> ObjectVersion {
        ObjectVersion {
            key: self.key.clone(),
            version_id: self.version_id.clone(),
        }
    }
}

/// What a deletion did: how many objects or versions are gone, and every one refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeleteOutcome {
    /// Targets deleted, or already absent.
    pub deleted: u64,
    /// Targets the store refused, after retries for retryable codes.
    pub failed: Vec<KeyFailure>,
}

impl DeleteOutcome {
    fn absorb(&mut self, other: DeleteOutcome) {
        self.deleted += other.deleted;
        self.failed.extend(other.failed);
    }
}

/// Deletes `targets` with DeleteObjects, 1,000 per request, `in_flight` requests at a time (at
/// least one). Keys the store refuses with a retryable code are sent again (up to 3 more times,
/// with a short backoff); what still fails is returned in `failed`, never ignored. A request that
/// fails as a whole with a permanent error returns Err (requests already answered may have
/// deleted their keys); a retryable whole-request failure is retried the same way. A missing
/// key counts as deleted.
pub async fn delete_objects(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    targets: Vec<ObjectVersion>,
    in_flight: usize,
) -> Result<DeleteOutcome, StorageError> {
    let mut batches = batches(targets).into_iter();
    let mut running = JoinSet::new();
    let mut outcome = DeleteOutcome::default();
    loop {
        while running.len() < in_flight.max(1) {
            let Some(batch) = batches.next() else { break };
            let (client, bucket) = (client.clone(), bucket.to_owned());
            let task = async move { delete_batch(&client, &bucket, batch).await };
            running.spawn(task.in_current_span());
        }
        let Some(joined) = running.join_next().await else {
            return Ok(outcome);
        };
        outcome.absorb(joined_batch(joined)?);
    }
}

/// Deletes `keys` from `bucket`, one request at a time. A key that does not exist counts as
/// deleted (as S3 reports). Fails if the store refused any key, naming the first one and the
/// store's code.
pub async fn delete_keys(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    keys: &[String],
) -> Result<(), StorageError> {
    let targets = keys.iter().map(ObjectVersion::current).collect();
    let outcome = delete_objects(client, bucket, targets, 1).await?;
    match outcome.failed.into_iter().next() {
        None => Ok(()),
        Some(first) => Err(key_error(bucket, first)),
    }
}

/// Deletes one key with DeleteObject (a missing key counts as deleted).
pub async fn delete_key(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<(), StorageError> {
    client
        .delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| StorageError::from_sdk("DeleteObject", bucket, e))?;
    Ok(())
}

/// Splits the per-key errors of a DeleteObjects answer for `sent`: how many targets were
/// deleted (no error, or an error saying it is already gone), and a failure per refused target,
/// carrying the key and version id that were sent. Pure.
fn split_errors(sent: &[ObjectVersion], errors: &[KeyFailure]) -> DeleteOutcome {
    let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, target) in sent.iter().enumerate() {
        by_key.entry(target.key.as_str()).or_default().push(i);
    }
    let mut refused = vec![false; sent.len()];
    let mut failed = Vec::new();
    for error in errors {
        if GONE_CODES.contains(&error.code.as_str()) {
            continue;
        }
        let candidates = by_key.get(error.key.as_str()).map(Vec::as_slice);
        let hit = candidates.unwrap_or_default().iter().copied().find(|&i| {
            !refused[i] && (error.version_id.is_none() || error.version_id == sent[i].version_id)
        });
        if let Some(i) = hit {
            refused[i] = true;
        }
        failed.push(KeyFailure {
            version_id: hit.map_or(error.version_id.clone(), |i| sent[i].version_id.clone()),
            ..error.clone()
        });
    }
    let deleted = refused.iter().filter(|r| !**r).count() as u64;
    DeleteOutcome { deleted, failed }
}

fn batches(targets: Vec<ObjectVersion>) -> Vec<Vec<ObjectVersion>> {
    let mut batches = Vec::new();
    let mut targets = targets.into_iter().peekable();
    while targets.peek().is_some() {
        batches.push(targets.by_ref().take(MAX_KEYS_PER_DELETE).collect());
    }
    batches
}

fn joined_batch(
    joined: Result<Result<DeleteOutcome, StorageError>, tokio::task::JoinError>,
) -> Result<DeleteOutcome, StorageError> {
    joined.map_err(|e| StorageError::Transient {
        op: "DeleteObjects",
        detail: format!("delete task failed: {e}"),
    })?
}

/// One batch: sent, then its retryable refusals (or the whole request, on a retryable failure)
/// sent again up to [`DELETE_RETRIES`] times.
async fn delete_batch(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    mut pending: Vec<ObjectVersion>,
) -> Result<DeleteOutcome, StorageError> {
    let mut outcome = DeleteOutcome::default();
    for attempt in 0..=DELETE_RETRIES {
        if attempt > 0 {
            metrics::counter!(coffer_core::metrics::RETRIES_TOTAL, "boundary" => "s3").increment(1);
            tokio::time::sleep(RETRY_BACKOFF * 2u32.pow(attempt - 1)).await;
        }
        let errors = match send_delete(client, bucket, &pending).await {
            Ok(errors) => errors,
            Err(e) if e.class() == ErrorClass::Retryable && attempt < DELETE_RETRIES => {
                tracing::debug!(%bucket, error = %e, attempt, "DeleteObjects failed; sending again");
                continue;
            }
            Err(e) => return Err(e),
        };
        let answer = split_errors(&pending, &errors);
        outcome.deleted += answer.deleted;
        let (retry, refused): (Vec<_>, Vec<_>) = answer
            .failed
            .into_iter()
            .partition(|f| f.is_retryable() && attempt < DELETE_RETRIES);
        outcome.failed.extend(refused);
        if retry.is_empty() {
            break;
        }
        tracing::debug!(%bucket, keys = retry.len(), attempt, "keys refused with a retryable code; sending again");
        pending = retry.iter().map(KeyFailure::target).collect();
    }
    Ok(outcome)
}

/// One quiet DeleteObjects request; returns the per-key errors.
async fn send_delete(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    targets: &[ObjectVersion],
) -> Result<Vec<KeyFailure>, StorageError> {
    let out = client
        .delete_objects()
        .bucket(bucket)
        .delete(delete_request(targets)?)
        .send()
        .await
        .map_err(|e| StorageError::from_sdk("DeleteObjects", bucket, e))?;
    Ok(out.errors().iter().map(key_failure).collect())
}

fn delete_request(targets: &[ObjectVersion]) -> Result<Delete, StorageError> {
    let invalid = |e: aws_sdk_s3::error::BuildError| StorageError::InvalidRequest {
        op: "DeleteObjects",
        detail: e.to_string(),
    };
    let objects = targets
        .iter()
        .map(|t| {
            ObjectIdentifier::builder()
                .key(&t.key)
                .set_version_id(t.version_id.clone())
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    Delete::builder()
        .set_objects(Some(objects))
        .quiet(true)
        .build()
        .map_err(invalid)
}

fn key_failure(e: &aws_sdk_s3::types::Error) -> KeyFailure {
    KeyFailure {
        key: e.key().unwrap_or_default().to_owned(),
        version_id: e.version_id().map(str::to_owned),
        code: e.code().unwrap_or("Unknown").to_owned(),
        message: e.message().unwrap_or_default().to_owned(),
    }
}

/// The error [`delete_keys`] returns for a refused key, classified like any service error.
fn key_error(bucket: &str, failure: KeyFailure) -> StorageError {
    let message = format!("{} (key {:?})", failure.message, failure.key);
    let failure = ServiceFailure {
        status: 0,
        code: failure.code,
        message,
    };
    StorageError::from_service("DeleteObjects", bucket, failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(key: &str, id: Option<&str>) -> ObjectVersion {
        ObjectVersion {
            key: key.into(),
            version_id: id.map(str::to_owned),
        }
    }

    fn error(key: &str, id: Option<&str>, code: &str) -> KeyFailure {
        KeyFailure {
            key: key.into(),
            version_id: id.map(str::to_owned),
            code: code.into(),
            message: format!("{code} for {key}"),
        }
    }

    #[test]
    fn an_answer_without_errors_deletes_everything_sent() {
        let sent = vec![version("a", None), version("b", Some("v1"))];
        let outcome = split_errors(&sent, &[]);
        assert_eq!(outcome.deleted, 2);
        assert!(outcome.failed.is_empty());
    }

    #[test]
    fn refused_keys_are_failures_and_missing_ones_count_as_deleted() {
        let sent = vec![
            version("a", None),
            version("b", Some("v1")),
            version("b", Some("v2")),
            version("c", Some("v9")),
        ];
        let errors = [
            error("b", Some("v2"), "AccessDenied"),
            error("c", Some("v9"), "NoSuchVersion"),
        ];
        let outcome = split_errors(&sent, &errors);
        assert_eq!(outcome.deleted, 3);
        assert_eq!(outcome.failed, vec![error("b", Some("v2"), "AccessDenied")]);
    }

    #[test]
    fn a_failure_without_a_version_id_keeps_the_version_that_was_sent() {
        let sent = vec![version("k", Some("v1")), version("k", Some("v2"))];
        let outcome = split_errors(&sent, &[error("k", None, "SlowDown")]);
        assert_eq!(outcome.deleted, 1);
        assert_eq!(outcome.failed[0].version_id.as_deref(), Some("v1"));
        assert_eq!(outcome.failed[0].target(), version("k", Some("v1")));
    }

    #[test]
    fn throttling_and_internal_errors_are_retryable_denials_are_not() {
        for code in [
            "InternalError",
            "SlowDown",
            "ServiceUnavailable",
            "RequestTimeout",
            "OperationAborted",
        ] {
            assert!(error("k", None, code).is_retryable(), "{code}");
        }
        for code in ["AccessDenied", "InvalidArgument", "MethodNotAllowed"] {
            assert!(!error("k", None, code).is_retryable(), "{code}");
        }
    }

    #[test]
    fn a_refused_key_becomes_an_error_naming_it_and_its_code() {
        let err = key_error("b", error("x/1", None, "AccessDenied"));
        assert!(matches!(err, StorageError::AccessDenied { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("\"x/1\"") && text.contains("AccessDenied"),
            "{text}"
        );
        let err = key_error("b", error("x/2", None, "InvalidArgument"));
        let text = err.to_string();
        assert!(
            text.contains("\"x/2\"") && text.contains("InvalidArgument"),
            "{text}"
        );
    }

    #[test]
    fn targets_are_sent_in_batches_of_at_most_a_thousand() {
        let targets = (0..2500).map(|i| version(&format!("k{i}"), None)).collect();
        let sizes: Vec<usize> = batches(targets).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
    }
}
