//! Settling a delivery once its handler returned: ack, retry through a delay queue, park
//! (defer without counting an attempt), or dead-letter; and handing over the delivery of a
//! handler that runs past [`crate::QueueConfig::max_hold`] (a parked copy, then an early ack;
//! its settlement then publishes copies only). The rule is the same everywhere: the original is acked only after the broker
//! confirmed the copy that replaces it; if the copy cannot be published the original is nacked
//! with requeue, so a message is never lost (at worst it is delivered again).

use std::sync::Arc;

use coffer_core::ErrorClass;
use coffer_core::metrics as m;
use lapin::Acker;
use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::FieldTable;
use tokio::task::JoinError;

use crate::error::QueueError;
use crate::headers;
use crate::message::{Outcome, is_last_attempt};
use crate::publish::{Publisher, Target, copy_properties};
use crate::topology::Topology;

/// What is kept of a delivery while its handler runs.
pub(crate) struct Received {
    acker: Acker,
    data: Vec<u8>,
    properties: BasicProperties,
    attempt: u32,
    /// The job kind's metric label.
    kind: &'static str,
    /// Acked early by [`Settler::hand_over`]; settling then only publishes copies.
    handed_over: bool,
}

impl Received {
    pub(crate) fn new(d: Delivery, attempt: u32, kind: &'static str) -> Self {
        Self {
            acker: d.acker,
            data: d.data,
            properties: d.properties,
            attempt,
            kind,
            handed_over: false,
        }
    }

    /// Counts how the job was settled.
    fn count(&self, outcome: &'static str) {
        metrics::counter!(m::JOBS_TOTAL, "kind" => self.kind, "outcome" => outcome).increment(1);
    }
}

/// Settles deliveries of one consumer session.
pub(crate) struct Settler {
    publisher: Publisher,
    topology: Arc<Topology>,
    max_attempts: u32,
}

impl Settler {
    /// Attempts before a retried job is dead-lettered.
    pub(crate) fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    pub(crate) fn new(publisher: Publisher, topology: Arc<Topology>, max_attempts: u32) -> Self {
        Self {
            publisher,
            topology,
            max_attempts,
        }
    }

    /// Applies the handler's result. A panicked handler counts as a retry; a cancelled one
    /// leaves the delivery unacked (the broker requeues it when the channel closes).
    pub(crate) async fn settle(&self, rec: Received, result: Result<Outcome, JoinError>) {
        match result {
            Ok(Outcome::Done) => {
                rec.count("ok");
                ack(&rec).await;
            }
            Ok(Outcome::Retry { reason }) => self.retry(rec, &reason).await,
            Ok(Outcome::Defer { reason }) => self.park(rec, &reason).await,
            Ok(Outcome::Reject { reason, class }) => self.dead_letter(rec, &reason, class).await,
            Err(e) if e.is_panic() => {
                let reason = format!("handler panicked: {}", panic_message(e));
                tracing::error!(attempt = rec.attempt, reason = %reason, "job handler panicked");
                self.retry(rec, &reason).await;
            }
            Err(_) => tracing::debug!(
                "job handler cancelled, leaving the delivery unacked (or to its parked copy)"
            ),
        }
    }

    async fn retry(&self, rec: Received, reason: &str) {
        let attempts = rec.attempt.saturating_add(1);
        if is_last_attempt(rec.attempt, self.max_attempts) {
            let reason = format!("gave up after {attempts} attempts: {reason}");
            return self.dead_letter(rec, &reason, ErrorClass::Retryable).await;
        }
        let Some(queue) = self.topology.retry_queue_for_attempt(rec.attempt) else {
            // Unreachable with a validated config (at least one delay); never drop the job.
            return requeue(&rec, "no retry queue configured").await;
        };
        let mut extra = FieldTable::default();
        headers::put_int(&mut extra, headers::ATTEMPT, i64::from(attempts));
        let target = Target {
            exchange: "",
            routing_key: &queue.name,
            mandatory: true,
        };
        let props = copy_properties(&rec.properties, extra);
        match self.publisher.publish(target, &rec.data, props).await {
            Ok(()) => {
                tracing::info!(attempt = rec.attempt, delay = ?queue.delay, reason = %reason, "job will be retried");
                rec.count("retry");
                ack(&rec).await;
            }
            Err(e) => requeue(&rec, &format!("retry publish failed: {e}")).await,
        }
    }

    /// Acks a delivery whose handler is still running, before the broker's consumer timeout
    /// closes the channel, after parking a copy with the same attempt count: if this worker dies
    /// before the handler ends, the copy brings the job back. If the copy cannot be published
    /// the delivery stays held.
    pub(crate) async fn hand_over(&self, rec: &mut Received) {
        match self.publish_parked(rec).await {
            Ok(()) => {
                tracing::info!(
                    attempt = rec.attempt,
                    "job still running; delivery handed over to a parked copy before the consumer timeout"
                );
                metrics::counter!(m::JOBS_HANDED_OVER_TOTAL, "kind" => rec.kind).increment(1);
                ack(rec).await;
                rec.handed_over = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not park a copy of a long-running job; holding its delivery");
            }
        }
    }

    /// Publishes a copy of the delivery, attempt count unchanged, to the parked queue.
    async fn publish_parked(&self, rec: &Received) -> Result<(), QueueError> {
        let target = Target {
            exchange: "",
            routing_key: &self.topology.parked_queue().name,
            mandatory: true,
        };
        let props = copy_properties(&rec.properties, FieldTable::default());
        self.publisher.publish(target, &rec.data, props).await
    }

    /// Publishes a copy to the parked queue with the same attempt count, then acks.
    async fn park(&self, rec: Received, reason: &str) {
        match self.publish_parked(&rec).await {
            Ok(()) => {
                let delay = self.topology.parked_queue().delay;
                tracing::info!(attempt = rec.attempt, ?delay, reason = %reason, "job deferred");
                rec.count("parked");
                ack(&rec).await;
            }
            Err(e) => requeue(&rec, &format!("park publish failed: {e}")).await,
        }
    }

    async fn dead_letter(&self, rec: Received, reason: &str, class: ErrorClass) {
        let attempts = rec.attempt.saturating_add(1);
        let props = copy_properties(
            &rec.properties,
            self.dead_letter_headers(reason, class, attempts),
        );
        let target = Target {
            exchange: self.topology.dead_letter_exchange(),
            routing_key: self.topology.jobs_routing_key(),
            mandatory: true,
        };
        match self.publisher.publish(target, &rec.data, props).await {
            Ok(()) => {
                tracing::warn!(attempts, class = %class, reason = %headers::truncate(reason, headers::MAX_REASON_BYTES), "job dead-lettered");
                rec.count("dead_letter");
                ack(&rec).await;
            }
            Err(e) => requeue(&rec, &format!("dead-letter publish failed: {e}")).await,
        }
    }

    fn dead_letter_headers(&self, reason: &str, class: ErrorClass, attempts: u32) -> FieldTable {
        let mut h = FieldTable::default();
        headers::put_str(
            &mut h,
            headers::REASON,
            headers::truncate(reason, headers::MAX_REASON_BYTES),
        );
        headers::put_str(&mut h, headers::ERROR_CLASS, class.as_str());
        headers::put_str(&mut h, headers::ORIGINAL_QUEUE, self.topology.jobs_queue());
        headers::put_int(&mut h, headers::ATTEMPTS, i64::from(attempts));
        h
    }
}

/// Acks the delivery, unless it was handed over (acked already).
async fn ack(rec: &Received) {
    if rec.handed_over {
        return;
    }
    report("basic.ack", rec.acker.ack(BasicAckOptions::default()).await);
}

/// Puts the delivery back in the queue; a handed-over delivery cannot be, and its parked copy
/// brings the job back instead.
async fn requeue(rec: &Received, why: &str) {
    if rec.handed_over {
        tracing::warn!(attempt = rec.attempt, error = %why, "job not settled; its parked copy brings it back");
        rec.count("requeued");
        return;
    }
    tracing::warn!(attempt = rec.attempt, error = %why, "requeueing job");
    rec.count("requeued");
    let options = BasicNackOptions {
        multiple: false,
        requeue: true,
    };
    report("basic.nack", rec.acker.nack(options).await);
}

/// Logs an ack/nack that did not reach the broker: the delivery will come back.
fn report(op: &'static str, result: Result<bool, lapin::Error>) {
    match result {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            op,
            "channel gone before settling, the broker will redeliver"
        ),
        Err(e) => {
            let e = QueueError::amqp(op)(e);
            tracing::warn!(error = %e, "settling a delivery failed, the broker will redeliver");
        }
    }
}

fn panic_message(e: JoinError) -> String {
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
