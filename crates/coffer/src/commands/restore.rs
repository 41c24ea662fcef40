//! `coffer restore`: request a restore (plan only, or plan and write), and read its plan and
//! status back from the catalog.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use coffer_catalog::{Catalog, JobState, RecordState, RestoreRecord, RestoreState};
use coffer_core::{BackupId, JobId, OrgId, TenantId};
use coffer_proto::v1::{RestoreMode, RestoreRequested, RestoreScope, job_envelope::Job};
use serde_json::json;

use super::backups::rfc3339;
use super::enqueue::{not_finished, publish_job};
use super::{print_json, say};
use crate::args::Services;
use crate::connect;
use crate::progress::Progress;

/// Restores.
#[derive(Debug, clap::Subcommand)]
pub enum RestoreCommand {
    /// Request a restore: the plan always, the writes with `--execute`.
    Start(StartArgs),
    /// Print the stored plan of a restore: write order, second-pass lookups, what cannot be
    /// restored, and records per object and action.
    Plan(JobArgs),
    /// Print a restore's state, its counts per object and outcome, and every failed record
    /// with Salesforce's error.
    Status(JobArgs),
}

/// `restore start` options.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// The org the backup was taken of.
    #[arg(long)]
    org: OrgId,
    /// The backup to restore from.
    #[arg(long, conflicts_with = "as_of", required_unless_present = "as_of")]
    backup: Option<BackupId>,
    /// Restore the state as of this time (RFC 3339): the org's newest complete backup by then.
    #[arg(long, value_parser = super::backups::parse_rfc3339)]
    as_of: Option<time::OffsetDateTime>,
    /// Every record of this sObject (repeatable).
    #[arg(long = "object")]
    objects: Vec<String>,
    /// This record (repeatable).
    #[arg(long = "id")]
    ids: Vec<String>,
    /// Levels of children to include, following the stored relationships.
    #[arg(long, default_value_t = 1)]
    children: u32,
    /// Levels of parents to include.
    #[arg(long, default_value_t = 0)]
    parents: u32,
    /// Write into this org (a sandbox, say) instead of the source org.
    #[arg(long)]
    target_org: Option<OrgId>,
    /// Write the records (without it, only the plan is made).
    #[arg(long)]
    execute: bool,
    /// Wait until the restore is planned (or done, with `--execute`), with a progress bar on a
    /// terminal (plain lines on stderr otherwise); exits 1 if it fails.
    #[arg(long)]
    wait: bool,
    /// With `--wait`: stop waiting after this long (`30m`, `2h`) and exit 1; the restore goes
    /// on. Unset: wait as long as it takes.
    #[arg(long, requires = "wait", value_parser = super::parse_duration)]
    wait_timeout: Option<Duration>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Options naming a restore by its job.
#[derive(Debug, clap::Args)]
pub struct JobArgs {
    #[command(flatten)]
    services: Services,
    /// The restore's job id (printed by `restore start`).
    #[arg(long)]
    job: JobId,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a restore command.
pub async fn run(cmd: RestoreCommand) -> anyhow::Result<()> {
    match cmd {
        RestoreCommand::Start(args) => start(args).await,
        RestoreCommand::Plan(args) => plan(args).await,
        RestoreCommand::Status(args) => status(args).await,
    }
}

async fn start(args: StartArgs) -> anyhow::Result<()> {
    if args.objects.is_empty() && args.ids.is_empty() {
        bail!("name what to restore: --object NAME or --id RECORD_ID (repeatable)");
    }
    let broker = connect::broker(&args.services.queue()).await?;
    let publisher = broker.publisher().await?;
    let mode = match args.execute {
        true => RestoreMode::Execute,
        false => RestoreMode::PlanOnly,
    };
    let request = RestoreRequested {
        tenant_id: args.tenant.to_string(),
        org_id: args.org.to_string(),
        backup_id: args.backup.map(|b| b.to_string()).unwrap_or_default(),
        as_of_unix_ms: args
            .as_of
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .unwrap_or(0),
        target_org_id: args
            .target_org
            .as_ref()
            .map(|o| o.to_string())
            .unwrap_or_default(),
        scope: Some(RestoreScope {
            sobjects: args.objects.clone(),
            record_ids: args.ids.clone(),
            child_depth: args.children,
            parent_depth: args.parents,
        }),
        mode: mode as i32,
    };
    let job = Job::RestoreRequested(request);
    let job_id = publish_job(&publisher, &args.tenant, "restore_requested", job).await?;
    if !args.wait {
        match args.json {
            true => print_json(&json!({ "job_id": job_id.to_string() }))?,
            false => say(format!(
                "enqueued restore job {job_id} ({}); follow it with `coffer restore status --job {job_id}`",
                if args.execute {
                    "plan and write"
                } else {
                    "plan only"
                }
            )),
        }
        return Ok(());
    }
    let catalog = connect::catalog(&args.services).await?;
    let target = args.target_org.as_ref().unwrap_or(&args.org);
    let progress = Progress::new(format!("restore into org {target}"), "records", args.json);
    let deadline = args.wait_timeout.map(|t| (Instant::now() + t, t));
    let restore = wait(&catalog, job_id, args.execute, Some(progress), deadline).await?;
    report(&catalog, &restore, args.json).await?;
    if restore.state == RestoreState::Failed {
        bail!(
            "restore {} failed: {}",
            restore.restore_id,
            restore.error.as_deref().unwrap_or("no error recorded")
        );
    }
    Ok(())
}

/// Polls the catalog until the restore of `job` is complete or failed (or, plan only, planned:
/// an executing restore passes through `planned` on its way to writing), showing records
/// settled on `progress`. Fails when the job failed before it began a restore (an unknown
/// backup, say), or past `deadline` (the instant, and the timeout it came from).
pub(super) async fn wait(
    catalog: &Catalog,
    job: JobId,
    execute: bool,
    mut progress: Option<Progress>,
    deadline: Option<(Instant, Duration)>,
) -> anyhow::Result<RestoreRecord> {
    let ended = loop {
        if let Some((at, timeout)) = deadline
            && Instant::now() >= at
        {
            let follow = format!("coffer restore status --job {job}");
            break Err(anyhow::anyhow!(
                "restore {}",
                not_finished(job, timeout, &follow)
            ));
        }
        match catalog.restore_of_job(job).await? {
            Some(restore) => {
                if let Some(progress) = &mut progress {
                    let (settled, total) = settled(catalog, &restore).await?;
                    progress.update(restore.state.as_str(), "", settled, total);
                }
                let done = match restore.state {
                    RestoreState::Complete | RestoreState::Failed => true,
                    RestoreState::Planned => !execute,
                    _ => false,
                };
                if done {
                    break Ok(restore);
                }
            }
            None => {
                if let Some(j) = catalog.job(job).await?
                    && j.state == JobState::Failed
                {
                    break Err(anyhow::anyhow!(
                        "restore job {job} failed before it began: {}",
                        j.last_error.as_deref().unwrap_or("no error recorded")
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if let Some(progress) = &progress {
        progress.finish();
    }
    ended
}

/// Records of the restore no longer pending, and all its records.
async fn settled(catalog: &Catalog, restore: &RestoreRecord) -> anyhow::Result<(u64, u64)> {
    let counts = catalog.restore_counts(&restore.restore_id).await?;
    let total: u64 = counts.iter().map(|c| c.count).sum();
    let settled: u64 = counts
        .iter()
        .filter(|c| c.state != RecordState::Pending)
        .map(|c| c.count)
        .sum();
    Ok((settled, total))
}

async fn find(args: &JobArgs) -> anyhow::Result<(Catalog, RestoreRecord)> {
    let catalog = connect::catalog(&args.services).await?;
    let restore = catalog.restore_of_job(args.job).await?.with_context(|| {
        format!(
            "no restore for job {} (not picked up by a worker yet?)",
            args.job
        )
    })?;
    Ok((catalog, restore))
}

async fn plan(args: JobArgs) -> anyhow::Result<()> {
    let (_, restore) = find(&args).await?;
    let Some(plan) = restore.plan_json.as_deref() else {
        bail!(
            "restore {} has no plan yet (state {})",
            restore.restore_id,
            restore.state.as_str()
        );
    };
    let plan: serde_json::Value = serde_json::from_str(plan)?;
    if args.json {
        return print_json(&plan);
    }
    say(format!(
        "restore {} of backup {}",
        restore.restore_id, restore.backup_id
    ));
    let objects = plan["order"]["objects"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (n, object) in objects.iter().enumerate() {
        let name = object.as_str().unwrap_or_default();
        let counts = &plan["counts"][name];
        say(format!("  {}. {name}: {counts}", n + 1));
    }
    for deferred in plan["order"]["deferred"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        say(format!(
            "  second pass: {}.{}",
            deferred["sobject"].as_str().unwrap_or_default(),
            deferred["field"].as_str().unwrap_or_default()
        ));
    }
    for blocked in plan["order"]["blocked"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        say(format!(
            "  cannot restore: {}",
            blocked["reason"].as_str().unwrap_or_default()
        ));
    }
    if let Some(left_out) = plan["left_out"].as_object() {
        for (object, why) in left_out {
            say(format!(
                "  left out: {} {object} ({})",
                why["records"],
                why["reason"].as_str().unwrap_or_default()
            ));
        }
    }
    for warning in plan["warnings"].as_array().cloned().unwrap_or_default() {
        say(format!(
            "  warning: {}",
            warning.as_str().unwrap_or_default()
        ));
    }
    Ok(())
}

async fn status(args: JobArgs) -> anyhow::Result<()> {
    let (catalog, restore) = find(&args).await?;
    report(&catalog, &restore, args.json).await
}

/// Prints a restore's state, counts and failures.
async fn report(catalog: &Catalog, restore: &RestoreRecord, as_json: bool) -> anyhow::Result<()> {
    let counts = catalog.restore_counts(&restore.restore_id).await?;
    let failed = catalog
        .restore_rows(&restore.restore_id, None, Some(RecordState::Failed))
        .await?;
    let mut per_object: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for c in &counts {
        *per_object
            .entry(c.sobject.clone())
            .or_default()
            .entry(format!("{}:{}", c.action.as_str(), c.state.as_str()))
            .or_default() += c.count;
    }
    if as_json {
        let failures: Vec<_> = failed
            .iter()
            .map(|r| json!({"sobject": r.sobject, "source_id": r.source_id, "action": r.action.as_str(), "error": r.error}))
            .collect();
        return print_json(&json!({
            "restore_id": restore.restore_id,
            "job_id": restore.job_id.to_string(),
            "backup_id": restore.backup_id.to_string(),
            "target_org_id": restore.target_org_id.to_string(),
            "mode": restore.mode.as_str(),
            "state": restore.state.as_str(),
            "error": restore.error,
            "created_at": rfc3339(restore.created_at),
            "finished_at": restore.finished_at.map(rfc3339),
            "counts": per_object,
            "failed": failures,
        }));
    }
    say(format!(
        "restore {} ({}) of backup {} into org {}: {}",
        restore.restore_id,
        restore.mode.as_str(),
        restore.backup_id,
        restore.target_org_id,
        restore.state.as_str()
    ));
    if let Some(error) = &restore.error {
        say(format!("  error: {error}"));
    }
    for (object, outcomes) in &per_object {
        let line: Vec<String> = outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        say(format!("  {object}: {}", line.join(", ")));
    }
    for row in &failed {
        say(format!(
            "  failed {} {}: {}",
            row.sobject,
            row.source_id,
            row.error.as_deref().unwrap_or("")
        ));
    }
    Ok(())
}
