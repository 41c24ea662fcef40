//! The consumer: a supervisor that keeps one consumer session alive until shutdown.
//!
//! A session is one connection, the declared topology, one consume channel with
//! `basic.qos(prefetch)` and manual acks, and one confirm-mode publisher channel for retry and
//! dead-letter copies. Up to `prefetch` handlers run at once in a [`JoinSet`]; each delivery is
//! settled on its own channel after its handler returns (see [`crate::settle`]). A handler still
//! running after `max_hold` has its delivery handed over (a parked copy, then an ack), so no
//! delivery is held past the broker's consumer timeout.
//!
//! When the connection or channel is lost, in-flight handlers are aborted (their deliveries are
//! already requeued by the broker and may be running elsewhere), and the supervisor reconnects with
//! jittered exponential backoff. On shutdown the consumer is cancelled, in-flight handlers get
//! `drain_timeout` to finish, and whatever is still unacked is left to the broker to requeue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coffer_core::Classify;
use coffer_core::metrics as m;
use futures::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::broker::{close_channel, open_connection};
use crate::config::QueueConfig;
use crate::error::QueueError;
use crate::message::{JobDelivery, JobHandler};
use crate::publish::Publisher;
use crate::settle::{Received, Settler};
use crate::topology::Topology;

/// First reconnection delay.
const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// Longest reconnection delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A session that lasted this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(5);

/// Whether the consumer is consuming now: for a readiness probe. Cheap to clone; clones share.
#[derive(Debug, Clone, Default)]
pub struct ConsumerStatus(Arc<AtomicBool>);

impl ConsumerStatus {
    /// True while a session consumes (connected, topology declared, `basic.consume` done) and
    /// shutdown has not begun.
    pub fn is_consuming(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, consuming: bool) {
        self.0.store(consuming, Ordering::Relaxed);
    }
}

/// Consumes the jobs queue until `shutdown` is cancelled, reconnecting whenever the broker goes
/// away. Returns `Ok(())` after a graceful shutdown, or the error when it cannot go on without
/// someone fixing something (invalid configuration, refused credentials, topology mismatch).
pub async fn run_consumer<H: JobHandler>(
    cfg: QueueConfig,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> Result<(), QueueError> {
    run_consumer_observed(cfg, handler, shutdown, ConsumerStatus::default()).await
}

/// [`run_consumer`], reporting whether it is consuming through `status`.
pub async fn run_consumer_observed<H: JobHandler>(
    cfg: QueueConfig,
    handler: Arc<H>,
    shutdown: CancellationToken,
    status: ConsumerStatus,
) -> Result<(), QueueError> {
    cfg.validate()?;
    let mut backoff = Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX);
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        match Session::open(&cfg).await {
            Ok(session) => match session
                .run(&handler, &shutdown, cfg.drain_timeout, &status)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) => tracing::warn!(error = %e, "amqp connection lost, reconnecting"),
            },
            Err(e) if !e.is_retryable() => {
                tracing::error!(error = %e, "amqp consumer cannot start");
                return Err(e);
            }
            Err(e) => tracing::warn!(error = %e, "amqp connect failed, retrying"),
        }
        if started.elapsed() >= STABLE_SESSION {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    Ok(())
}

/// Why the consume loop stopped.
enum Stop {
    Shutdown,
    Lost(QueueError),
}

/// One connection's worth of consuming.
struct Session {
    connection: Arc<Connection>,
    channel: Channel,
    consumer: Consumer,
    settler: Arc<Settler>,
    max_hold: Duration,
}

impl Session {
    /// Connects, declares the topology, opens the publisher and starts consuming.
    async fn open(cfg: &QueueConfig) -> Result<Session, QueueError> {
        let topology = Arc::new(Topology::new(cfg));
        let connection = open_connection(cfg, "consumer").await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(QueueError::amqp("channel.open"))?;
        topology.declare(&channel).await?;
        channel
            .basic_qos(cfg.prefetch, BasicQosOptions::default())
            .await
            .map_err(QueueError::amqp("basic.qos"))?;
        let connection = Arc::new(connection);
        let publisher = Publisher::open(connection.clone(), topology.clone(), None).await?;
        let consumer = channel
            .basic_consume(
                topology.jobs_queue().into(),
                format!("{}.consumer.{}", cfg.prefix, uuid::Uuid::new_v4()).into(),
                BasicConsumeOptions {
                    no_ack: false,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(QueueError::amqp("basic.consume"))?;
        tracing::info!(endpoint = %cfg.redacted_endpoint(), queue = topology.jobs_queue(), prefetch = cfg.prefetch, "amqp consumer started");
        let settler = Arc::new(Settler::new(publisher, topology, cfg.max_attempts));
        Ok(Session {
            connection,
            channel,
            consumer,
            settler,
            max_hold: cfg.max_hold,
        })
    }

    /// Consumes until shutdown or loss; `Ok(())` means a graceful shutdown.
    async fn run<H: JobHandler>(
        mut self,
        handler: &Arc<H>,
        shutdown: &CancellationToken,
        drain_timeout: Duration,
        status: &ConsumerStatus,
    ) -> Result<(), QueueError> {
        let mut tasks = JoinSet::new();
        status.set(true);
        let stop = self.consume(handler, shutdown, &mut tasks).await;
        status.set(false);
        match stop {
            Stop::Shutdown => {
                self.cancel_consumer().await;
                drain(&mut tasks, drain_timeout).await;
                self.close().await;
                tracing::info!("amqp consumer stopped");
                Ok(())
            }
            Stop::Lost(e) => {
                if !tasks.is_empty() {
                    tracing::warn!(
                        in_flight = tasks.len(),
                        "aborting in-flight jobs, the broker requeues them"
                    );
                }
                tasks.shutdown().await;
                self.close().await;
                Err(e)
            }
        }
    }

    async fn consume<H: JobHandler>(
        &mut self,
        handler: &Arc<H>,
        shutdown: &CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> Stop {
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Stop::Shutdown,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => log_join(joined),
                next = self.consumer.next() => match next {
                    Some(Ok(delivery)) => self.spawn(handler, tasks, delivery),
                    Some(Err(e)) => return Stop::Lost(QueueError::amqp("basic.consume")(e)),
                    None => return Stop::Lost(QueueError::ConsumerCancelled),
                },
            }
        }
    }

    /// Runs the handler in its own task (so a panic surfaces as a `JoinError`), then settles.
    fn spawn<H: JobHandler>(
        &self,
        handler: &Arc<H>,
        tasks: &mut JoinSet<()>,
        delivery: lapin::message::Delivery,
    ) {
        let job = JobDelivery::from_delivery(&delivery, self.settler.max_attempts());
        let kind = m::kind_label(job.kind.as_deref());
        let headers = delivery.properties.headers().as_ref();
        let span = tracing::info_span!(
            "job",
            message_id = job.message_id.as_deref().unwrap_or("-"),
            kind,
            tenant = crate::headers::get_str_opt(headers, crate::headers::TENANT)
                .as_deref()
                .unwrap_or("-"),
            attempt = job.attempt,
            redelivered = job.redelivered,
        );
        crate::trace_context::continue_trace(&span, headers);
        observe_lag(kind, delivery.properties.timestamp());
        let mut received = Received::new(delivery, job.attempt, kind);
        let handler = handler.clone();
        let settler = self.settler.clone();
        let max_hold = self.max_hold;
        let work = async move {
            let in_flight = InFlight::start(kind);
            let started = Instant::now();
            let run = tokio::spawn(async move { handler.handle(job).await }.in_current_span());
            let mut run = AbortOnDropHandle::new(run);
            let result = tokio::select! {
                result = &mut run => result,
                () = tokio::time::sleep(max_hold) => {
                    settler.hand_over(&mut received).await;
                    run.await
                }
            };
            metrics::histogram!(m::JOB_DURATION_SECONDS, "kind" => kind)
                .record(started.elapsed().as_secs_f64());
            settler.settle(received, result).await;
            in_flight.settled();
        };
        tasks.spawn(work.instrument(span));
    }

    async fn cancel_consumer(&self) {
        let tag = self.consumer.tag();
        if let Err(e) = self
            .channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await
        {
            tracing::warn!(error = %QueueError::amqp("basic.cancel")(e), "cancelling the consumer failed");
        }
    }

    /// Closes the channel (requeueing whatever is unacked) and the connection.
    async fn close(self) {
        close_channel(self.channel).await;
        if self.connection.status().connected()
            && let Err(e) = self.connection.close(200, "ok".into()).await
        {
            tracing::debug!(error = %e, "closing amqp connection failed");
        }
    }
}

/// Counts a job in flight for as long as it lives; one dropped before it was settled (aborted
/// at the drain timeout or on a lost connection) counts as `abandoned`: left unacked, the
/// broker gives it to another worker.
struct InFlight {
    kind: &'static str,
    settled: bool,
}

impl InFlight {
    fn start(kind: &'static str) -> Self {
        metrics::gauge!(m::JOBS_IN_FLIGHT).increment(1.0);
        InFlight {
            kind,
            settled: false,
        }
    }

    fn settled(mut self) {
        self.settled = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(m::JOBS_IN_FLIGHT).decrement(1.0);
        if !self.settled {
            metrics::counter!(m::JOBS_TOTAL, "kind" => self.kind, "outcome" => "abandoned")
                .increment(1);
        }
    }
}

/// Records how long the message waited since its publisher stamped it (whole seconds).
fn observe_lag(kind: &'static str, published: &Option<u64>) {
    let Some(published) = *published else { return };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    metrics::histogram!(m::QUEUE_LAG_SECONDS, "kind" => kind)
        .record(now.saturating_sub(published) as f64);
}

/// Waits up to `timeout` for in-flight jobs; aborts the rest (never acked, so requeued).
async fn drain(tasks: &mut JoinSet<()>, timeout: Duration) {
    if tasks.is_empty() {
        return;
    }
    tracing::info!(in_flight = tasks.len(), "waiting for in-flight jobs");
    let all_done = async {
        while let Some(joined) = tasks.join_next().await {
            log_join(joined);
        }
    };
    if tokio::time::timeout(timeout, all_done).await.is_err() {
        tracing::warn!(
            abandoned = tasks.len(),
            "drain timeout reached, leaving unfinished jobs unacked for another worker"
        );
        tasks.shutdown().await;
    }
}

fn log_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined
        && e.is_panic()
    {
        tracing::error!(error = %e, "job settlement task panicked");
    }
}
