//! The messages crossing this crate's boundary: jobs going out, deliveries coming in, what a
//! handler decided, and dead letters read back.

use std::future::Future;

use coffer_core::ErrorClass;
use lapin::message::Delivery;

use crate::headers;

/// A job to publish.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingJob<'a> {
    /// The job id; also the AMQP `message_id`.
    pub message_id: &'a str,
    /// The job kind (`"backup_requested"`, ...); the AMQP `type`.
    pub kind: &'a str,
    /// The tenant, sent as header `x-coffer-tenant`.
    pub tenant: Option<&'a str>,
    /// The protobuf-encoded job.
    pub payload: &'a [u8],
}

/// A job handed to a [`JobHandler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDelivery {
    /// The message body (protobuf bytes, or anything a misbehaving publisher sent).
    pub payload: Vec<u8>,
    /// The AMQP `message_id` (the job id), if set.
    pub message_id: Option<String>,
    /// The AMQP `type` (the job kind), if set.
    pub kind: Option<String>,
    /// The tenant the publisher named in header `x-coffer-tenant`, if it named one. The
    /// handler refuses a job whose payload names another tenant.
    pub tenant: Option<String>,
    /// 0 on the first delivery; incremented by each [`Outcome::Retry`] (header `x-coffer-attempt`).
    pub attempt: u32,
    /// The broker delivered this message before (to us or another worker) without an ack:
    /// the previous attempt may have done part or all of the work.
    pub redelivered: bool,
    /// The consumer's `max_attempts`: see [`JobDelivery::is_last_attempt`].
    pub max_attempts: u32,
}

/// Whether attempt `attempt` (0-based) is the last of `max_attempts`: a retry of it is
/// dead-lettered instead. The one place this rule lives.
pub(crate) fn is_last_attempt(attempt: u32, max_attempts: u32) -> bool {
    attempt.saturating_add(1) >= max_attempts
}

impl JobDelivery {
    /// Whether [`Outcome::Retry`] for this delivery would dead-letter it (the queue makes no
    /// further attempt), so the handler can record the job as failed for good.
    pub fn is_last_attempt(&self) -> bool {
        is_last_attempt(self.attempt, self.max_attempts)
    }

    pub(crate) fn from_delivery(d: &Delivery, max_attempts: u32) -> Self {
        Self {
            payload: d.data.clone(),
            message_id: d
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_owned()),
            kind: d.properties.kind().as_ref().map(|s| s.as_str().to_owned()),
            tenant: headers::get_str_opt(d.properties.headers().as_ref(), headers::TENANT),
            attempt: headers::attempt_of(d.properties.headers().as_ref()),
            redelivered: d.redelivered,
            max_attempts,
        }
    }
}

/// What a handler decided about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The job's effects are durable: ack.
    Done,
    /// Try again after the retry delay for this attempt (or dead-letter after `max_attempts`).
    Retry {
        /// Why; kept in the dead letter if the job is finally given up.
        reason: String,
    },
    /// Not now, and not because the job failed (its org is paused on its API limits): the job
    /// waits [`crate::QueueConfig::park_delay`] in the parked queue and comes back with its
    /// attempt count unchanged.
    Defer {
        /// Why; logged.
        reason: String,
    },
    /// Give up now: the job goes to the dead-letter queue.
    Reject {
        /// Why (truncated to 1 KiB in the header).
        reason: String,
        /// The class of the error that made the job fail.
        class: ErrorClass,
    },
}

/// Runs one job. Implemented by the worker; the consumer runs up to `prefetch` of these at once.
pub trait JobHandler: Send + Sync + 'static {
    /// Handles one delivery. A panic is caught and treated as [`Outcome::Retry`].
    fn handle(&self, delivery: JobDelivery) -> impl Future<Output = Outcome> + Send;
}

/// A message read back from the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The original body.
    pub payload: Vec<u8>,
    /// `x-coffer-reason`; for a message the broker dead-lettered on its own,
    /// `"dead-lettered by the broker: <x-death reason>"` (e.g. `delivery_limit`).
    pub reason: Option<String>,
    /// `x-coffer-error-class` (`retryable` / `permanent`), when Coffer dead-lettered it.
    pub class: Option<String>,
    /// The AMQP `message_id` (the job id).
    pub message_id: Option<String>,
    /// The AMQP `type` (the job kind).
    pub kind: Option<String>,
    /// The tenant the publisher named (header `x-coffer-tenant`).
    pub tenant: Option<String>,
    /// When the job was published last (AMQP `timestamp`, Unix seconds).
    pub published_at: Option<u64>,
    /// How many times it was replayed from the dead-letter queue before (`x-coffer-replays`).
    pub replays: u32,
    /// Attempts made: `x-coffer-attempts`, else the message's `x-coffer-attempt`, else 0.
    pub attempts: u32,
    /// `count` of the `x-death` entry for the jobs queue, when the broker dead-lettered it
    /// (e.g. over the delivery limit).
    pub death_count: Option<i64>,
}

impl DeadLetter {
    pub(crate) fn from_delivery(d: &Delivery, jobs_queue: &str) -> Self {
        let h = d.properties.headers().clone().unwrap_or_default();
        let death = headers::death_from(&h, jobs_queue);
        let broker_reason = death
            .as_ref()
            .and_then(|(_, reason)| reason.as_ref())
            .map(|r| format!("dead-lettered by the broker: {r}"));
        let attempts = headers::get_int(&h, headers::ATTEMPTS)
            .or_else(|| headers::get_int(&h, headers::ATTEMPT))
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        Self {
            payload: d.data.clone(),
            reason: headers::get_str(&h, headers::REASON).or(broker_reason),
            class: headers::get_str(&h, headers::ERROR_CLASS),
            message_id: d
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_owned()),
            kind: d.properties.kind().as_ref().map(|s| s.as_str().to_owned()),
            tenant: headers::get_str(&h, headers::TENANT),
            published_at: *d.properties.timestamp(),
            replays: headers::get_int(&h, headers::REPLAYS)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            attempts,
            death_count: death.map(|(count, _)| count),
        }
    }
}
