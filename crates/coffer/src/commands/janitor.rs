//! `coffer janitor`: what retention no longer keeps, planned (`plan`), deleted (`run`, or a
//! loop with `--every`), and the record of what went (`marks`).

use std::time::Duration;

use anyhow::bail;
use coffer_core::retention::{Decision, DeleteReason, KeepReason};
use coffer_core::{OrgId, TenantId};
use coffer_worker::janitor::sweep::{
    Janitor, OrgSweep, SweepReport, SweepSettings, sweep_all, sweep_tenant,
};
use coffer_worker::janitor::{OrgPlan, plan_org, plan_tenant};
use coffer_worker::storage::StorageClients;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{parse_duration, parse_duration_or_zero, print_json, say};
use crate::args::Services;
use crate::connect;

/// `coffer janitor`: a subcommand, or (with `--every`) sweeps in a loop.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct JanitorArgs {
    #[command(subcommand)]
    command: Option<JanitorCommand>,
    #[command(flatten)]
    run: RunArgs,
}

/// Janitor subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum JanitorCommand {
    /// Print which backups the policy keeps and which it would delete, with the rule behind
    /// every decision. Deletes nothing.
    Plan(PlanArgs),
    /// Sweep once (for a cron job): plan, mark, delete what is due after the grace period,
    /// unreferenced file bodies and stale uploads. Exits 1 if anything failed.
    Run(RunArgs),
    /// What retention marked and deleted, when and why.
    Marks(MarksArgs),
}

/// `janitor run` options (and `janitor --every`).
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    services: Services,
    /// With `--every`: the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
    #[command(flatten)]
    http: crate::telemetry::HttpArgs,
    /// Only this tenant (otherwise every tenant).
    #[arg(long)]
    tenant: Option<TenantId>,
    /// Between marking a backup and deleting it (`0` deletes what is due at once).
    #[arg(long, env = "COFFER_RETENTION_GRACE", default_value = "1d", value_parser = parse_duration_or_zero)]
    grace: Duration,
    /// Multipart uploads open longer than this are aborted.
    #[arg(long, env = "COFFER_STALE_UPLOAD_AGE", default_value = "1d", value_parser = parse_duration_or_zero)]
    stale_upload_age: Duration,
    /// DeleteObjects requests (1,000 keys each) in flight.
    #[arg(long, env = "COFFER_JANITOR_DELETE_IN_FLIGHT", default_value_t = 8)]
    delete_in_flight: usize,
    /// Plan and store the plans; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Sweep again after this long, until SIGTERM (one tenant's failure never stops the loop).
    #[arg(long, value_parser = parse_duration)]
    every: Option<Duration>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `janitor marks` options.
#[derive(Debug, clap::Args)]
pub struct MarksArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `janitor plan` options.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// Only this org (otherwise every org of the tenant).
    #[arg(long)]
    org: Option<OrgId>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a janitor subcommand, or the loop.
pub async fn run(args: JanitorArgs) -> anyhow::Result<()> {
    match args.command {
        Some(JanitorCommand::Plan(args)) => plan(args).await,
        Some(JanitorCommand::Run(args)) => sweep(args).await,
        Some(JanitorCommand::Marks(args)) => marks(args).await,
        None if args.run.every.is_some() => sweep(args.run).await,
        None => {
            bail!("say what to do: `coffer janitor plan|run|marks`, or `coffer janitor --every 1h`")
        }
    }
}

/// One sweep, or (with `--every`) sweeps until SIGTERM.
async fn sweep(args: RunArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let services = &args.services;
    let storage = StorageClients::new(
        services.s3(),
        services.vendor.clone(),
        services.envelope_key()?,
    );
    let settings = SweepSettings {
        grace: args.grace,
        stale_upload_age: args.stale_upload_age,
        delete_in_flight: args.delete_in_flight.max(1),
        dry_run: args.dry_run,
        ..SweepSettings::default()
    };
    let name = format!("janitor@{}", std::process::id());
    let janitor = Janitor {
        catalog: &catalog,
        storage: &storage,
        settings: &settings,
        name: &name,
    };
    let Some(every) = args.every else {
        let report = sweep_once(&janitor, args.tenant.as_ref()).await?;
        print_report(&report, args.json)?;
        if report.has_failures() {
            bail!("the sweep left failures (above); the next sweep retries them");
        }
        return Ok(());
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(super::stop_on_signal(shutdown.clone()));
    let checks = vec![crate::telemetry::catalog_check(&catalog)];
    let http = crate::telemetry::serve(&args.http, checks, shutdown.clone()).await?;
    tracing::info!(every_s = every.as_secs(), "janitor started");
    loop {
        match sweep_once(&janitor, args.tenant.as_ref()).await {
            Ok(report) => print_report(&report, args.json)?,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "sweep failed; trying again next time")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    if let Some(server) = http {
        let _ = server.task.await;
    }
    tracing::info!("janitor stopped");
    Ok(())
}

async fn sweep_once(
    janitor: &Janitor<'_>,
    tenant: Option<&TenantId>,
) -> anyhow::Result<SweepReport> {
    Ok(match tenant {
        Some(tenant) => sweep_tenant(janitor, tenant).await?,
        None => sweep_all(janitor).await?,
    })
}

fn print_report(report: &SweepReport, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&serde_json::to_value(report)?);
    }
    for org in &report.orgs {
        print_org_sweep(org);
    }
    for failure in &report.failures {
        say(format!(
            "tenant {}: FAILED {}",
            failure.tenant_id, failure.error
        ));
    }
    Ok(())
}

fn print_org_sweep(org: &OrgSweep) {
    let objects: u64 = org.expired.iter().map(|e| e.objects_deleted).sum();
    let files = org.files.as_ref();
    say(format!(
        "tenant {} org {} (sweep {}): {} to delete by the plan, {} marked, {} deleted ({objects} objects), {} file bodies and {} orphans deleted, {} stale uploads aborted",
        org.plan.tenant_id,
        org.plan.org_id,
        org.sweep_id,
        org.plan.deletions(),
        org.marked.len(),
        org.expired.len(),
        files.map_or(0, |f| f.deleted),
        files.map_or(0, |f| f.orphans),
        org.uploads_aborted,
    ));
    if let Some(why) = files.and_then(|f| f.put_off.as_deref()) {
        say(format!("  file bodies put off: {why}"));
    }
    for (backup_id, why) in &org.refused {
        say(format!("  kept at the last check: {backup_id}: {why}"));
    }
    for failure in &org.failures {
        say(format!("  FAILED {failure}"));
    }
}

async fn marks(args: MarksArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let marks = catalog.retention_marks(&args.tenant).await?;
    if args.json {
        return print_json(&json!({ "marks": marks }));
    }
    for m in &marks {
        let when = m.deleted_at.unwrap_or(m.delete_after);
        say(format!(
            "{}  org {}  {:?}  {}  {}  objects {}{}",
            m.backup_id,
            m.org_id,
            m.stage,
            super::backups::rfc3339(when),
            delete_reason(&m.reason),
            m.objects_deleted,
            m.last_error
                .as_deref()
                .map_or(String::new(), |e| format!("  last error: {e}")),
        ));
    }
    Ok(())
}

async fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let plans = match &args.org {
        Some(org) => vec![plan_org(&catalog, &args.tenant, org).await?],
        None => plan_tenant(&catalog, &args.tenant).await?,
    };
    if args.json {
        return print_json(&json!({ "orgs": plans }));
    }
    for plan in &plans {
        print_plan(plan);
    }
    Ok(())
}

fn print_plan(plan: &OrgPlan) {
    let policy = plan.policy.map_or_else(
        || "no policy (nothing is deleted)".to_owned(),
        |p| p.describe(),
    );
    say(format!(
        "org {}: keep {policy}; {} backups, {} to delete",
        plan.org_id,
        plan.decisions.len(),
        plan.deletions()
    ));
    for decision in &plan.decisions {
        match decision {
            Decision::Keep { backup_id, reasons } => {
                let why: Vec<String> = reasons.iter().map(keep_reason).collect();
                say(format!("  keep    {backup_id}  {}", why.join(", ")));
            }
            Decision::Delete { backup_id, reason } => {
                say(format!("  delete  {backup_id}  {}", delete_reason(reason)));
            }
        }
    }
}

fn delete_reason(reason: &DeleteReason) -> String {
    match reason {
        DeleteReason::Expired { policy } => format!("no rule keeps it ({policy})"),
        DeleteReason::Failed => "failed".to_owned(),
    }
}

fn keep_reason(reason: &KeepReason) -> String {
    match reason {
        KeepReason::Newest => "newest complete backup".to_owned(),
        KeepReason::Hold => "legal hold".to_owned(),
        KeepReason::Running => "running".to_owned(),
        KeepReason::Restoring => "read by a restore in progress".to_owned(),
        KeepReason::Days => "within keep-days".to_owned(),
        KeepReason::Last => "keep-last".to_owned(),
        KeepReason::Daily => "daily".to_owned(),
        KeepReason::Weekly => "weekly".to_owned(),
        KeepReason::Monthly => "monthly".to_owned(),
        KeepReason::BaseOf { incremental } => format!("base of incremental {incremental}"),
        KeepReason::NoPolicy => "no policy".to_owned(),
        KeepReason::RecentlyFailed => "failed recently (may be retried)".to_owned(),
    }
}
