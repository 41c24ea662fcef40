//! What each of a prefix's queues holds and who consumes it, for `coffer status`.
//!
//! Read with a passive `queue.declare`, which returns both counts and changes nothing: a queue
//! that does not exist (its topology never declared) is reported as missing instead of created.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;

use crate::broker::{Broker, close_channel};
use crate::error::QueueError;

/// What a queue is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRole {
    /// The queue workers consume.
    Jobs,
    /// A delay queue retried jobs wait in.
    Retry(Duration),
    /// The queue jobs of paused orgs wait in.
    Parked,
    /// Dead letters, until someone looks at them.
    DeadLetter,
}

impl QueueRole {
    /// `jobs`, `retry`, `parked` or `dead_letter`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueRole::Jobs => "jobs",
            QueueRole::Retry(_) => "retry",
            QueueRole::Parked => "parked",
            QueueRole::DeadLetter => "dead_letter",
        }
    }
}

/// One queue's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// The queue's name.
    pub name: String,
    /// What it is for.
    pub role: QueueRole,
    /// Its counts; `None` when the queue does not exist.
    pub counts: Option<QueueCounts>,
}

/// Counts of one queue, as the broker reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    /// Messages ready for delivery (unacknowledged ones are not counted).
    pub messages: u32,
    /// Consumers attached.
    pub consumers: u32,
}

impl Broker {
    /// The jobs queue, each retry queue, the parked queue and the dead-letter queue, in that
    /// order, with their counts.
    pub async fn queue_stats(&self) -> Result<Vec<QueueStats>, QueueError> {
        let topology = self.topology();
        let mut queues = vec![(topology.jobs_queue().to_owned(), QueueRole::Jobs)];
        queues.extend(
            topology
                .retry_queues()
                .iter()
                .map(|q| (q.name.clone(), QueueRole::Retry(q.delay))),
        );
        queues.push((topology.parked_queue().name.clone(), QueueRole::Parked));
        queues.push((
            topology.dead_letter_queue().to_owned(),
            QueueRole::DeadLetter,
        ));
        let mut stats = Vec::with_capacity(queues.len());
        for (name, role) in queues {
            let counts = self.counts(&name).await?;
            stats.push(QueueStats { name, role, counts });
        }
        Ok(stats)
    }

    /// One queue's counts by passive declare, `None` if it does not exist (the broker then
    /// closes the channel, so each queue gets a channel of its own).
    async fn counts(&self, queue: &str) -> Result<Option<QueueCounts>, QueueError> {
        let channel = self.channel().await?;
        let name = lapin::types::ShortString::try_new(queue)
            .map_err(|_| QueueError::InvalidMessage("queue name longer than 255 bytes".into()))?;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match channel
            .queue_declare(name, options, FieldTable::default())
            .await
        {
            Ok(declared) => {
                close_channel(channel).await;
                Ok(Some(QueueCounts {
                    messages: declared.message_count(),
                    consumers: declared.consumer_count(),
                }))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(QueueError::Amqp {
                op: "queue.declare(passive)",
                source: e,
            }),
        }
    }
}

fn is_not_found(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p)
        if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
}
