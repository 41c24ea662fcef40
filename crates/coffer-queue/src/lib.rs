//! RabbitMQ: topology, publisher with confirms, consumer loop with retry and dead-lettering.
//!
//! - [`Broker`] connects, declares the [`Topology`] of one prefix, hands out [`Publisher`]s, and
//!   offers the admin helpers (queue depth, teardown, and browsing and replaying the
//!   dead-letter queue).
//! - [`Publisher`] waits for a publisher confirm on every message; an unroutable job is an error.
//! - [`run_consumer`] consumes the jobs queue with manual acks and a [`JobHandler`], settles each
//!   delivery by its [`Outcome`] (ack, retry through a delay queue, dead-letter), and reconnects
//!   until shutdown.
//!
//! A published job carries the publisher's trace context in its headers, and the consumer's job
//! span continues it, so one backup is one trace across processes.
//!
//! Delivery is at-least-once: a job may run again after a crash, a lost connection or a failed
//! ack, so handlers must be idempotent.

mod backoff;
mod broker;
mod config;
mod consume;
mod dead_letters;
mod error;
pub mod headers;
mod message;
mod publish;
mod settle;
mod stats;
mod topology;
mod trace_context;

pub use broker::Broker;
pub use config::QueueConfig;
pub use consume::{ConsumerStatus, run_consumer, run_consumer_observed};
pub use dead_letters::ReplayReport;
pub use error::QueueError;
pub use message::{DeadLetter, JobDelivery, JobHandler, Outcome, OutgoingJob};
pub use publish::{CONFIRM_TIMEOUT, PROTOBUF_CONTENT_TYPE, Publisher};
pub use stats::{QueueCounts, QueueRole, QueueStats};
pub use topology::{RetryQueue, Topology};
