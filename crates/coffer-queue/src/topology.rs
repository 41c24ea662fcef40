//! Names and declarations of every exchange and queue, all derived from one prefix.
//!
//! ```text
//! {p}.jobs (direct) --{p}.jobs--> {p}.jobs (quorum, x-delivery-limit, DLX {p}.dlx)
//! {p}.dlx (fanout) --> {p}.jobs.dlq (quorum)
//! "" (default) --{p}.jobs.retry.{ms}ms--> {p}.jobs.retry.{ms}ms (classic, TTL, DLX {p}.jobs)
//! "" (default) --{p}.jobs.parked--> {p}.jobs.parked (classic, TTL park_delay, DLX {p}.jobs)
//! {p}.events (topic)
//! ```
//!
//! A retried job is published to the retry queue of its delay; when its TTL expires the broker
//! dead-letters it to the jobs exchange with the jobs routing key, which puts it back in the jobs
//! queue. A deferred job (not a failure: its attempt count is unchanged) waits the same way in
//! the parked queue. Declaring is idempotent; declaring over an existing queue with other arguments fails
//! with `PRECONDITION_FAILED`, reported as [`crate::QueueError::TopologyMismatch`].

use std::time::Duration;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use crate::QueueConfig;
use crate::error::QueueError;

/// A delay queue: jobs wait here for `delay`, then go back to the jobs queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryQueue {
    /// Queue name, `{prefix}.jobs.retry.{ms}ms`.
    pub name: String,
    /// Message TTL of the queue.
    pub delay: Duration,
}

/// The names (and the few arguments) of the broker objects Coffer uses.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    jobs: String,
    dead_letter_exchange: String,
    dead_letter_queue: String,
    events_exchange: String,
    retry_queues: Vec<RetryQueue>,
    parked: RetryQueue,
    delivery_limit: u32,
}

impl Topology {
    /// Derives every name from `cfg.prefix`, one retry queue per entry of `cfg.retry_delays`.
    pub fn new(cfg: &QueueConfig) -> Self {
        let p = &cfg.prefix;
        Self {
            prefix: p.clone(),
            jobs: format!("{p}.jobs"),
            dead_letter_exchange: format!("{p}.dlx"),
            dead_letter_queue: format!("{p}.jobs.dlq"),
            events_exchange: format!("{p}.events"),
            retry_queues: cfg
                .retry_delays
                .iter()
                .map(|&delay| RetryQueue {
                    name: format!("{p}.jobs.retry.{}ms", delay.as_millis()),
                    delay,
                })
                .collect(),
            parked: RetryQueue {
                name: format!("{p}.jobs.parked"),
                delay: cfg.park_delay,
            },
            delivery_limit: cfg.delivery_limit,
        }
    }

    /// The prefix every name starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The direct exchange jobs are published to.
    pub fn jobs_exchange(&self) -> &str {
        &self.jobs
    }

    /// The quorum queue workers consume.
    pub fn jobs_queue(&self) -> &str {
        &self.jobs
    }

    /// The routing key binding the jobs queue to the jobs exchange.
    pub fn jobs_routing_key(&self) -> &str {
        &self.jobs
    }

    /// The fanout exchange dead letters go to (ours and the broker's).
    pub fn dead_letter_exchange(&self) -> &str {
        &self.dead_letter_exchange
    }

    /// The quorum queue holding dead letters until someone looks at them.
    pub fn dead_letter_queue(&self) -> &str {
        &self.dead_letter_queue
    }

    /// The topic exchange for events (progress, completion) that others may subscribe to.
    pub fn events_exchange(&self) -> &str {
        &self.events_exchange
    }

    /// The delay queues, in the order of the configured delays.
    pub fn retry_queues(&self) -> &[RetryQueue] {
        &self.retry_queues
    }

    /// The queue deferred jobs wait in before they are delivered again.
    pub fn parked_queue(&self) -> &RetryQueue {
        &self.parked
    }

    /// The delay queue for a job whose attempt number `attempt` (0-based) just failed.
    pub fn retry_queue_for_attempt(&self, attempt: u32) -> Option<&RetryQueue> {
        let last = self.retry_queues.len().checked_sub(1)?;
        let index = usize::try_from(attempt).map_or(last, |a| a.min(last));
        self.retry_queues.get(index)
    }

    /// Every queue name, deduplicated (two equal delays share a queue).
    pub fn queue_names(&self) -> Vec<&str> {
        let mut names = vec![
            self.jobs_queue(),
            self.dead_letter_queue(),
            &self.parked.name,
        ];
        for q in &self.retry_queues {
            if !names.contains(&q.name.as_str()) {
                names.push(&q.name);
            }
        }
        names
    }

    /// Every exchange name.
    pub fn exchange_names(&self) -> [&str; 3] {
        [
            self.jobs_exchange(),
            self.dead_letter_exchange(),
            self.events_exchange(),
        ]
    }

    /// Declares everything on `channel` (idempotent).
    pub(crate) async fn declare(&self, channel: &Channel) -> Result<(), QueueError> {
        declare_exchange(channel, self.jobs_exchange(), ExchangeKind::Direct).await?;
        declare_exchange(channel, self.dead_letter_exchange(), ExchangeKind::Fanout).await?;
        declare_exchange(channel, self.events_exchange(), ExchangeKind::Topic).await?;
        declare_queue(channel, self.jobs_queue(), self.jobs_queue_args()).await?;
        bind(
            channel,
            self.jobs_queue(),
            self.jobs_exchange(),
            self.jobs_routing_key(),
        )
        .await?;
        declare_queue(channel, self.dead_letter_queue(), quorum_args()).await?;
        bind(
            channel,
            self.dead_letter_queue(),
            self.dead_letter_exchange(),
            "",
        )
        .await?;
        for q in self.retry_queues.iter().chain([&self.parked]) {
            declare_queue(channel, &q.name, self.retry_queue_args(q.delay)).await?;
        }
        Ok(())
    }

    /// Deletes every queue and exchange (messages in them are lost).
    pub(crate) async fn delete(&self, channel: &Channel) -> Result<(), QueueError> {
        for name in self.queue_names() {
            channel
                .queue_delete(name.into(), QueueDeleteOptions::default())
                .await
                .map_err(QueueError::amqp("queue.delete"))?;
        }
        for name in self.exchange_names() {
            channel
                .exchange_delete(name.into(), ExchangeDeleteOptions::default())
                .await
                .map_err(QueueError::amqp("exchange.delete"))?;
        }
        Ok(())
    }

    fn jobs_queue_args(&self) -> FieldTable {
        let mut args = quorum_args();
        args.insert(
            "x-dead-letter-exchange".into(),
            long_string(self.dead_letter_exchange()),
        );
        // at-least-once dead-lettering: the broker keeps a message until the DLQ confirmed it;
        // it requires the reject-publish overflow mode (there is no length limit, so it is inert).
        args.insert(
            "x-dead-letter-strategy".into(),
            long_string("at-least-once"),
        );
        args.insert("x-overflow".into(), long_string("reject-publish"));
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
        );
        args
    }

    fn retry_queue_args(&self, delay: Duration) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), long_string("classic"));
        let ttl_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
        args.insert(
            "x-dead-letter-exchange".into(),
            long_string(self.jobs_exchange()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            long_string(self.jobs_routing_key()),
        );
        args
    }
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    args
}

async fn declare_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
) -> Result<(), QueueError> {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(name.into(), kind, options, FieldTable::default())
        .await
        .map_err(|e| QueueError::declare(name, e))
}

async fn declare_queue(channel: &Channel, name: &str, args: FieldTable) -> Result<(), QueueError> {
    channel
        .queue_declare(name.into(), QueueDeclareOptions::durable(), args)
        .await
        .map(drop)
        .map_err(|e| QueueError::declare(name, e))
}

async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<(), QueueError> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(QueueError::amqp("queue.bind"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use coffer_core::secret::SecretString;

    fn topology(delays_ms: &[u64]) -> Topology {
        let mut cfg = QueueConfig::new(SecretString::from("amqp://h".to_owned()));
        cfg.prefix = "t1".into();
        cfg.retry_delays = delays_ms
            .iter()
            .map(|&ms| Duration::from_millis(ms))
            .collect();
        Topology::new(&cfg)
    }

    #[test]
    fn names_follow_the_prefix() {
        let t = topology(&[200, 1000]);
        assert_eq!(t.jobs_exchange(), "t1.jobs");
        assert_eq!(t.jobs_queue(), "t1.jobs");
        assert_eq!(t.dead_letter_exchange(), "t1.dlx");
        assert_eq!(t.dead_letter_queue(), "t1.jobs.dlq");
        assert_eq!(t.events_exchange(), "t1.events");
        assert_eq!(t.retry_queues()[0].name, "t1.jobs.retry.200ms");
        assert_eq!(t.retry_queues()[1].name, "t1.jobs.retry.1000ms");
    }

    #[test]
    fn retry_queue_for_attempt_saturates_at_the_last_delay() {
        let t = topology(&[200, 1000]);
        assert_eq!(
            t.retry_queue_for_attempt(0).map(|q| q.delay.as_millis()),
            Some(200)
        );
        assert_eq!(
            t.retry_queue_for_attempt(1).map(|q| q.delay.as_millis()),
            Some(1000)
        );
        assert_eq!(
            t.retry_queue_for_attempt(7).map(|q| q.delay.as_millis()),
            Some(1000)
        );
        assert!(topology(&[]).retry_queue_for_attempt(0).is_none());
    }

    #[test]
    fn equal_delays_share_a_queue() {
        let t = topology(&[200, 200]);
        assert_eq!(
            t.queue_names(),
            vec![
                "t1.jobs",
                "t1.jobs.dlq",
                "t1.jobs.parked",
                "t1.jobs.retry.200ms"
            ]
        );
    }
}
