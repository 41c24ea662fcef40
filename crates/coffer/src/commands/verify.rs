//! `coffer verify`: checks that a tenant's storages and the catalog agree (every object present
//! with its size, a sample read back and its SHA-256 checked, nothing unknown, no stale upload,
//! manifests in step). Exits 1 when anything disagrees.

use std::time::Duration;

use anyhow::bail;
use coffer_core::{OrgId, TenantId};
use coffer_worker::storage::StorageClients;
use coffer_worker::verify::{OrgReport, Problem, VerifyReport, VerifySettings, verify_tenant};

use super::{parse_duration_or_zero, print_json, say};
use crate::args::Services;
use crate::connect;

/// `coffer verify` options.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// Only this org (otherwise every org of the tenant, and objects outside them).
    #[arg(long)]
    org: Option<OrgId>,
    /// Share of objects (0 to 1) read back in full and their SHA-256 checked; 0 checks
    /// presence and sizes only.
    #[arg(long, default_value_t = 1.0, value_parser = parse_sample)]
    sample: f64,
    /// Chooses the sample (the report gives the one used; the same seed reads the same
    /// objects). Random by default.
    #[arg(long)]
    seed: Option<u64>,
    /// Multipart uploads open longer than this are reported.
    #[arg(long, env = "COFFER_STALE_UPLOAD_AGE", default_value = "1d", value_parser = parse_duration_or_zero)]
    stale_upload_age: Duration,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_sample(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

/// Verifies the tenant, prints the report, and fails when anything disagrees.
pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let services = &args.services;
    let storage = StorageClients::new(
        services.s3(),
        services.vendor.clone(),
        services.envelope_key()?,
    );
    let settings = VerifySettings {
        sample: args.sample,
        stale_upload_age: args.stale_upload_age,
        seed: args
            .seed
            .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0),
    };
    let report = verify_tenant(
        &catalog,
        &storage,
        &args.tenant,
        args.org.as_ref(),
        &settings,
    )
    .await?;
    print_report(&report, args.json)?;
    if !report.is_clean() {
        bail!(
            "{} problems found (above): the storage and the catalog disagree",
            report.problem_count()
        );
    }
    Ok(())
}

fn print_report(report: &VerifyReport, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&serde_json::to_value(report)?);
    }
    for org in &report.orgs {
        print_org(org);
    }
    for problem in &report.stray {
        print_problem(problem);
    }
    Ok(())
}

fn print_org(org: &OrgReport) {
    say(format!(
        "org {}: {} backups, {} objects checked, {} read back ({} bytes), {} problems",
        org.org_id,
        org.backups_checked,
        org.objects_checked,
        org.objects_read,
        org.bytes_read,
        org.problems.len(),
    ));
    for problem in &org.problems {
        print_problem(problem);
    }
}

fn print_problem(p: &Problem) {
    let backup = p
        .backup_id
        .map_or(String::new(), |b| format!(" (backup {b})"));
    say(format!(
        "  {} {}{backup}: {}",
        p.kind.as_str(),
        p.key,
        p.detail
    ));
}
