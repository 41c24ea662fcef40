//! Publishing with publisher confirms.
//!
//! Every publish waits for the broker's confirm: a message counts as sent only once the broker has
//! taken responsibility for it. Jobs are `mandatory`, so a job that matches no queue comes back as
//! [`QueueError::Unroutable`] instead of vanishing (an unroutable message is otherwise *confirmed*).
//! A [`Publisher`] owns one confirm-mode channel; if the broker closes it (e.g. after a publish to a
//! missing exchange) the next publish opens a new one on the same connection. A publisher made by
//! a [`crate::Broker`] also opens a new connection when its own was lost (a broker restart), so a
//! long-running worker keeps publishing tasks after RabbitMQ comes back.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use tokio::sync::Mutex;

use crate::broker::open_connection;
use crate::config::QueueConfig;
use crate::error::QueueError;
use crate::headers;
use crate::message::OutgoingJob;
use crate::topology::Topology;

/// How long a publish waits for the broker's confirm before treating the message as not sent.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Content type of job and event payloads.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

/// Where a message goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub mandatory: bool,
}

/// Publishes jobs and events and waits for each confirm. Cheap to clone; clones share a channel.
#[derive(Clone)]
pub struct Publisher {
    link: Arc<Mutex<Link>>,
    /// Settings to open a new connection with when the current one is lost; `None` for a
    /// publisher on a consumer session's connection (the session reconnects as a whole).
    reconnect: Option<Arc<QueueConfig>>,
    topology: Arc<Topology>,
}

/// The connection and the confirm-mode channel on it.
struct Link {
    connection: Arc<Connection>,
    channel: Channel,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("prefix", &self.topology.prefix())
            .finish()
    }
}

impl Publisher {
    /// Opens a confirm-mode channel on `connection`.
    pub(crate) async fn open(
        connection: Arc<Connection>,
        topology: Arc<Topology>,
        reconnect: Option<Arc<QueueConfig>>,
    ) -> Result<Self, QueueError> {
        let channel = open_confirm_channel(&connection).await?;
        Ok(Self {
            link: Arc::new(Mutex::new(Link {
                connection,
                channel,
            })),
            reconnect,
            topology,
        })
    }

    /// Publishes a job to the jobs exchange: persistent, mandatory, protobuf content type, with
    /// the current span's trace context in its headers.
    pub async fn publish_job(&self, job: OutgoingJob<'_>) -> Result<(), QueueError> {
        let mut h = FieldTable::default();
        if let Some(tenant) = job.tenant {
            headers::put_str(&mut h, headers::TENANT, tenant);
        }
        crate::trace_context::inject_current(&mut h);
        let props = job_properties(job.message_id, job.kind)?.with_headers(h);
        self.publish(self.jobs_target(), job.payload, props).await
    }

    /// Publishes an event to the events exchange. Not mandatory: an event nobody listens to is
    /// not an error.
    pub async fn publish_event(&self, routing_key: &str, payload: &[u8]) -> Result<(), QueueError> {
        let props = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type(PROTOBUF_CONTENT_TYPE.into())
            .with_timestamp(now_secs());
        let target = Target {
            exchange: self.topology.events_exchange(),
            routing_key,
            mandatory: false,
        };
        check_short(routing_key, "routing key")?;
        self.publish(target, payload, props).await
    }

    /// Publishes a job body with no properties at all (no id, no type, not persistent), so tests
    /// can send malformed messages.
    pub async fn publish_raw_job(&self, payload: &[u8]) -> Result<(), QueueError> {
        self.publish(self.jobs_target(), payload, BasicProperties::default())
            .await
    }

    /// Publishes and waits for the confirm; a return or a nack is an error.
    pub(crate) async fn publish(
        &self,
        target: Target<'_>,
        payload: &[u8],
        props: BasicProperties,
    ) -> Result<(), QueueError> {
        let channel = self.channel().await?;
        let options = BasicPublishOptions {
            mandatory: target.mandatory,
            immediate: false,
        };
        let confirm = channel
            .basic_publish(
                short(target.exchange, "exchange")?,
                short(target.routing_key, "routing key")?,
                options,
                payload,
                props,
            )
            .await
            .map_err(QueueError::amqp("basic.publish"))?;
        let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
            .await
            .map_err(|_| QueueError::ConfirmTimeout(CONFIRM_TIMEOUT))?
            .map_err(QueueError::amqp("publisher confirm"))?;
        check_confirmation(target, confirmation)
    }

    pub(crate) fn jobs_target(&self) -> Target<'_> {
        Target {
            exchange: self.topology.jobs_exchange(),
            routing_key: self.topology.jobs_routing_key(),
            mandatory: true,
        }
    }

    /// The current channel, reopened if the broker closed it (on a new connection if the
    /// connection was lost and this publisher may reconnect).
    async fn channel(&self) -> Result<Channel, QueueError> {
        let mut link = self.link.lock().await;
        if link.channel.status().connected() {
            return Ok(link.channel.clone());
        }
        if let Some(cfg) = &self.reconnect
            && !link.connection.status().connected()
        {
            tracing::info!("publisher connection lost, connecting again");
            link.connection = Arc::new(open_connection(cfg, "publisher").await?);
        }
        tracing::debug!("publisher channel closed, opening a new one");
        link.channel = open_confirm_channel(&link.connection).await?;
        Ok(link.channel.clone())
    }
}

/// Opens a channel and puts it in confirm mode.
pub(crate) async fn open_confirm_channel(connection: &Connection) -> Result<Channel, QueueError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(QueueError::amqp("channel.open"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(QueueError::amqp("confirm.select"))?;
    Ok(channel)
}

fn check_confirmation(target: Target<'_>, confirmation: Confirmation) -> Result<(), QueueError> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
            Err(QueueError::Unroutable {
                exchange: target.exchange.to_owned(),
                routing_key: target.routing_key.to_owned(),
                reply_code: returned.reply_code,
                reply_text: returned.reply_text.as_str().to_owned(),
            })
        }
        Confirmation::Nack(None) => Err(QueueError::Nacked {
            exchange: target.exchange.to_owned(),
            routing_key: target.routing_key.to_owned(),
        }),
        Confirmation::NotRequested => Err(QueueError::Config(
            "publisher channel is not in confirm mode".to_owned(),
        )),
    }
}

fn job_properties(message_id: &str, kind: &str) -> Result<BasicProperties, QueueError> {
    Ok(BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(PROTOBUF_CONTENT_TYPE.into())
        .with_message_id(short(message_id, "message id")?)
        .with_type(short(kind, "job kind")?)
        .with_app_id("coffer".into())
        .with_timestamp(now_secs()))
}

/// A copy of `props` made persistent, with `extra` headers merged over the original ones.
pub(crate) fn copy_properties(props: &BasicProperties, extra: FieldTable) -> BasicProperties {
    let mut merged = props.headers().clone().unwrap_or_default();
    for (k, v) in extra.inner() {
        merged.insert(k.clone(), v.clone());
    }
    props
        .clone()
        .with_headers(merged)
        .with_delivery_mode(PERSISTENT)
}

fn short(s: &str, what: &str) -> Result<ShortString, QueueError> {
    ShortString::try_new(s)
        .map_err(|_| QueueError::InvalidMessage(format!("{what} longer than 255 bytes")))
}

fn check_short(s: &str, what: &str) -> Result<(), QueueError> {
    short(s, what).map(drop)
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn copy_keeps_properties_and_merges_headers() {
        let mut h = FieldTable::default();
        headers::put_str(&mut h, headers::TENANT, "acme");
        headers::put_int(&mut h, headers::ATTEMPT, 1);
        let props = job_properties("job-1", "backup_requested")
            .unwrap()
            .with_headers(h);
        let mut extra = FieldTable::default();
        headers::put_int(&mut extra, headers::ATTEMPT, 2);
        let copy = copy_properties(&props, extra);
        assert_eq!(
            copy.message_id().as_ref().map(|s| s.as_str()),
            Some("job-1")
        );
        assert_eq!(
            copy.kind().as_ref().map(|s| s.as_str()),
            Some("backup_requested")
        );
        assert_eq!(*copy.delivery_mode(), Some(PERSISTENT));
        let h = copy.headers().clone().unwrap();
        assert_eq!(headers::get_int(&h, headers::ATTEMPT), Some(2));
        assert_eq!(
            headers::get_str(&h, headers::TENANT).as_deref(),
            Some("acme")
        );
    }

    #[test]
    fn overlong_message_id_is_an_error_not_a_panic() {
        let id = "x".repeat(300);
        assert!(matches!(
            job_properties(&id, "k"),
            Err(QueueError::InvalidMessage(_))
        ));
    }
}
