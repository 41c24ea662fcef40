//! The queue layer's error type and its retry class.
//!
//! Connection and channel failures are [`ErrorClass::Retryable`]: the broker may be back in a
//! moment. A topology mismatch (`PRECONDITION_FAILED` on declare), an unroutable publish, a missing
//! exchange or queue, refused credentials and invalid configuration are
//! [`ErrorClass::Permanent`]: trying again fails the same way until someone fixes something.
//! No variant ever shows the AMQP URL.

use std::time::Duration;

use coffer_core::{Classify, ErrorClass};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};

/// Everything that can go wrong talking to RabbitMQ.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A setting in [`crate::QueueConfig`] is unusable.
    #[error("invalid queue configuration: {0}")]
    Config(String),
    /// The AMQP URL does not parse (the value is not shown: it carries credentials).
    #[error("invalid amqp url (value not shown)")]
    InvalidUrl,
    /// A message field cannot be sent as given (e.g. longer than an AMQP short string).
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// The TCP/AMQP handshake failed.
    #[error("amqp connect to {endpoint} failed: {source}")]
    Connect {
        /// `scheme://host:port/vhost`, credentials removed.
        endpoint: String,
        /// What lapin reported.
        #[source]
        source: lapin::Error,
    },
    /// An AMQP operation failed (connection or channel error, missing exchange or queue, ...).
    #[error("amqp {op} failed: {source}")]
    Amqp {
        /// The operation, e.g. `"basic.publish"`.
        op: &'static str,
        /// What lapin reported.
        #[source]
        source: lapin::Error,
    },
    /// A declare found an existing exchange or queue with other settings (`PRECONDITION_FAILED`).
    #[error("topology mismatch on {name}: {source}")]
    TopologyMismatch {
        /// The exchange or queue name.
        name: String,
        /// What lapin reported.
        #[source]
        source: lapin::Error,
    },
    /// A mandatory publish matched no queue and the broker returned it.
    #[error(
        "message to exchange {exchange:?} with routing key {routing_key:?} was unroutable: {reply_code} {reply_text}"
    )]
    Unroutable {
        /// Target exchange (`""` is the default exchange).
        exchange: String,
        /// Routing key used.
        routing_key: String,
        /// AMQP reply code (312 NO_ROUTE).
        reply_code: u16,
        /// AMQP reply text.
        reply_text: String,
    },
    /// The broker refused to take responsibility for a message (publisher confirm nack).
    #[error("broker nacked message to exchange {exchange:?} with routing key {routing_key:?}")]
    Nacked {
        /// Target exchange.
        exchange: String,
        /// Routing key used.
        routing_key: String,
    },
    /// No publisher confirm arrived in time: the message must be treated as not delivered.
    #[error("no publisher confirm within {0:?}")]
    ConfirmTimeout(Duration),
    /// The broker cancelled our consumer (e.g. its queue was deleted).
    #[error("consumer cancelled by the broker")]
    ConsumerCancelled,
}

impl QueueError {
    /// Wraps a lapin error from operation `op`.
    pub(crate) fn amqp(op: &'static str) -> impl FnOnce(lapin::Error) -> QueueError {
        move |source| QueueError::Amqp { op, source }
    }

    /// Wraps a lapin error from declaring `name`, recognising a topology mismatch.
    pub(crate) fn declare(name: &str, source: lapin::Error) -> QueueError {
        if is_precondition_failed(&source) {
            QueueError::TopologyMismatch {
                name: name.to_owned(),
                source,
            }
        } else {
            QueueError::Amqp {
                op: "declare",
                source,
            }
        }
    }
}

impl Classify for QueueError {
    fn class(&self) -> ErrorClass {
        match self {
            QueueError::Config(_)
            | QueueError::InvalidUrl
            | QueueError::InvalidMessage(_)
            | QueueError::TopologyMismatch { .. }
            | QueueError::Unroutable { .. } => ErrorClass::Permanent,
            QueueError::Connect { source, .. } | QueueError::Amqp { source, .. } => {
                classify_lapin(source)
            }
            QueueError::Nacked { .. }
            | QueueError::ConfirmTimeout(_)
            | QueueError::ConsumerCancelled => ErrorClass::Retryable,
        }
    }
}

fn is_precondition_failed(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p)
        if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)))
}

/// Retry class of a raw lapin error.
pub(crate) fn classify_lapin(e: &lapin::Error) -> ErrorClass {
    use lapin::ErrorKind as K;
    match e.kind() {
        K::ProtocolError(p) => classify_amqp(p.kind()),
        K::InvalidProtocolVersion(_)
        | K::ParsingError(_)
        | K::SerialisationError(_)
        | K::AuthProviderError(_)
        | K::NoDefaultRuntime => ErrorClass::Permanent,
        _ => ErrorClass::Retryable,
    }
}

fn classify_amqp(kind: &AMQPErrorKind) -> ErrorClass {
    match kind {
        AMQPErrorKind::Soft(
            AMQPSoftError::PRECONDITIONFAILED
            | AMQPSoftError::ACCESSREFUSED
            | AMQPSoftError::NOTFOUND
            | AMQPSoftError::NOROUTE
            | AMQPSoftError::CONTENTTOOLARGE,
        ) => ErrorClass::Permanent,
        AMQPErrorKind::Hard(
            AMQPHardError::NOTALLOWED
            | AMQPHardError::INVALIDPATH
            | AMQPHardError::SYNTAXERROR
            | AMQPHardError::COMMANDINVALID
            | AMQPHardError::NOTIMPLEMENTED,
        ) => ErrorClass::Permanent,
        _ => ErrorClass::Retryable,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn permanent_and_retryable_variants() {
        let unroutable = QueueError::Unroutable {
            exchange: "x".into(),
            routing_key: "k".into(),
            reply_code: 312,
            reply_text: "NO_ROUTE".into(),
        };
        assert_eq!(unroutable.class(), ErrorClass::Permanent);
        assert_eq!(QueueError::InvalidUrl.class(), ErrorClass::Permanent);
        assert!(QueueError::ConfirmTimeout(Duration::from_secs(1)).is_retryable());
        assert!(QueueError::ConsumerCancelled.is_retryable());
    }

    #[test]
    fn amqp_codes_are_classified() {
        assert_eq!(
            classify_amqp(&AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)),
            ErrorClass::Permanent
        );
        assert_eq!(
            classify_amqp(&AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED)),
            ErrorClass::Retryable
        );
        assert_eq!(
            classify_amqp(&AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED)),
            ErrorClass::Retryable
        );
    }

    #[test]
    fn io_errors_are_retryable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = lapin::Error::from(io);
        assert_eq!(classify_lapin(&e), ErrorClass::Retryable);
    }
}
