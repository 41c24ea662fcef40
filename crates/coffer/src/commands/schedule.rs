//! `coffer schedule set|list|remove|enable|disable`: a tenant's backup schedules, cron
//! expressions read in an IANA time zone (`coffer scheduler` publishes them).

use anyhow::Context;
use coffer_catalog::{NewSchedule, ScheduleKind, ScheduleRecord};
use coffer_core::{OrgId, TenantId};
use serde_json::json;
use time::OffsetDateTime;

use super::backups::rfc3339;
use super::{done, print_json, say};
use crate::args::Services;
use crate::connect;

/// Schedule management.
#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule, or change one with `--id`.
    Set(SetArgs),
    /// List a tenant's schedules with their next run in UTC and in their zone.
    List {
        #[command(flatten)]
        services: Services,
        /// The tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a schedule (runs already published are not withdrawn).
    Remove {
        #[command(flatten)]
        services: Services,
        /// The schedule.
        #[arg(long)]
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resume a schedule from its next occurrence (no catch-up for the pause).
    Enable {
        #[command(flatten)]
        services: Services,
        /// The schedule.
        #[arg(long)]
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause a schedule.
    Disable {
        #[command(flatten)]
        services: Services,
        /// The schedule.
        #[arg(long)]
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Backup kinds a schedule can ask for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    /// Every record.
    Full,
    /// What changed since the previous backup.
    Incremental,
}

/// `schedule set` options.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// One org; every org the tenant has connected when unset.
    #[arg(long)]
    org: Option<OrgId>,
    /// Cron expression: `minute hour day-of-month month day-of-week` (or 6 fields, seconds
    /// first), e.g. "0 2 * * *".
    #[arg(long)]
    cron: String,
    /// IANA time zone the expression is read in, e.g. Europe/Paris.
    #[arg(long, default_value = "UTC")]
    tz: String,
    /// Backup kind.
    #[arg(long, value_enum, default_value = "full")]
    kind: KindArg,
    /// Change this existing schedule of the tenant instead of creating one.
    #[arg(long)]
    id: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a schedule command.
pub async fn run(cmd: ScheduleCommand) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    match cmd {
        ScheduleCommand::Set(args) => {
            let catalog = connect::catalog(&args.services).await?;
            let new = NewSchedule {
                tenant_id: args.tenant.clone(),
                org_id: args.org.clone(),
                cron: args.cron.clone(),
                time_zone: args.tz.clone(),
                kind: match args.kind {
                    KindArg::Full => ScheduleKind::Full,
                    KindArg::Incremental => ScheduleKind::Incremental,
                },
            };
            let s = catalog
                .put_schedule(&new, args.id, now)
                .await
                .context("schedule not saved")?;
            if args.json {
                return print_json(&schedule_json(&s));
            }
            say(format!(
                "schedule {} for tenant {} ({}): {} backup at \"{}\" {}, next run {} ({})",
                s.schedule_id,
                s.tenant_id,
                org_label(&s),
                s.kind.as_str(),
                s.cron,
                s.time_zone,
                rfc3339(s.next_run_at),
                local(&s, s.next_run_at)
            ));
            Ok(())
        }
        ScheduleCommand::List {
            services,
            tenant,
            json,
        } => {
            let catalog = connect::catalog(&services).await?;
            let schedules = catalog.schedules_of(&tenant).await?;
            if json {
                return print_json(
                    &json!({ "schedules": schedules.iter().map(schedule_json).collect::<Vec<_>>() }),
                );
            }
            say(format!(
                "{:>4}  {:<18}  {:<11}  {:<16}  {:<18}  {:<7}  {:<27}  next run (local)",
                "id", "org", "kind", "cron", "zone", "enabled", "next run (utc)"
            ));
            for s in &schedules {
                say(format!(
                    "{:>4}  {:<18}  {:<11}  {:<16}  {:<18}  {:<7}  {:<27}  {}",
                    s.schedule_id,
                    org_label(s),
                    s.kind.as_str(),
                    s.cron,
                    s.time_zone,
                    if s.enabled { "yes" } else { "no" },
                    rfc3339(s.next_run_at),
                    local(s, s.next_run_at)
                ));
            }
            Ok(())
        }
        ScheduleCommand::Remove { services, id, json } => {
            let catalog = connect::catalog(&services).await?;
            if !catalog.remove_schedule(id).await? {
                anyhow::bail!("no schedule {id} (see `coffer schedule list --tenant T`)");
            }
            done(
                json,
                json!({"id": id, "removed": true}),
                format!("schedule {id} removed"),
            )
        }
        ScheduleCommand::Enable { services, id, json } => {
            set_enabled(&services, (id, true), now, json).await
        }
        ScheduleCommand::Disable { services, id, json } => {
            set_enabled(&services, (id, false), now, json).await
        }
    }
}

async fn set_enabled(
    services: &Services,
    (id, enabled): (u64, bool),
    now: OffsetDateTime,
    json: bool,
) -> anyhow::Result<()> {
    let catalog = connect::catalog(services).await?;
    let s = catalog.set_schedule_enabled(id, enabled, now).await?;
    done(
        json,
        schedule_json(&s),
        format!(
            "schedule {id} {}, next run {} ({})",
            if s.enabled { "enabled" } else { "disabled" },
            rfc3339(s.next_run_at),
            local(&s, s.next_run_at)
        ),
    )
}

fn org_label(s: &ScheduleRecord) -> String {
    s.org_id
        .as_ref()
        .map_or_else(|| "all".to_owned(), |o| o.to_string())
}

/// `t` on the schedule's wall clock.
fn local(s: &ScheduleRecord, t: OffsetDateTime) -> String {
    s.cron_schedule()
        .map(|c| c.local(t))
        .unwrap_or_else(|_| "?".to_owned())
}

/// A schedule as JSON.
fn schedule_json(s: &ScheduleRecord) -> serde_json::Value {
    json!({
        "id": s.schedule_id,
        "tenant": s.tenant_id.as_str(),
        "org_id": s.org_id.as_ref().map(|o| o.as_str()),
        "cron": s.cron,
        "tz": s.time_zone,
        "kind": s.kind.as_str(),
        "enabled": s.enabled,
        "next_run_utc": rfc3339(s.next_run_at),
        "next_run_local": local(s, s.next_run_at),
        "last_run_utc": s.last_run_at.map(rfc3339),
        "last_job_id": s.last_job_id.map(|j| j.to_string()),
    })
}
