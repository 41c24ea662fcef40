//! `coffer erase`: removes records (a person's) from every kept backup of an org and keeps
//! their tombstones, so that no later restore brings them back.

use anyhow::bail;
use coffer_core::{OrgId, TenantId};
use coffer_worker::WorkerSettings;
use coffer_worker::backup::BackupContext;
use coffer_worker::janitor::erase::{ErasureReport, erase_records, finish_erasures};
use coffer_worker::storage::StorageClients;

use super::{print_json, say};
use crate::args::Services;
use crate::connect;

/// `erase` options.
#[derive(Debug, clap::Args)]
pub struct EraseArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// The org the records belong to.
    #[arg(long)]
    org: OrgId,
    /// A record id to erase (18 characters); repeat for several.
    #[arg(long = "record", value_name = "ID")]
    records: Vec<String>,
    /// Why (a ticket or request number), kept with the tombstones.
    #[arg(long, default_value = "erasure request")]
    reason: String,
    /// Finish erasures a crash (or a backup running at the time) left pending.
    #[arg(long)]
    resume: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `coffer erase`.
pub async fn run(args: EraseArgs) -> anyhow::Result<()> {
    if args.records.is_empty() && !args.resume {
        bail!("name the records to erase (--record ID, repeated), or --resume pending erasures");
    }
    for id in &args.records {
        let valid = id.len() == 18 && id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid {
            bail!("{id:?} is not an 18-character Salesforce record id");
        }
    }
    let services = &args.services;
    let catalog = connect::catalog(services).await?;
    if catalog.org(&args.tenant, &args.org).await?.is_none() {
        bail!(
            "org {} is not connected to tenant {}",
            args.org,
            args.tenant
        );
    }
    let ctx = BackupContext {
        worker_name: format!("erase@{}", std::process::id()),
        catalog,
        storage: StorageClients::new(
            services.s3(),
            services.vendor.clone(),
            services.envelope_key()?,
        ),
        settings: WorkerSettings {
            vendor: services.vendor.clone(),
            envelope_key: services.envelope_key()?,
            ..WorkerSettings::new(services.s3())
        },
    };
    let report = match args.records.is_empty() {
        true => finish_erasures(&ctx, &args.tenant, &args.org).await?,
        false => erase_records(&ctx, &args.tenant, &args.org, &args.records, &args.reason).await?,
    };
    print_report(&report, args.json)
}

fn print_report(report: &ErasureReport, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&serde_json::to_value(report)?);
    }
    say(format!(
        "{} new tombstones; {} records parts rewritten in {} backups",
        report.new_tombstones, report.parts_rewritten, report.backups
    ));
    if !report.pending.is_empty() {
        say(format!(
            "pending (a backup holding them is still running; run `coffer erase --resume` once it ends): {}",
            report.pending.join(", ")
        ));
    }
    Ok(())
}
