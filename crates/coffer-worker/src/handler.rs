//! [`Worker`]: the jobs queue's handler.
//!
//! Decides the fate of every delivery:
//!
//! | what happened                                   | outcome                      |
//! |-------------------------------------------------|------------------------------|
//! | effects durable (or the job was already done)   | ack                          |
//! | retryable failure (network, 5xx, throttling)    | retry after a growing delay  |
//! | the org's API allowance is used up, or the org  | pause the org; defer the job |
//! | is paused                                       | (parked, no attempt counted) |
//! | permanent failure (malformed, unknown tenant,   | dead-letter with the reason  |
//! | access denied, unknown KMS key, ...)            |                              |
//!
//! A `RestoreRequested` runs [`crate::restore::run_restore`] in its delivery (plan, then
//! write unless plan-only); its failures are handled like a backup's.
//!
//! A `BackupRequested` plans the backup and publishes its extract tasks on the same queue;
//! `ExtractTaskRequested` deliveries run them (see [`crate::backup`]). The backup's job row is
//! completed when the backup is finalised, by whichever delivery does it; a task that fails for
//! good fails the backup and its job.
//!
//! Lifecycle events (started, completed, failed) go to the events exchange; they are
//! informative, so failing to publish one is logged and never fails the job.

use std::time::{SystemTime, UNIX_EPOCH};

use coffer_catalog::{Catalog, JobState, OrgPause, RestoreState};
use coffer_core::{Classify, ErrorClass, JobId, TenantId};
use coffer_proto::v1::job_envelope::Job;
use coffer_proto::v1::{
    self, BackupRequested, ExtractTaskRequested, RestoreRequested, RetentionSweepRequested,
    job_event,
};
use coffer_queue::{JobDelivery, JobHandler, Outcome, Publisher};
use tracing::Instrument;

use crate::backup::{
    BackupContext, BackupJob, Progress, TaskPublisher, plan_backup, republish_stranded, run_task,
};
use crate::error::WorkerError;
use crate::janitor::sweep::{Janitor, SweepSettings, sweep_all, sweep_tenant};
use crate::restore::{RestoreJob, run_restore};
use crate::settings::WorkerSettings;
use crate::storage::StorageClients;

/// Handles jobs; one per process, shared by all concurrent deliveries.
#[derive(Debug)]
pub struct Worker {
    ctx: BackupContext,
    events: Option<Publisher>,
    name: String,
}

impl Worker {
    /// A worker over `catalog`, writing with `settings`.
    pub fn new(catalog: Catalog, settings: WorkerSettings) -> Self {
        let storage = StorageClients::new(
            settings.s3.clone(),
            settings.vendor.clone(),
            settings.envelope_key.clone(),
        );
        let name = format!("{}:{}", hostname(), std::process::id());
        Worker {
            ctx: BackupContext {
                worker_name: name.clone(),
                catalog,
                storage,
                settings,
            },
            events: None,
            name,
        }
    }

    /// Publishes extract tasks and lifecycle events with `publisher`. Without one, a backup's
    /// tasks run inside the delivery that planned it.
    pub fn with_events(mut self, publisher: Publisher) -> Self {
        self.events = Some(publisher);
        self
    }

    /// Publishes again the tasks of running backups that nobody holds or touched for `idle`
    /// (see [`crate::backup::republish_stranded`]); returns how many. Needs the publisher of
    /// [`Worker::with_events`]; without it there is nothing to do.
    pub async fn republish_stranded_tasks(
        &self,
        idle: std::time::Duration,
    ) -> Result<usize, WorkerError> {
        match &self.events {
            Some(publisher) => republish_stranded(&self.ctx, publisher, idle).await,
            None => Ok(0),
        }
    }

    async fn handle_envelope(&self, delivery: &JobDelivery) -> Result<(), WorkerError> {
        let envelope = validate_message(delivery.tenant.as_deref(), &delivery.payload)?;
        let job_id: JobId = envelope.job_id.parse().map_err(crate::backup::invalid)?;
        match envelope.job {
            Some(Job::BackupRequested(msg)) => self.handle_backup(job_id, &msg, delivery).await,
            Some(Job::ExtractTaskRequested(msg)) => self.handle_task(job_id, &msg, delivery).await,
            Some(Job::RestoreRequested(msg)) => {
                Box::pin(self.handle_restore(job_id, &msg, delivery)).await
            }
            Some(Job::RetentionSweepRequested(msg)) => self.handle_sweep(job_id, &msg).await,
            None => Err(WorkerError::Decode(coffer_proto::DecodeError::NoJob)),
        }
    }

    async fn handle_backup(
        &self,
        job_id: JobId,
        msg: &BackupRequested,
        delivery: &JobDelivery,
    ) -> Result<(), WorkerError> {
        let job = BackupJob::from_message(job_id, msg)?;
        let attempt = delivery.attempt;
        let span = tracing::info_span!("backup", %job_id, tenant = %job.tenant_id, org = %job.org_id, attempt);
        async {
            if self.already_completed(job_id, "backup", &job).await? {
                return Ok(());
            }
            self.unless_paused(&job).await?;
            self.emit(&job, started_event(&self.name, attempt)).await;
            let publish = match &self.events {
                Some(publisher) => TaskPublisher::Queue(publisher),
                None => TaskPublisher::Inline,
            };
            match plan_backup(&self.ctx, &job, &publish).await {
                Ok(progress) => self.progressed(&job, &progress).await,
                Err(e) => Err(self.failed(&job, e, delivery).await),
            }
        }
        .instrument(span)
        .await
    }

    async fn handle_task(
        &self,
        job_id: JobId,
        msg: &ExtractTaskRequested,
        delivery: &JobDelivery,
    ) -> Result<(), WorkerError> {
        let job = BackupJob::of(job_id, &msg.tenant_id, &msg.org_id)?;
        let span = tracing::info_span!("task", %job_id, tenant = %job.tenant_id, org = %job.org_id, backup_id = %msg.backup_id, task_no = msg.task_no, attempt = delivery.attempt);
        async {
            self.unless_paused(&job).await?;
            match run_task(&self.ctx, msg).await {
                Ok(progress) => self.progressed(&job, &progress).await,
                Err(e) => Err(self.failed(&job, e, delivery).await),
            }
        }
        .instrument(span)
        .await
    }

    /// A retention sweep of one tenant (or every tenant, when the message names none). What
    /// fails inside is logged and left for the next sweep; the message is done either way.
    async fn handle_sweep(
        &self,
        job_id: JobId,
        msg: &RetentionSweepRequested,
    ) -> Result<(), WorkerError> {
        let settings = SweepSettings {
            dry_run: msg.dry_run,
            ..self.ctx.settings.retention.clone()
        };
        let janitor = Janitor {
            catalog: &self.ctx.catalog,
            storage: &self.ctx.storage,
            settings: &settings,
            name: &self.name,
        };
        let span = tracing::info_span!("retention_sweep", %job_id, tenant = %msg.tenant_id, dry_run = msg.dry_run);
        async {
            let report = match msg.tenant_id.as_str() {
                "" => sweep_all(&janitor).await?,
                tenant => {
                    let tenant_id = TenantId::new(tenant).map_err(crate::backup::invalid)?;
                    if self.ctx.catalog.tenant(&tenant_id).await?.is_none() {
                        return Err(WorkerError::UnknownTenant(tenant.to_owned()));
                    }
                    sweep_tenant(&janitor, &tenant_id).await?
                }
            };
            let expired: usize = report.orgs.iter().map(|o| o.expired.len()).sum();
            tracing::info!(
                orgs = report.orgs.len(),
                expired,
                failed = report.has_failures(),
                "retention sweep finished"
            );
            Ok(())
        }
        .instrument(span)
        .await
    }

    async fn handle_restore(
        &self,
        job_id: JobId,
        msg: &RestoreRequested,
        delivery: &JobDelivery,
    ) -> Result<(), WorkerError> {
        let job = RestoreJob::from_message(job_id, msg)?;
        let ids = BackupJob::of(job_id, job.tenant_id.as_str(), job.target_org_id.as_str())?;
        let span = tracing::info_span!("restore", %job_id, tenant = %job.tenant_id, org = %job.org_id, target_org = %job.target_org_id, attempt = delivery.attempt);
        async {
            let catalog = &self.ctx.catalog;
            let source = BackupJob::of(job_id, job.tenant_id.as_str(), job.org_id.as_str())?;
            if self.already_completed(job_id, "restore", &source).await? {
                return Ok(());
            }
            self.unless_paused(&ids).await?;
            self.emit_kind("restore", &ids, started_event(&self.name, delivery.attempt))
                .await;
            let restoring = Box::pin(run_restore(&self.ctx, &job));
            match self.reporting_progress(&ids, restoring).await {
                Ok(restore) => {
                    catalog.finish_job(job_id, JobState::Completed, None).await?;
                    let counts = catalog.restore_counts(&restore.restore_id).await?;
                    let records = counts.iter().map(|c| c.count).sum();
                    tracing::info!(restore_id = %restore.restore_id, state = restore.state.as_str(), records, "restore finished");
                    self.emit_kind("restore", &ids, restore_completed_event(&restore.restore_id, records))
                        .await;
                    Ok(())
                }
                Err(e) => Err(self.failed(&ids, e, delivery).await),
            }
        }
        .instrument(span)
        .await
    }

    /// Runs `restoring`, publishing a progress event (records settled so far) every
    /// [`WorkerSettings::restore_progress_every`] until it ends.
    async fn reporting_progress<T>(
        &self,
        ids: &BackupJob,
        restoring: impl Future<Output = T>,
    ) -> T {
        let mut restoring = std::pin::pin!(restoring);
        let mut ticks = tokio::time::interval(self.ctx.settings.restore_progress_every);
        ticks.tick().await;
        loop {
            tokio::select! {
                done = &mut restoring => return done,
                _ = ticks.tick() => self.restore_progress(ids).await,
            }
        }
    }

    async fn restore_progress(&self, ids: &BackupJob) {
        let catalog = &self.ctx.catalog;
        let Ok(Some(restore)) = catalog.restore_of_job(ids.job_id).await else {
            return;
        };
        let Ok(counts) = catalog.restore_counts(&restore.restore_id).await else {
            return;
        };
        let total: u64 = counts.iter().map(|c| c.count).sum();
        let settled: u64 = counts
            .iter()
            .filter(|c| c.state != coffer_catalog::RecordState::Pending)
            .map(|c| c.count)
            .sum();
        let event = job_event::Event::Progress(v1::JobProgress {
            step: format!(
                "{}: {settled} of {total} records settled",
                restore.state.as_str()
            ),
            records: settled,
            bytes: 0,
        });
        self.emit_kind("restore", ids, event).await;
    }

    /// Completes the job when its backup is complete; otherwise tells how far it got.
    async fn progressed(&self, job: &BackupJob, progress: &Progress) -> Result<(), WorkerError> {
        match progress {
            Progress::Complete { .. } => {
                self.ctx
                    .catalog
                    .finish_job(job.job_id, JobState::Completed, None)
                    .await?;
                log_completed(progress);
                self.emit(job, completed_event(progress)).await;
            }
            Progress::Continues { backup_id } => {
                let counts = self.ctx.catalog.task_counts(*backup_id).await?;
                self.emit(job, progress_event(&counts)).await;
            }
        }
        Ok(())
    }

    /// Records an attempt of a `kind` job of `job`'s tenant and org; whether the job was
    /// already completed (a duplicate delivery, acked without work).
    async fn already_completed(
        &self,
        job_id: JobId,
        kind: &str,
        job: &BackupJob,
    ) -> Result<bool, WorkerError> {
        let row = self
            .ctx
            .catalog
            .start_job_attempt(
                job_id,
                kind,
                job.tenant_id.as_str(),
                Some(job.org_id.as_str()),
            )
            .await?;
        let own = row.kind == kind
            && row.tenant_id == job.tenant_id.as_str()
            && row.org_id.as_deref() == Some(job.org_id.as_str());
        if !own {
            return Err(WorkerError::InvalidJob(format!(
                "job id {job_id} belongs to another job (a {} job of another tenant or org); \
                 a job id names one job, so this message was refused without touching it",
                row.kind
            )));
        }
        let done = row.state == JobState::Completed;
        if done {
            tracing::info!("job already completed, acknowledging the duplicate");
        }
        Ok(done)
    }

    /// Fails with [`WorkerError::OrgPaused`] while the job's org is paused, before anything
    /// calls Salesforce.
    async fn unless_paused(&self, job: &BackupJob) -> Result<(), WorkerError> {
        match self
            .ctx
            .catalog
            .org_pause(&job.tenant_id, &job.org_id)
            .await?
        {
            Some(pause) => Err(paused(job, pause)),
            None => Ok(()),
        }
    }

    /// Deals with a failed attempt: an exhausted API allowance pauses the org (the job waits,
    /// it has not failed); anything else is recorded as a failure. Returns the error that
    /// decides the delivery's outcome.
    async fn failed(&self, job: &BackupJob, e: WorkerError, delivery: &JobDelivery) -> WorkerError {
        if e.defers() {
            return e; // not a failure: this delivery is deferred
        }
        let handled = if e.pauses_org() {
            self.pause(job, &e).await
        } else {
            self.record_failure(job, &e, delivery).await.map(|()| e)
        };
        handled.unwrap_or_else(|catalog_error| catalog_error)
    }

    /// Pauses the job's org for [`WorkerSettings::org_pause`] because of `cause`, and tells
    /// who watches the job.
    async fn pause(
        &self,
        job: &BackupJob,
        cause: &WorkerError,
    ) -> Result<WorkerError, WorkerError> {
        let catalog = &self.ctx.catalog;
        let reason = cause.to_string();
        let pause = catalog
            .pause_org(
                &job.tenant_id,
                &job.org_id,
                self.ctx.settings.org_pause,
                &reason,
            )
            .await?;
        tracing::warn!(until = %rfc3339(pause.until), reason = %reason, "salesforce api allowance used up; pausing the org's work");
        crate::metrics::org_paused();
        let error = paused(job, pause);
        catalog
            .finish_job(job.job_id, JobState::Running, Some(&error.to_string()))
            .await?;
        self.emit(job, paused_event(&error)).await;
        Ok(error)
    }

    /// Records a failed attempt. A permanent failure, or a retryable one on the last attempt
    /// the queue will make, fails the job and its backup; otherwise they stay running for the
    /// retry.
    async fn record_failure(
        &self,
        job: &BackupJob,
        e: &WorkerError,
        delivery: &JobDelivery,
    ) -> Result<(), WorkerError> {
        let catalog = &self.ctx.catalog;
        if let Some(row) = catalog.job(job.job_id).await?
            && row.tenant_id != job.tenant_id.as_str()
        {
            tracing::warn!(owner = %row.tenant_id, "the failed message reuses the job id of another tenant's job; that job is left alone");
            return Ok(());
        }
        let last_attempt = delivery.is_last_attempt();
        let gives_up = !e.is_retryable() || last_attempt;
        let reason = if e.is_retryable() && last_attempt {
            format!("gave up after {} attempts: {e}", delivery.attempt + 1)
        } else {
            e.to_string()
        };
        if gives_up
            && let Some(backup) = catalog.backup_of_job(job.job_id).await?
            && backup.tenant_id == job.tenant_id
            && backup.org_id == job.org_id
        {
            catalog.fail_backup(backup.backup_id, &reason).await?;
        }
        if gives_up
            && let Some(restore) = catalog.restore_of_job(job.job_id).await?
            && restore.tenant_id == job.tenant_id
        {
            catalog
                .set_restore_state(&restore.restore_id, RestoreState::Failed, Some(&reason))
                .await?;
        }
        let state = if gives_up {
            JobState::Failed
        } else {
            JobState::Running
        };
        catalog.finish_job(job.job_id, state, Some(&reason)).await?;
        self.emit(job, failed_event(e, !gives_up)).await;
        Ok(())
    }

    async fn emit(&self, job: &BackupJob, event: job_event::Event) {
        self.emit_kind("backup", job, event).await;
    }

    /// Publishes a lifecycle event of a `kind` job (`job.{kind}.{state}`).
    async fn emit_kind(&self, kind: &str, job: &BackupJob, event: job_event::Event) {
        let Some(events) = &self.events else { return };
        let state = match &event {
            job_event::Event::Started(_) => "started",
            job_event::Event::Progress(_) => "progress",
            job_event::Event::Completed(_) => "completed",
            job_event::Event::Failed(_) => "failed",
        };
        let message = v1::JobEvent {
            schema_version: coffer_proto::CURRENT_SCHEMA_VERSION,
            job_id: job.job_id.to_string(),
            tenant_id: job.tenant_id.to_string(),
            org_id: job.org_id.to_string(),
            job_kind: kind.to_owned(),
            occurred_at_unix_ms: now_ms(),
            event: Some(event),
        };
        let routing_key = format!("job.{kind}.{state}");
        if let Err(e) = events
            .publish_event(&routing_key, &coffer_proto::encode(&message))
            .await
        {
            tracing::warn!(error = %e, routing_key, "could not publish job event");
        }
    }
}

impl JobHandler for Worker {
    async fn handle(&self, delivery: JobDelivery) -> Outcome {
        match Box::pin(self.handle_envelope(&delivery)).await {
            Ok(()) => Outcome::Done,
            Err(e) => outcome_of(&e, &delivery),
        }
    }
}

/// Everything the handler checks of a message before it touches the catalog: the body decodes
/// ([`coffer_proto::decode_job`]: size, schema version, a job), the `x-coffer-tenant` header
/// agrees with the payload, and every id and name in it is valid (job, tenant, org, backup and
/// record ids, sObject names). Pure, so it is property-tested and fuzzed; a message it refuses
/// is dead-lettered as permanent with its error as the reason.
pub fn validate_message(
    tenant_header: Option<&str>,
    payload: &[u8],
) -> Result<v1::JobEnvelope, WorkerError> {
    let envelope = coffer_proto::decode_job(payload)?;
    check_tenant_header(tenant_header, &envelope)?;
    let job_id: JobId = envelope.job_id.parse().map_err(crate::backup::invalid)?;
    match &envelope.job {
        Some(Job::BackupRequested(msg)) => {
            BackupJob::from_message(job_id, msg)?;
        }
        Some(Job::ExtractTaskRequested(msg)) => {
            BackupJob::of(job_id, &msg.tenant_id, &msg.org_id)?;
            msg.backup_id
                .parse::<coffer_core::BackupId>()
                .map_err(crate::backup::invalid)?;
        }
        Some(Job::RestoreRequested(msg)) => {
            RestoreJob::from_message(job_id, msg)?;
        }
        Some(Job::RetentionSweepRequested(msg)) => {
            if !msg.tenant_id.is_empty() {
                TenantId::new(msg.tenant_id.as_str()).map_err(crate::backup::invalid)?;
            }
        }
        None => return Err(WorkerError::Decode(coffer_proto::DecodeError::NoJob)),
    }
    Ok(envelope)
}

/// The tenant a job is for: the one its payload names (empty for a sweep of every tenant).
fn tenant_of(job: Option<&Job>) -> &str {
    match job {
        Some(Job::BackupRequested(m)) => &m.tenant_id,
        Some(Job::ExtractTaskRequested(m)) => &m.tenant_id,
        Some(Job::RestoreRequested(m)) => &m.tenant_id,
        Some(Job::RetentionSweepRequested(m)) => &m.tenant_id,
        None => "",
    }
}

/// Refuses a job whose `x-coffer-tenant` header names another tenant than its payload: one of
/// the two was altered or the message misrouted, and neither can be trusted over the other.
/// A message without the header (older publishers) is judged by its payload alone.
pub fn check_tenant_header(
    header: Option<&str>,
    envelope: &v1::JobEnvelope,
) -> Result<(), WorkerError> {
    let Some(header) = header else {
        return Ok(());
    };
    let payload = tenant_of(envelope.job.as_ref());
    if header == payload {
        return Ok(());
    }
    let shorten = |s: &str| s.chars().take(80).collect::<String>();
    Err(WorkerError::InvalidJob(format!(
        "the x-coffer-tenant header names tenant {:?} but the job is for tenant {:?}; \
         the message was altered or misrouted, so it was not run (publish it again with \
         matching tenants)",
        shorten(header),
        shorten(payload)
    )))
}

/// The queue outcome of a failed job.
pub fn outcome_of(error: &WorkerError, delivery: &JobDelivery) -> Outcome {
    let reason = error.to_string();
    if error.defers() {
        tracing::info!(reason = %reason, message_id = ?delivery.message_id, "deferring the job");
        return Outcome::Defer { reason };
    }
    match error.class() {
        ErrorClass::Retryable => {
            tracing::warn!(error = %reason, message_id = ?delivery.message_id, attempt = delivery.attempt, "job failed, will retry");
            Outcome::Retry { reason }
        }
        ErrorClass::Permanent => {
            tracing::error!(error = %reason, message_id = ?delivery.message_id, "job failed permanently, dead-lettering");
            Outcome::Reject {
                reason,
                class: ErrorClass::Permanent,
            }
        }
    }
}

fn log_completed(progress: &Progress) {
    let Progress::Complete {
        backup: b,
        already_complete,
        duration,
    } = progress
    else {
        return;
    };
    tracing::info!(
        backup_id = %b.backup_id,
        objects = b.objects,
        records = b.record_count,
        bytes = b.bytes,
        duration_ms = duration.as_millis() as u64,
        already_complete,
        "backup complete"
    );
}

fn started_event(worker: &str, attempt: u32) -> job_event::Event {
    job_event::Event::Started(v1::JobStarted {
        subject_id: String::new(),
        worker: worker.to_owned(),
        attempt,
    })
}

fn progress_event(counts: &coffer_catalog::TaskCounts) -> job_event::Event {
    job_event::Event::Progress(v1::JobProgress {
        step: format!("{} of {} tasks done", counts.done, counts.total),
        records: counts.records,
        bytes: 0,
    })
}

fn restore_completed_event(restore_id: &str, records: u64) -> job_event::Event {
    job_event::Event::Completed(v1::JobCompleted {
        subject_id: restore_id.to_owned(),
        objects: 0,
        records,
        bytes: 0,
        duration_ms: 0,
    })
}

fn paused_event(paused: &WorkerError) -> job_event::Event {
    job_event::Event::Progress(v1::JobProgress {
        step: paused.to_string(),
        records: 0,
        bytes: 0,
    })
}

/// The error a delivery of `job` ends with while its org is paused.
fn paused(job: &BackupJob, pause: OrgPause) -> WorkerError {
    WorkerError::OrgPaused {
        tenant: job.tenant_id.to_string(),
        org: job.org_id.to_string(),
        until: rfc3339(pause.until),
        reason: pause.reason,
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn completed_event(progress: &Progress) -> job_event::Event {
    let (b, duration) = match progress {
        Progress::Complete {
            backup, duration, ..
        } => (Some(backup), *duration),
        Progress::Continues { .. } => (None, std::time::Duration::ZERO),
    };
    job_event::Event::Completed(v1::JobCompleted {
        subject_id: b.map(|b| b.backup_id.to_string()).unwrap_or_default(),
        objects: b.map_or(0, |b| u64::from(b.objects)),
        records: b.map_or(0, |b| b.record_count),
        bytes: b.map_or(0, |b| b.bytes),
        duration_ms: duration.as_millis() as u64,
    })
}

fn failed_event(e: &WorkerError, will_retry: bool) -> job_event::Event {
    job_event::Event::Failed(v1::JobFailed {
        error_class: e.class().to_string(),
        reason: e.to_string(),
        will_retry,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned())
}
