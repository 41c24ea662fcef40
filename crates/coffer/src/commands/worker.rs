//! `coffer worker`: consume jobs until told to stop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use coffer_worker::janitor::sweep::SweepSettings;
use coffer_worker::{Worker, WorkerSettings};
use tokio_util::sync::CancellationToken;

use crate::args::Services;
use crate::connect;

/// Worker options.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    services: Services,
    #[command(flatten)]
    http: crate::telemetry::HttpArgs,
    /// On SIGTERM: how long jobs in flight may run on before they are left unacked for
    /// another worker (the consumer stops taking new ones at once). Keep it below the
    /// orchestrator's grace period (`terminationGracePeriodSeconds`).
    #[arg(long, env = "COFFER_DRAIN_TIMEOUT", default_value = "30s", value_parser = super::parse_duration_or_zero)]
    drain_timeout: Duration,
    /// Delays before the retries of a failed job, comma-separated; after the last, the job is
    /// dead-lettered (see `--max-attempts`).
    #[arg(long, env = "COFFER_RETRY_DELAYS", default_value = "5s,30s,2m,10m", value_delimiter = ',', value_parser = super::parse_duration)]
    retry_delays: Vec<Duration>,
    /// Attempts of a job (the first and its retries) before it goes to the dead-letter queue.
    #[arg(long, env = "COFFER_MAX_ATTEMPTS", default_value_t = 5)]
    max_attempts: u32,
    /// Jobs run at once by this process (the consumer's prefetch).
    #[arg(long, env = "COFFER_WORKER_CONCURRENCY", default_value_t = 1)]
    concurrency: u16,
    /// How long a task's lease lasts without renewal (renewed every third of it): a task whose
    /// worker died is taken over this long after its last renewal.
    #[arg(long, env = "COFFER_TASK_LEASE", default_value = "60s", value_parser = super::parse_duration)]
    task_lease: Duration,
    /// Uncompressed CSV bytes after which a records part is closed and the next one starts.
    #[arg(long, env = "COFFER_MAX_PART_BYTES", default_value_t = 128 * 1024 * 1024)]
    max_part_bytes: usize,
    /// How records parts are compressed: gzip (`.csv.gz`, readable by every tool) or zstd
    /// (`.csv.zst`, smaller and faster). Backups already written keep theirs.
    #[arg(long, env = "COFFER_COMPRESSION", default_value = "gzip")]
    compression: coffer_core::layout::Compression,
    /// Share of each org's daily Salesforce API allocation Coffer may use (0 < share <= 1);
    /// past it the org is paused, leaving the rest to the customer's own integrations.
    #[arg(long, env = "COFFER_API_SHARE", default_value_t = 0.8, value_parser = super::parse_share)]
    api_share: f64,
    /// How long an org whose API allowance is used up is paused before its work is tried again.
    #[arg(long, env = "COFFER_ORG_PAUSE", default_value = "1h", value_parser = super::parse_duration)]
    org_pause: Duration,
    /// How long a job of a paused org waits in the parked queue before it is looked at again.
    #[arg(long, env = "COFFER_PARK_DELAY", default_value = "15m", value_parser = super::parse_duration)]
    park_delay: Duration,
    /// How long a job's delivery is held unacked; a job still running then hands its delivery
    /// over to a parked copy. Keep it below RabbitMQ's `consumer_timeout` (30 min by default).
    #[arg(long, env = "COFFER_MAX_HOLD", default_value = "25m", value_parser = super::parse_duration)]
    max_hold: Duration,
    /// An object with more records than this is read by several tasks side by side, each over
    /// a slice of its record ids.
    #[arg(long, env = "COFFER_SLICE_ROWS", default_value_t = 5_000_000)]
    slice_rows: u64,
    /// The external id field (Text(18), External ID, Unique) a restore keys its inserts by,
    /// on objects that have it: a record sent again after a crash is found, not duplicated.
    #[arg(long, env = "COFFER_RESTORE_KEY_FIELD", default_value = coffer_worker::settings::DEFAULT_RESTORE_KEY_FIELD)]
    restore_key_field: String,
    /// Inserts of one object from which a restore uses a Bulk API 2.0 ingest job instead of
    /// sObject Collections (only on objects with the restore key field).
    #[arg(long, env = "COFFER_RESTORE_BULK_THRESHOLD", default_value_t = 2_000)]
    restore_bulk_threshold: usize,
    /// Retention sweeps from messages: between marking a backup and deleting it.
    #[arg(long, env = "COFFER_RETENTION_GRACE", default_value = "1d", value_parser = super::parse_duration_or_zero)]
    retention_grace: Duration,
    /// Retention sweeps from messages: multipart uploads open longer than this are aborted.
    #[arg(long, env = "COFFER_STALE_UPLOAD_AGE", default_value = "1d", value_parser = super::parse_duration_or_zero)]
    stale_upload_age: Duration,
}

/// Runs the consumer until SIGTERM or Ctrl-C; in-flight jobs get the drain timeout to finish,
/// and whatever is unfinished is left unacked for another worker.
pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let catalog_ready = crate::telemetry::catalog_check(&catalog);
    let queue = coffer_queue::QueueConfig {
        prefetch: args.concurrency,
        park_delay: args.park_delay,
        max_hold: args.max_hold,
        drain_timeout: args.drain_timeout,
        retry_delays: args.retry_delays.clone(),
        max_attempts: args.max_attempts,
        ..args.services.queue()
    };
    let broker = connect::broker(&queue).await?;
    let settings = WorkerSettings {
        vendor: args.services.vendor.clone(),
        envelope_key: args.services.envelope_key()?,
        task_lease: args.task_lease,
        max_part_bytes: args.max_part_bytes,
        compression: args.compression,
        max_api_share: Some(args.api_share),
        org_pause: args.org_pause,
        slice_rows: args.slice_rows,
        restore_key_field: args.restore_key_field,
        restore_bulk_threshold: args.restore_bulk_threshold,
        retention: SweepSettings {
            grace: args.retention_grace,
            stale_upload_age: args.stale_upload_age,
            ..SweepSettings::default()
        },
        ..WorkerSettings::new(args.services.s3())
    };
    let lease = settings.task_lease;
    let worker = Arc::new(Worker::new(catalog, settings).with_events(broker.publisher().await?));
    let shutdown = CancellationToken::new();
    tokio::spawn(super::stop_on_signal(shutdown.clone()));
    let consuming = coffer_queue::ConsumerStatus::default();
    // The endpoint outlives the drain: probes answer (not ready) while jobs finish.
    let http_stop = CancellationToken::new();
    let checks = vec![catalog_ready, crate::telemetry::consumer_check(&consuming)];
    let http = crate::telemetry::serve(&args.http, checks, http_stop.clone()).await?;
    if http.is_some() {
        tokio::spawn(sample_queues(
            queue.clone(),
            QUEUE_SAMPLE_EVERY,
            http_stop.clone(),
        ));
    }
    tokio::spawn(reap_stranded_tasks(
        worker.clone(),
        lease * 5,
        shutdown.clone(),
    ));
    tracing::info!(queue = %broker.topology().jobs_queue(), endpoint = %queue.redacted_endpoint(), concurrency = args.concurrency, "worker started");
    let consumed = coffer_queue::run_consumer_observed(queue, worker, shutdown, consuming)
        .await
        .context("consumer failed");
    http_stop.cancel();
    if let Some(server) = http {
        let _ = server.task.await;
    }
    consumed?;
    tracing::info!("worker stopped");
    Ok(())
}

/// How often the queue gauges are sampled.
const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// Every `every`, sets the gauges of messages and consumers of each queue of the prefix (a
/// passive declare each, on a connection of its own, opened again after the broker restarts).
async fn sample_queues(queue: coffer_queue::QueueConfig, every: Duration, stop: CancellationToken) {
    use coffer_core::metrics as m;
    let mut broker: Option<coffer_queue::Broker> = None;
    loop {
        if broker.is_none() {
            broker = coffer_queue::Broker::connect(&queue).await.ok();
        }
        if let Some(connected) = &broker {
            match connected.queue_stats().await {
                Ok(stats) => {
                    for q in stats {
                        let Some(counts) = q.counts else { continue };
                        metrics::gauge!(m::QUEUE_MESSAGES, "queue" => q.name.clone())
                            .set(f64::from(counts.messages));
                        metrics::gauge!(m::QUEUE_CONSUMERS, "queue" => q.name)
                            .set(f64::from(counts.consumers));
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "could not sample the queues");
                    broker = None;
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Every `idle`, publishes again the tasks nobody holds or touched for `idle` (a lost message,
/// or a holder that died after its duplicate was acked). Errors are logged; the loop goes on.
async fn reap_stranded_tasks(worker: Arc<Worker>, idle: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(idle) => {}
        }
        match worker.republish_stranded_tasks(idle).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(tasks = n, "published stranded tasks again"),
            Err(e) => tracing::warn!(error = %e, "could not look for stranded tasks"),
        }
    }
}
