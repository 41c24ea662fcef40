//! [`Broker`]: one AMQP connection with the topology of one prefix, and the admin operations the
//! CLI and tests need (declare, delete, queue depth, reading the dead-letter queue, watching
//! the events exchange).

use std::sync::Arc;

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};

use crate::config::{QueueConfig, endpoint_of};
use crate::error::QueueError;
use crate::message::DeadLetter;
use crate::publish::Publisher;
use crate::topology::Topology;

/// A connection to RabbitMQ plus the names of Coffer's exchanges and queues.
pub struct Broker {
    connection: Arc<Connection>,
    topology: Arc<Topology>,
    cfg: Arc<QueueConfig>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("prefix", &self.topology.prefix())
            .finish()
    }
}

impl Broker {
    /// Validates `cfg` and connects. The connection is named `{prefix}.client` (visible in
    /// `rabbitmqctl list_connections client_properties`).
    pub async fn connect(cfg: &QueueConfig) -> Result<Broker, QueueError> {
        cfg.validate()?;
        let connection = open_connection(cfg, "client").await?;
        Ok(Broker {
            connection: Arc::new(connection),
            topology: Arc::new(Topology::new(cfg)),
            cfg: Arc::new(cfg.clone()),
        })
    }

    /// Declares every exchange, queue and binding (idempotent).
    pub async fn declare_topology(&self) -> Result<(), QueueError> {
        let channel = self.channel().await?;
        self.topology.declare(&channel).await?;
        close_channel(channel).await;
        Ok(())
    }

    /// The names of the exchanges and queues.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// A publisher with its own confirm-mode channel on this connection; once the connection
    /// is lost, the publisher opens one of its own.
    pub async fn publisher(&self) -> Result<Publisher, QueueError> {
        Publisher::open(
            self.connection.clone(),
            self.topology.clone(),
            Some(self.cfg.clone()),
        )
        .await
    }

    /// Takes one message from the dead-letter queue (get, then ack), or `None` if it is empty.
    pub async fn get_dead_letter(&self) -> Result<Option<DeadLetter>, QueueError> {
        let channel = self.channel().await?;
        let got = channel
            .basic_get(
                self.topology.dead_letter_queue().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .map_err(QueueError::amqp("basic.get"))?;
        let Some(message) = got else {
            close_channel(channel).await;
            return Ok(None);
        };
        let letter = DeadLetter::from_delivery(&message.delivery, self.topology.jobs_queue());
        message
            .delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(QueueError::amqp("basic.ack"))?;
        close_channel(channel).await;
        Ok(Some(letter))
    }

    /// Declares `{prefix}.watch.{name}`, a queue of the caller's own bound to the events exchange
    /// for `pattern` (e.g. `job.backup.#`), and returns its name. It receives the events
    /// published from then on, and expires after ten minutes without use.
    pub async fn watch_events(&self, name: &str, pattern: &str) -> Result<String, QueueError> {
        let queue = format!("{}.watch.{name}", self.topology.prefix());
        let mut args = FieldTable::default();
        args.insert(
            "x-expires".into(),
            lapin::types::AMQPValue::LongUInt(600_000),
        );
        let channel = self.channel().await?;
        channel
            .queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), args)
            .await
            .map_err(QueueError::amqp("queue.declare"))?;
        channel
            .queue_bind(
                queue.as_str().into(),
                self.topology.events_exchange().into(),
                pattern.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(QueueError::amqp("queue.bind"))?;
        close_channel(channel).await;
        Ok(queue)
    }

    /// Takes one event from a watch queue (get, then ack): its routing key and payload, or
    /// `None` if the queue is empty.
    pub async fn next_event(&self, queue: &str) -> Result<Option<(String, Vec<u8>)>, QueueError> {
        let channel = self.channel().await?;
        let got = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .map_err(QueueError::amqp("basic.get"))?;
        close_channel(channel).await;
        Ok(got.map(|m| {
            (
                m.delivery.routing_key.as_str().to_owned(),
                m.delivery.data.clone(),
            )
        }))
    }

    /// Messages ready for delivery in `queue` (unacknowledged ones are not counted), by passive
    /// declare; a missing queue is an error.
    pub async fn queue_depth(&self, queue: &str) -> Result<u32, QueueError> {
        let channel = self.channel().await?;
        let name = lapin::types::ShortString::try_new(queue)
            .map_err(|_| QueueError::InvalidMessage("queue name longer than 255 bytes".into()))?;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = channel
            .queue_declare(name, options, FieldTable::default())
            .await
            .map_err(QueueError::amqp("queue.declare(passive)"))?;
        close_channel(channel).await;
        Ok(declared.message_count())
    }

    /// Deletes every queue and exchange of this prefix, with the messages in them.
    pub async fn delete_topology(&self) -> Result<(), QueueError> {
        let channel = self.channel().await?;
        self.topology.delete(&channel).await?;
        close_channel(channel).await;
        Ok(())
    }

    /// Closes the connection cleanly.
    pub async fn close(self) -> Result<(), QueueError> {
        self.connection
            .close(200, "ok".into())
            .await
            .map_err(QueueError::amqp("connection.close"))
    }

    pub(crate) async fn channel(&self) -> Result<Channel, QueueError> {
        self.connection
            .create_channel()
            .await
            .map_err(QueueError::amqp("channel.open"))
    }
}

/// Opens a connection named `{prefix}.{role}`.
pub(crate) async fn open_connection(
    cfg: &QueueConfig,
    role: &str,
) -> Result<Connection, QueueError> {
    let uri = cfg.parse_url()?;
    let endpoint = endpoint_of(&uri);
    let name = format!("{}.{role}", cfg.prefix);
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect_uri(uri, props)
        .await
        .map_err(|source| QueueError::Connect { endpoint, source })
}

/// Closes a channel we are done with; a channel the broker already closed is fine.
pub(crate) async fn close_channel(channel: Channel) {
    if channel.status().connected()
        && let Err(e) = channel.close(200, "ok".into()).await
    {
        tracing::debug!(error = %e, "closing amqp channel failed");
    }
}
