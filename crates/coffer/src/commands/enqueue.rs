//! `coffer enqueue backup`: publish BackupRequested jobs (with publisher confirms), and with
//! `--wait` follow each backup in the catalog until it is complete or failed.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use coffer_catalog::{BackupRecord, BackupState, Catalog, JobState};
use coffer_core::{JobId, OrgId, TenantId};
use coffer_proto::v1::{BackupKind, BackupRequested, JobEnvelope, job_envelope::Job};
use coffer_queue::{OutgoingJob, Publisher};

use serde_json::json;

use super::{print_json, say};
use crate::args::Services;
use crate::connect;
use crate::progress::Progress;

/// Jobs that can be enqueued.
#[derive(Debug, clap::Subcommand)]
pub enum EnqueueCommand {
    /// Back up a tenant's orgs (all connected orgs unless `--org` is given).
    Backup(BackupArgs),
}

/// `enqueue backup` options.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// Only these orgs (repeatable).
    #[arg(long)]
    org: Vec<OrgId>,
    /// Only these sObjects (repeatable); all by default.
    #[arg(long)]
    sobject: Vec<String>,
    /// Only what changed (and was deleted) since the org's newest complete backup; an org
    /// without one gets a full backup.
    #[arg(long)]
    incremental: bool,
    /// Wait until every backup is complete or failed, with a progress bar on a terminal (plain
    /// lines on stderr otherwise); exits 1 if any failed.
    #[arg(long)]
    wait: bool,
    /// With `--wait`: stop waiting after this long (`30m`, `2h`) and exit 1, naming the
    /// backups not finished; they go on. Unset: wait as long as they take.
    #[arg(long, requires = "wait", value_parser = super::parse_duration)]
    wait_timeout: Option<Duration>,
    /// Print the job ids (and, with `--wait`, each backup's outcome) as JSON.
    #[arg(long)]
    json: bool,
}

/// How a waited-for backup ended (or how far it got when the wait timed out).
struct Outcome {
    backup: Option<BackupRecord>,
    error: Option<String>,
    timed_out: bool,
}

impl Outcome {
    fn complete(&self) -> bool {
        self.backup
            .as_ref()
            .is_some_and(|b| b.state == BackupState::Complete)
    }
}

/// Publishes one BackupRequested per org; with `--wait`, follows them to the end.
pub async fn run(cmd: EnqueueCommand) -> anyhow::Result<()> {
    let EnqueueCommand::Backup(args) = cmd;
    let orgs = orgs_to_back_up(&args).await?;
    let broker = connect::broker(&args.services.queue()).await?;
    let publisher = broker.publisher().await?;
    let kind = match args.incremental {
        true => BackupKind::Incremental,
        false => BackupKind::Full,
    };
    let mut jobs = Vec::new();
    for org in &orgs {
        let job_id = publish_backup(&publisher, &args.tenant, org, &args.sobject, kind).await?;
        if !args.json {
            say(format!(
                "enqueued {} backup job {job_id} for tenant {} org {org}",
                if args.incremental {
                    "incremental"
                } else {
                    "full"
                },
                args.tenant
            ));
        }
        jobs.push((job_id, org.clone()));
    }
    match args.wait {
        true => wait_all(&args, &jobs).await,
        false if args.json => print_json(&json!({
            "jobs": jobs.iter().map(|(job, org)| job_json(&args.tenant, *job, org)).collect::<Vec<_>>()
        })),
        false => Ok(()),
    }
}

fn job_json(tenant: &TenantId, job: JobId, org: &OrgId) -> serde_json::Value {
    json!({"job_id": job.to_string(), "tenant": tenant.as_str(), "org_id": org.as_str()})
}

/// Waits for every job's backup in turn, prints each outcome, fails if any backup failed.
async fn wait_all(args: &BackupArgs, jobs: &[(JobId, OrgId)]) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let deadline = args.wait_timeout.map(|t| (Instant::now() + t, t));
    let mut results = Vec::new();
    let mut failed = 0;
    for (job, org) in jobs {
        let progress = Progress::new(format!("backup of org {org}"), "tasks", args.json);
        let outcome = wait_backup(&catalog, *job, progress, deadline).await?;
        if !outcome.complete() {
            failed += 1;
        }
        let mut result = job_json(&args.tenant, *job, org);
        if let Some(b) = &outcome.backup {
            result["backup"] = super::backups::backup_json(b);
        }
        result["error"] = json!(outcome.error);
        result["timed_out"] = json!(outcome.timed_out);
        if !args.json {
            say(outcome_line(org, &outcome));
        }
        results.push(result);
    }
    if args.json {
        print_json(&json!({ "jobs": results }))?;
    }
    match failed {
        0 => Ok(()),
        n => bail!("{n} of {} backups failed or did not finish", jobs.len()),
    }
}

fn outcome_line(org: &OrgId, outcome: &Outcome) -> String {
    match (&outcome.backup, &outcome.error) {
        (Some(b), None) => format!(
            "backup {} of org {org}: {}, {} records in {} objects, {} bytes",
            b.backup_id,
            b.state.as_str(),
            b.record_count,
            b.objects,
            b.bytes
        ),
        (Some(b), Some(e)) => format!(
            "backup {} of org {org}: {}: {e}",
            b.backup_id,
            b.state.as_str()
        ),
        (None, Some(e)) if outcome.timed_out => format!("backup of org {org}: still queued, {e}"),
        (None, e) => format!(
            "backup of org {org} failed before it started: {}",
            e.as_deref().unwrap_or("no error recorded")
        ),
    }
}

/// Polls the catalog until the backup of `job` is complete or failed (or the job failed before
/// it began a backup), showing tasks done on `progress`; past `deadline` (the instant, and the
/// timeout it came from) gives up waiting with an error that says the backup goes on.
async fn wait_backup(
    catalog: &Catalog,
    job: JobId,
    mut progress: Progress,
    deadline: Option<(Instant, Duration)>,
) -> anyhow::Result<Outcome> {
    loop {
        if let Some((at, timeout)) = deadline
            && Instant::now() >= at
        {
            progress.finish();
            let backup = catalog.backup_of_job(job).await?;
            return Ok(Outcome {
                backup,
                error: Some(not_finished(job, timeout, "coffer status")),
                timed_out: true,
            });
        }
        let backup = catalog.backup_of_job(job).await?;
        match &backup {
            Some(b) => {
                let counts = catalog.task_counts(b.backup_id).await?;
                let state = match (b.state, counts.total) {
                    (BackupState::Running, 0) => "planning",
                    (state, _) => state.as_str(),
                };
                let records = format!("{} records", counts.records);
                progress.update(state, &records, counts.done.into(), counts.total.into());
                if b.state != BackupState::Running {
                    progress.finish();
                    let error = match b.state {
                        BackupState::Complete => None,
                        _ => Some(job_error(catalog, job).await?),
                    };
                    return Ok(Outcome {
                        backup,
                        error,
                        timed_out: false,
                    });
                }
            }
            None => {
                progress.update("queued", "", 0, 0);
                if let Some(j) = catalog.job(job).await?
                    && j.state == JobState::Failed
                {
                    progress.finish();
                    let error = j
                        .last_error
                        .unwrap_or_else(|| "no error recorded".to_owned());
                    return Ok(Outcome {
                        backup: None,
                        error: Some(error),
                        timed_out: false,
                    });
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What a wait that timed out says: the job is not cancelled, and `follow` shows it.
pub(super) fn not_finished(job: JobId, timeout: Duration, follow: &str) -> String {
    format!(
        "not finished after {}: stopped waiting; job {job} goes on (`{follow}` follows it)",
        super::format_duration(timeout)
    )
}

async fn job_error(catalog: &Catalog, job: JobId) -> anyhow::Result<String> {
    Ok(catalog
        .job(job)
        .await?
        .and_then(|j| j.last_error)
        .unwrap_or_else(|| "no error recorded".to_owned()))
}

async fn orgs_to_back_up(args: &BackupArgs) -> anyhow::Result<Vec<OrgId>> {
    if !args.org.is_empty() {
        return Ok(args.org.clone());
    }
    let catalog = connect::catalog(&args.services).await?;
    let orgs: Vec<OrgId> = catalog
        .orgs_of(&args.tenant)
        .await?
        .into_iter()
        .map(|o| o.org_id)
        .collect();
    if orgs.is_empty() {
        bail!(
            "tenant {} has no connected org (see `coffer tenant connect-org`)",
            args.tenant
        );
    }
    Ok(orgs)
}

/// Publishes a BackupRequested and waits for the broker's confirm; returns its job id.
pub async fn publish_backup(
    publisher: &Publisher,
    tenant: &TenantId,
    org: &OrgId,
    sobjects: &[String],
    kind: BackupKind,
) -> anyhow::Result<JobId> {
    let job = Job::BackupRequested(BackupRequested {
        tenant_id: tenant.to_string(),
        org_id: org.to_string(),
        kind: kind as i32,
        sobjects: sobjects.to_vec(),
    });
    publish_job(publisher, tenant, "backup_requested", job).await
}

/// Publishes `job` in an envelope with a new job id, stamped with the time and the user, and
/// waits for the broker's confirm; returns the job id.
#[tracing::instrument(name = "enqueue", skip_all, fields(tenant = %tenant, kind = %kind, job_id = tracing::field::Empty))]
pub async fn publish_job(
    publisher: &Publisher,
    tenant: &TenantId,
    kind: &str,
    job: Job,
) -> anyhow::Result<JobId> {
    let job_id = JobId::generate();
    tracing::Span::current().record("job_id", tracing::field::display(job_id));
    let envelope = JobEnvelope {
        schema_version: coffer_proto::CURRENT_SCHEMA_VERSION,
        job_id: job_id.to_string(),
        requested_at_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        requested_by: format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned())
        ),
        traceparent: String::new(),
        job: Some(job),
    };
    let payload = coffer_proto::encode(&envelope);
    let outgoing = OutgoingJob {
        message_id: &envelope.job_id,
        kind,
        tenant: Some(tenant.as_str()),
        payload: &payload,
    };
    publisher
        .publish_job(outgoing)
        .await
        .context("the broker did not confirm the job")?;
    Ok(job_id)
}
