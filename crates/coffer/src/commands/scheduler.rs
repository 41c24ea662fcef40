//! `coffer scheduler`: publish a BackupRequested for every due schedule occurrence, once, however
//! many replicas run.
//!
//! Each tick (`--tick`, 10 s by default) a replica first makes sure it leads: it holds the MySQL
//! named lock `coffer-scheduler.{database}` on a connection of its own
//! ([`coffer_catalog::Catalog::lead_scheduler`]), re-checked every tick; the others stay idle and
//! try again next tick, so when the leader dies (its connection drops and the server releases the
//! lock) another replica takes over within a tick. The leader then:
//!
//! 1. claims each due occurrence in MySQL (compare-and-set on `next_run_at`, committed together
//!    with one run row per org holding its deterministic job id); a missed stretch becomes one
//!    catch-up run;
//! 2. publishes each claimed run with publisher confirms, and marks it published after the
//!    confirm; a failed publish gives the run back, and it is republished with the same job id on
//!    the next tick (by whichever replica leads then);
//! 3. republishes runs left unpublished by a replica that died in between, after their lease.
//!
//! The lock only keeps followers idle: the claims are correct without it. An occurrence is
//! published twice only if a replica dies between the broker's confirm and the mark, and then
//! with the same job id, on which the worker's backups are idempotent.
//!
//! The clock is read once per tick and passed down ([`tick`]), so the claim logic never reads
//! time on its own.

use std::time::Duration;

use anyhow::Context;
use coffer_catalog::{Catalog, ScheduleKind, ScheduledRun, SchedulerLeader};
use coffer_proto::v1::{BackupKind, BackupRequested, JobEnvelope, job_envelope::Job};
use coffer_queue::{Broker, OutgoingJob, Publisher, QueueConfig};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::backups::rfc3339;
use super::parse_duration;
use crate::args::Services;
use crate::connect;

/// How long a run being published belongs to the scheduler publishing it; longer than a publish
/// can take (the broker's confirm timeout), so only a dead scheduler's runs are taken over.
const RUN_LEASE: Duration = Duration::from_secs(60);

/// Scheduler options.
#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    #[command(flatten)]
    services: Services,
    #[command(flatten)]
    http: crate::telemetry::HttpArgs,
    /// How often to look for due schedules (e.g. `10s`, `500ms`, `1m`).
    #[arg(long, env = "COFFER_SCHEDULER_TICK", default_value = "10s", value_parser = parse_duration)]
    tick: Duration,
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let mut publishing = Publishing {
        queue: args.services.queue(),
        broker: None,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(super::stop_on_signal(shutdown.clone()));
    let checks = vec![crate::telemetry::catalog_check(&catalog)];
    let http = crate::telemetry::serve(&args.http, checks, shutdown.clone()).await?;
    tracing::info!(tick_ms = args.tick.as_millis() as u64, "scheduler started");
    let mut leader: Option<SchedulerLeader> = None;
    loop {
        if ensure_leading(&catalog, &mut leader).await {
            let now = OffsetDateTime::now_utc();
            if let Err(e) = tick(&catalog, &mut publishing, now).await {
                tracing::warn!(error = %format!("{e:#}"), "scheduler tick failed; retrying next tick");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(args.tick) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    if let Some(leader) = leader {
        leader.resign().await;
    }
    if let Some(server) = http {
        let _ = server.task.await;
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

/// Whether this replica leads now: keeps the lock it has, or tries to take it.
async fn ensure_leading(catalog: &Catalog, leader: &mut Option<SchedulerLeader>) -> bool {
    if let Some(held) = leader {
        if held.still_leading().await {
            return true;
        }
        tracing::warn!("scheduler leadership lost (lock connection gone); standing by");
        *leader = None;
    }
    match catalog.lead_scheduler().await {
        Ok(Some(held)) => {
            tracing::info!("scheduler leading: this replica publishes due backups");
            *leader = Some(held);
            true
        }
        Ok(None) => {
            tracing::debug!("another scheduler leads; standing by");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot take the scheduler lock");
            false
        }
    }
}

/// The broker connection, opened when first needed and dropped after a failed publish.
struct Publishing {
    queue: QueueConfig,
    broker: Option<(Broker, Publisher)>,
}

impl Publishing {
    async fn publisher(&mut self) -> anyhow::Result<&Publisher> {
        if self.broker.is_none() {
            let broker = connect::broker(&self.queue).await?;
            let publisher = broker.publisher().await?;
            self.broker = Some((broker, publisher));
        }
        match &self.broker {
            Some((_, publisher)) => Ok(publisher),
            None => anyhow::bail!("no broker connection"),
        }
    }
}

/// One pass at `now`: claim what is due, publish what was claimed and what a dead replica left.
async fn tick(
    catalog: &Catalog,
    publishing: &mut Publishing,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for schedule in catalog.due_schedules(now).await? {
        match catalog.claim_occurrence(&schedule, now).await {
            Ok(Some(claim)) => {
                tracing::info!(
                    schedule_id = schedule.schedule_id,
                    tenant = %schedule.tenant_id,
                    occurrence = %rfc3339(claim.occurrence_at),
                    missed_since = %rfc3339(schedule.next_run_at),
                    next_run = %rfc3339(claim.next_run_at),
                    runs = claim.runs.len(),
                    "schedule occurrence claimed"
                );
                if claim.runs.is_empty() {
                    tracing::warn!(schedule_id = schedule.schedule_id, tenant = %schedule.tenant_id, "tenant has no connected org; nothing to back up");
                }
                runs.extend(claim.runs);
            }
            Ok(None) => {
                tracing::debug!(
                    schedule_id = schedule.schedule_id,
                    "occurrence already claimed"
                )
            }
            Err(e) => {
                tracing::warn!(schedule_id = schedule.schedule_id, tenant = %schedule.tenant_id, error = %e, "cannot claim schedule occurrence")
            }
        }
    }
    let leftover = catalog.lease_unpublished_runs(now, RUN_LEASE).await?;
    for run in &leftover {
        tracing::info!(schedule_id = run.schedule_id, tenant = %run.tenant_id, org_id = %run.org_id, job_id = %run.job_id, occurrence = %rfc3339(run.occurrence_at), "republishing unpublished run");
    }
    runs.extend(leftover);
    for run in runs {
        publish_run(catalog, publishing, &run, now).await;
    }
    Ok(())
}

/// Publishes one run and marks it published; on failure gives it back for the next tick.
async fn publish_run(
    catalog: &Catalog,
    publishing: &mut Publishing,
    run: &ScheduledRun,
    now: OffsetDateTime,
) {
    let published = async {
        let publisher = publishing.publisher().await?;
        publish_backup(publisher, run).await
    }
    .await;
    match published {
        Ok(()) => {
            tracing::info!(schedule_id = run.schedule_id, tenant = %run.tenant_id, org_id = %run.org_id, job_id = %run.job_id, kind = run.kind.as_str(), occurrence = %rfc3339(run.occurrence_at), "scheduled backup published");
            if let Err(e) = catalog.mark_run_published(run.job_id, now).await {
                // Republished after the lease, with the same job id: harmless for the worker.
                tracing::warn!(job_id = %run.job_id, error = %e, "published but not marked; it will be published again with the same job id");
            }
        }
        Err(e) => {
            tracing::warn!(schedule_id = run.schedule_id, tenant = %run.tenant_id, org_id = %run.org_id, job_id = %run.job_id, error = %format!("{e:#}"), "publish failed; retrying next tick with the same job id");
            publishing.broker = None;
            if let Err(e) = catalog.release_run(run.job_id, now, RUN_LEASE).await {
                tracing::warn!(job_id = %run.job_id, error = %e, "cannot release the run; retried after its lease");
            }
        }
    }
}

/// Publishes the BackupRequested of `run` (its job id, requested at its occurrence, so a
/// republished message is the same message) and waits for the confirm.
async fn publish_backup(publisher: &Publisher, run: &ScheduledRun) -> anyhow::Result<()> {
    let envelope = JobEnvelope {
        schema_version: coffer_proto::CURRENT_SCHEMA_VERSION,
        job_id: run.job_id.to_string(),
        requested_at_unix_ms: (run.occurrence_at.unix_timestamp_nanos() / 1_000_000) as i64,
        requested_by: format!("scheduler:schedule-{}", run.schedule_id),
        traceparent: String::new(),
        job: Some(Job::BackupRequested(BackupRequested {
            tenant_id: run.tenant_id.to_string(),
            org_id: run.org_id.to_string(),
            kind: match run.kind {
                ScheduleKind::Full => BackupKind::Full as i32,
                ScheduleKind::Incremental => BackupKind::Incremental as i32,
            },
            sobjects: Vec::new(),
        })),
    };
    let payload = coffer_proto::encode(&envelope);
    publisher
        .publish_job(OutgoingJob {
            message_id: &envelope.job_id,
            kind: "backup_requested",
            tenant: Some(run.tenant_id.as_str()),
            payload: &payload,
        })
        .await
        .context("the broker did not confirm the job")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("10w").is_err());
        assert!(parse_duration("fast").is_err());
        // A grace period may be zero (due at once); other durations may not.
        assert_eq!(
            super::super::parse_duration_or_zero("0"),
            Ok(Duration::ZERO)
        );
        assert_eq!(
            super::super::parse_duration_or_zero("0s"),
            Ok(Duration::ZERO)
        );
    }
}
