//! `coffer enqueue backup`: publish BackupRequested jobs (with publisher confirms).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use coffer_core::{JobId, OrgId, TenantId};
use coffer_proto::v1::{BackupKind, BackupRequested, JobEnvelope, job_envelope::Job};
use coffer_queue::{OutgoingJob, Publisher};

use super::{print_json, say};
use crate::args::Services;
use crate::connect;

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
    /// Print the job ids as JSON.
    #[arg(long)]
    json: bool,
}

/// Publishes one BackupRequested per org.
pub async fn run(cmd: EnqueueCommand) -> anyhow::Result<()> {
    let EnqueueCommand::Backup(args) = cmd;
    let orgs = orgs_to_back_up(&args).await?;
    let broker = connect::broker(&args.services.queue()).await?;
    let publisher = broker.publisher().await?;
    let mut jobs = Vec::new();
    for org in &orgs {
        let kind = match args.incremental {
            true => BackupKind::Incremental,
            false => BackupKind::Full,
        };
        let job_id = publish_backup(&publisher, &args.tenant, org, &args.sobject, kind).await?;
        jobs.push(serde_json::json!({"job_id": job_id.to_string(), "tenant": args.tenant.as_str(), "org_id": org.as_str()}));
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
    }
    if args.json {
        print_json(&serde_json::json!({ "jobs": jobs }))?;
    }
    Ok(())
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
