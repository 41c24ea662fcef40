//! `coffer retention`: a tenant's (or org's) retention policy and its legal holds.

use anyhow::bail;
use coffer_catalog::HoldScope;
use coffer_core::retention::Policy;
use coffer_core::{BackupId, OrgId, TenantId};
use serde_json::json;

use super::{done, print_json, say};
use crate::args::Services;
use crate::connect;

/// Retention subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RetentionCommand {
    /// Set the policy of a tenant (the default of its orgs) or of one org (which wins). Rules
    /// add up: a backup is kept when any rule keeps it. The newest complete backup of an org,
    /// and every base an incremental needs, are always kept.
    Set(SetArgs),
    /// Show the policy that applies to an org (its own, else its tenant's).
    Show(ShowArgs),
    /// Place a legal hold on a tenant, an org or one backup: nothing under it is deleted until
    /// it is released.
    Hold(HoldArgs),
    /// Release a legal hold.
    Release(ReleaseArgs),
    /// List a tenant's holds, released ones included.
    Holds(HoldsArgs),
}

/// `retention set` options.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// Only this org (otherwise: the tenant's default).
    #[arg(long)]
    org: Option<OrgId>,
    /// Keep every complete backup younger than N days.
    #[arg(long)]
    keep_days: Option<u32>,
    /// Keep the N newest complete backups.
    #[arg(long)]
    keep_last: Option<u32>,
    /// Keep the newest backup of each of the N newest days that have one (UTC).
    #[arg(long)]
    keep_daily: Option<u32>,
    /// Keep the newest backup of each of the N newest ISO weeks that have one (UTC).
    #[arg(long)]
    keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the N newest months that have one (UTC).
    #[arg(long)]
    keep_monthly: Option<u32>,
    /// On a versioned bucket, delete every version Coffer wrote of what retention removes,
    /// not only add delete markers (read from the tenant's policy).
    #[arg(long)]
    delete_versions: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `retention show` options.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// The org.
    #[arg(long)]
    org: OrgId,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `retention hold` options.
#[derive(Debug, clap::Args)]
pub struct HoldArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant (alone: a hold on all of it).
    #[arg(long)]
    tenant: TenantId,
    /// Hold every backup of this org.
    #[arg(long, conflicts_with = "backup")]
    org: Option<OrgId>,
    /// Hold this backup.
    #[arg(long)]
    backup: Option<BackupId>,
    /// Why (a case or request reference); kept with the hold.
    #[arg(long)]
    reason: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `retention release` options.
#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// The hold's id (`retention holds`).
    #[arg(long)]
    hold: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `retention holds` options.
#[derive(Debug, clap::Args)]
pub struct HoldsArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a retention subcommand.
pub async fn run(cmd: RetentionCommand) -> anyhow::Result<()> {
    match cmd {
        RetentionCommand::Set(args) => set(args).await,
        RetentionCommand::Show(args) => show(args).await,
        RetentionCommand::Hold(args) => hold(args).await,
        RetentionCommand::Release(args) => release(args).await,
        RetentionCommand::Holds(args) => holds(args).await,
    }
}

async fn set(args: SetArgs) -> anyhow::Result<()> {
    let policy = Policy {
        keep_days: args.keep_days,
        keep_last: args.keep_last,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        delete_versions: args.delete_versions,
    };
    if policy.is_empty() {
        bail!(
            "a policy needs at least one rule (--keep-days, --keep-last, --keep-daily, --keep-weekly or --keep-monthly)"
        );
    }
    let catalog = connect::catalog(&args.services).await?;
    catalog
        .put_retention_policy(&args.tenant, args.org.as_ref(), &policy)
        .await?;
    let whose = match &args.org {
        Some(org) => format!("org {org} of tenant {}", args.tenant),
        None => format!("tenant {} (the default of its orgs)", args.tenant),
    };
    done(
        args.json,
        json!({"tenant": args.tenant.as_str(), "org_id": args.org.as_ref().map(|o| o.as_str()), "policy": policy}),
        format!("retention of {whose}: keep {}", policy.describe()),
    )
}

async fn show(args: ShowArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let policy = catalog.retention_policy(&args.tenant, &args.org).await?;
    if args.json {
        return print_json(&json!({ "policy": policy }));
    }
    match policy {
        Some(p) => say(format!("keep {}", p.describe())),
        None => say("no retention policy: nothing is deleted"),
    }
    Ok(())
}

async fn hold(args: HoldArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let scope = match (args.org, args.backup) {
        (Some(org), _) => HoldScope::Org(org),
        (None, Some(backup)) => HoldScope::Backup(backup),
        (None, None) => HoldScope::Tenant,
    };
    let id = catalog
        .place_hold(&args.tenant, &scope, &args.reason)
        .await?;
    match args.json {
        true => print_json(&json!({ "hold_id": id })),
        false => {
            say(format!(
                "hold {id} placed on {}",
                describe_scope(&args.tenant, &scope)
            ));
            Ok(())
        }
    }
}

async fn release(args: ReleaseArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    if !catalog.release_hold(&args.tenant, args.hold).await? {
        bail!("tenant {} has no hold {} in force", args.tenant, args.hold);
    }
    done(
        args.json,
        json!({"tenant": args.tenant.as_str(), "hold_id": args.hold, "released": true}),
        format!("hold {} released", args.hold),
    )
}

async fn holds(args: HoldsArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let holds = catalog.holds(&args.tenant).await?;
    let rows: Vec<serde_json::Value> = holds
        .iter()
        .map(|h| {
            json!({
                "hold_id": h.hold_id,
                "on": describe_scope(&h.tenant_id, &h.scope),
                "reason": h.reason,
                "placed_at": super::backups::rfc3339(h.placed_at),
                "released_at": h.released_at.map(super::backups::rfc3339),
            })
        })
        .collect();
    if args.json {
        return print_json(&json!({ "holds": rows }));
    }
    for h in &holds {
        let state = match h.released_at {
            Some(at) => format!("released {}", super::backups::rfc3339(at)),
            None => "in force".to_owned(),
        };
        say(format!(
            "{:>5}  {}  {state}  {}",
            h.hold_id,
            describe_scope(&h.tenant_id, &h.scope),
            h.reason
        ));
    }
    Ok(())
}

fn describe_scope(tenant: &TenantId, scope: &HoldScope) -> String {
    match scope {
        HoldScope::Tenant => format!("tenant {tenant}"),
        HoldScope::Org(org) => format!("org {org} of tenant {tenant}"),
        HoldScope::Backup(backup) => format!("backup {backup} of tenant {tenant}"),
    }
}
