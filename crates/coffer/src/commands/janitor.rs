//! `coffer janitor`: what retention no longer keeps.

use coffer_core::retention::{Decision, DeleteReason, KeepReason};
use coffer_core::{OrgId, TenantId};
use coffer_worker::janitor::{OrgPlan, plan_org, plan_tenant};
use serde_json::json;

use super::{print_json, say};
use crate::args::Services;
use crate::connect;

/// Janitor subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum JanitorCommand {
    /// Print which backups the policy keeps and which it would delete, with the rule behind
    /// every decision. Deletes nothing.
    Plan(PlanArgs),
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

/// Runs a janitor subcommand.
pub async fn run(cmd: JanitorCommand) -> anyhow::Result<()> {
    match cmd {
        JanitorCommand::Plan(args) => plan(args).await,
    }
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
                let why = match reason {
                    DeleteReason::Expired { policy } => format!("no rule keeps it ({policy})"),
                    DeleteReason::Failed => "failed".to_owned(),
                };
                say(format!("  delete  {backup_id}  {why}"));
            }
        }
    }
}

fn keep_reason(reason: &KeepReason) -> String {
    match reason {
        KeepReason::Newest => "newest complete backup".to_owned(),
        KeepReason::Hold => "legal hold".to_owned(),
        KeepReason::Running => "running".to_owned(),
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
