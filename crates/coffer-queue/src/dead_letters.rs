//! Looking into the dead-letter queue and replaying from it, without losing a letter.
//!
//! - [`Broker::browse_dead_letters`] reads letters without taking them: each is fetched
//!   unacknowledged and handed back when the channel closes.
//! - [`Broker::replay_dead_letters`] sends the letters an operator selects back to the jobs
//!   exchange, each as the job it was (id, kind, tenant, body, trace context) with a fresh
//!   attempt budget, and acks a letter only once the broker confirmed its replay. A crash in
//!   between leaves the letter in the queue *and* the job replayed: at-least-once, as every job
//!   delivery is, and the handlers are idempotent. Letters not selected stay unacknowledged
//!   until the end, so each letter is looked at once however the broker orders returns.

use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::FieldTable;

use crate::broker::{Broker, close_channel};
use crate::error::QueueError;
use crate::headers;
use crate::message::DeadLetter;
use crate::publish::{copy_properties, now_secs};

/// Headers a dead letter carries about its failure; a replay starts without them.
const FAILURE_HEADERS: &[&str] = &[
    headers::ATTEMPT,
    headers::ATTEMPTS,
    headers::REASON,
    headers::ERROR_CLASS,
    headers::ORIGINAL_QUEUE,
    headers::X_DEATH,
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
];

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// The letters sent back to the jobs queue (and removed from the dead-letter queue).
    pub replayed: Vec<DeadLetter>,
    /// Letters selected but left in place: they are not jobs (no id or no kind), so a replay
    /// would only dead-letter them again.
    pub not_replayable: Vec<DeadLetter>,
    /// Letters looked at and not selected; they stay in the dead-letter queue.
    pub kept: usize,
}

impl Broker {
    /// Up to `limit` letters from the head of the dead-letter queue, left in it.
    pub async fn browse_dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let depth = self
            .queue_depth(self.topology().dead_letter_queue())
            .await?;
        let channel = self.channel().await?;
        let mut letters = Vec::new();
        while letters.len() < limit.min(to_usize(depth)) {
            let Some(delivery) = self.get_unacked(&channel).await? else {
                break;
            };
            letters.push(self.letter_of(&delivery));
        }
        // closing the channel hands every fetched letter back to the queue
        close_channel(channel).await;
        Ok(letters)
    }

    /// Replays the letters `select` picks, at most `limit` of them, from the letters in the
    /// dead-letter queue when the call starts.
    pub async fn replay_dead_letters(
        &self,
        limit: usize,
        select: impl Fn(&DeadLetter) -> bool,
    ) -> Result<ReplayReport, QueueError> {
        let depth = self
            .queue_depth(self.topology().dead_letter_queue())
            .await?;
        let publisher = self.publisher().await?;
        let channel = self.channel().await?;
        let mut report = ReplayReport::default();
        let result = async {
            for _ in 0..depth {
                if report.replayed.len() >= limit {
                    break;
                }
                let Some(delivery) = self.get_unacked(&channel).await? else {
                    break;
                };
                let letter = self.letter_of(&delivery);
                if !select(&letter) {
                    report.kept += 1;
                } else if letter.message_id.is_none() || letter.kind.is_none() {
                    report.not_replayable.push(letter);
                } else {
                    let props = replay_properties(&delivery.properties);
                    publisher
                        .publish(publisher.jobs_target(), &delivery.data, props)
                        .await?;
                    delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await
                        .map_err(QueueError::amqp("basic.ack"))?;
                    tracing::info!(
                        job_id = letter.message_id.as_deref().unwrap_or_default(),
                        tenant_id = letter.tenant.as_deref().unwrap_or_default(),
                        "dead letter replayed"
                    );
                    report.replayed.push(letter);
                }
            }
            Ok::<_, QueueError>(())
        }
        .await;
        // the letters not replayed go back to the queue with the channel
        close_channel(channel).await;
        result.map(|()| report)
    }

    async fn get_unacked(&self, channel: &lapin::Channel) -> Result<Option<Delivery>, QueueError> {
        let got = channel
            .basic_get(
                self.topology().dead_letter_queue().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .map_err(QueueError::amqp("basic.get"))?;
        Ok(got.map(|m| m.delivery))
    }

    fn letter_of(&self, delivery: &Delivery) -> DeadLetter {
        DeadLetter::from_delivery(delivery, self.topology().jobs_queue())
    }
}

/// The properties of a replayed job: the dead letter's own (id, kind, tenant, trace context),
/// without its failure headers, counting the replay in `x-coffer-replays`, stamped now (the
/// queue-lag metric measures from the timestamp).
fn replay_properties(props: &BasicProperties) -> BasicProperties {
    let original = props.headers().clone().unwrap_or_default();
    let replays = headers::get_int(&original, headers::REPLAYS).unwrap_or(0);
    let mut kept = FieldTable::default();
    for (key, value) in original.inner() {
        if !FAILURE_HEADERS.contains(&key.as_str()) {
            kept.insert(key.clone(), value.clone());
        }
    }
    let mut extra = FieldTable::default();
    headers::put_int(&mut extra, headers::REPLAYS, replays.saturating_add(1));
    copy_properties(&props.clone().with_headers(kept), extra).with_timestamp(now_secs())
}

fn to_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_keeps_the_job_and_drops_its_failure() {
        let mut h = FieldTable::default();
        headers::put_str(&mut h, headers::TENANT, "acme");
        headers::put_str(
            &mut h,
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        headers::put_int(&mut h, headers::ATTEMPT, 4);
        headers::put_int(&mut h, headers::ATTEMPTS, 5);
        headers::put_str(&mut h, headers::REASON, "access denied");
        headers::put_str(&mut h, headers::ERROR_CLASS, "permanent");
        headers::put_str(&mut h, "x-first-death-reason", "rejected");
        headers::put_int(&mut h, headers::REPLAYS, 1);
        let props = BasicProperties::default()
            .with_message_id("job-1".into())
            .with_type("backup_requested".into())
            .with_headers(h);

        let replay = replay_properties(&props);
        let h = replay.headers().clone().unwrap();
        assert_eq!(replay.message_id().as_ref().unwrap().as_str(), "job-1");
        assert_eq!(replay.kind().as_ref().unwrap().as_str(), "backup_requested");
        assert_eq!(
            headers::get_str(&h, headers::TENANT).as_deref(),
            Some("acme")
        );
        assert!(headers::get_str(&h, "traceparent").is_some());
        assert_eq!(headers::get_int(&h, headers::REPLAYS), Some(2));
        for gone in [
            headers::ATTEMPT,
            headers::ATTEMPTS,
            headers::REASON,
            headers::ERROR_CLASS,
            "x-first-death-reason",
        ] {
            assert!(!h.inner().contains_key(gone), "{gone} survived the replay");
        }
    }
}
