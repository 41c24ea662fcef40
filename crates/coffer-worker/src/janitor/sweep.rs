//! One retention sweep: of an org, a tenant, or every tenant, with its report.
//!
//! [`sweep_org`] reads like the design's flow: plan, mark, expire what is due, delete
//! unreferenced file bodies, abort stale uploads. What fails in one step is reported and the
//! other steps still run; what a step left undone the next sweep finishes.

use std::time::Duration;

use coffer_catalog::{Catalog, Expiry};
use coffer_core::sweep::steps;
use coffer_core::{BackupId, OrgId, TenantId};
use serde::Serialize;

use super::expire::{ExpiredBackup, expire_backup};
use super::files::{FilesOutcome, sweep_files};
use super::uploads::abort_stale_uploads;
use super::{OrgPlan, plan_org};
use crate::error::WorkerError;
use crate::storage::StorageClients;

/// How a sweep deletes.
#[derive(Debug, Clone)]
pub struct SweepSettings {
    /// Between marking a backup and deleting it; a hold placed or a policy changed in between
    /// saves it.
    pub grace: Duration,
    /// Multipart uploads open longer than this are aborted.
    pub stale_upload_age: Duration,
    /// DeleteObjects requests in flight per backup.
    pub delete_in_flight: usize,
    /// How long the fence around deleting an org's file bodies lasts without renewal.
    pub files_lease: Duration,
    /// Plan and store the plan only; delete nothing.
    pub dry_run: bool,
}

impl Default for SweepSettings {
    fn default() -> Self {
        SweepSettings {
            grace: Duration::from_secs(24 * 3600),
            stale_upload_age: Duration::from_secs(24 * 3600),
            delete_in_flight: 8,
            files_lease: Duration::from_secs(600),
            dry_run: false,
        }
    }
}

/// What a sweep needs.
#[derive(Debug)]
pub struct Janitor<'a> {
    /// The catalog.
    pub catalog: &'a Catalog,
    /// S3 clients per storage.
    pub storage: &'a StorageClients,
    /// How it deletes.
    pub settings: &'a SweepSettings,
    /// Who sweeps (host:pid), for the files fence.
    pub name: &'a str,
}

/// What one sweep of one org did.
#[derive(Debug, Clone, Serialize)]
pub struct OrgSweep {
    /// The stored plan's id.
    pub sweep_id: u64,
    /// The plan.
    pub plan: OrgPlan,
    /// Backups marked by this sweep.
    pub marked: Vec<BackupId>,
    /// Marks lifted: the plan keeps these now.
    pub unmarked: Vec<BackupId>,
    /// Due backups the locked re-check kept, and why.
    pub refused: Vec<(BackupId, String)>,
    /// Backups deleted.
    pub expired: Vec<ExpiredBackup>,
    /// Unreferenced file bodies.
    pub files: Option<FilesOutcome>,
    /// Multipart uploads aborted.
    pub uploads_aborted: u64,
    /// What failed; the next sweep tries again.
    pub failures: Vec<String>,
}

/// A tenant whose sweep failed as a whole.
#[derive(Debug, Clone, Serialize)]
pub struct TenantFailure {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Why.
    pub error: String,
}

/// What a sweep of several orgs did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    /// One entry per org swept.
    pub orgs: Vec<OrgSweep>,
    /// Tenants (or orgs) that could not be swept.
    pub failures: Vec<TenantFailure>,
}

impl SweepReport {
    /// Whether anything failed (in an org's steps or for a whole tenant).
    pub fn has_failures(&self) -> bool {
        !self.failures.is_empty() || self.orgs.iter().any(|o| !o.failures.is_empty())
    }
}

/// Sweeps every tenant; one tenant's failure is reported and the others still run.
pub async fn sweep_all(janitor: &Janitor<'_>) -> Result<SweepReport, WorkerError> {
    let mut report = SweepReport::default();
    for tenant in janitor.catalog.tenant_ids().await? {
        sweep_tenant_into(janitor, &tenant, &mut report).await;
    }
    Ok(report)
}

/// Sweeps every org of one tenant.
pub async fn sweep_tenant(
    janitor: &Janitor<'_>,
    tenant_id: &TenantId,
) -> Result<SweepReport, WorkerError> {
    let mut report = SweepReport::default();
    sweep_tenant_into(janitor, tenant_id, &mut report).await;
    Ok(report)
}

async fn sweep_tenant_into(janitor: &Janitor<'_>, tenant_id: &TenantId, report: &mut SweepReport) {
    let orgs = match janitor.catalog.orgs_of(tenant_id).await {
        Ok(orgs) => orgs,
        Err(e) => return report.failures.push(failure(tenant_id, None, &e.into())),
    };
    for org in orgs {
        match Box::pin(sweep_org(janitor, tenant_id, &org.org_id)).await {
            Ok(swept) => report.orgs.push(swept),
            Err(e) => report
                .failures
                .push(failure(tenant_id, Some(&org.org_id), &e)),
        }
    }
}

fn failure(tenant_id: &TenantId, org: Option<&OrgId>, e: &WorkerError) -> TenantFailure {
    let error = match org {
        Some(org) => format!("org {org}: {e}"),
        None => e.to_string(),
    };
    tracing::error!(tenant = %tenant_id, %error, "retention sweep failed");
    TenantFailure {
        tenant_id: tenant_id.clone(),
        error,
    }
}

/// Sweeps one org: plan, mark, expire what is due, then file bodies and stale uploads.
pub async fn sweep_org(
    janitor: &Janitor<'_>,
    tenant_id: &TenantId,
    org_id: &OrgId,
) -> Result<OrgSweep, WorkerError> {
    let catalog = janitor.catalog;
    let plan = plan_org(catalog, tenant_id, org_id).await?;
    let plan_json = serde_json::to_string(&plan).expect("a plan serialises");
    let dry_run = janitor.settings.dry_run;
    let sweep_id = catalog
        .record_sweep(tenant_id, org_id, dry_run, &plan_json)
        .await?;
    let mut swept = OrgSweep {
        sweep_id,
        plan,
        marked: Vec::new(),
        unmarked: Vec::new(),
        refused: Vec::new(),
        expired: Vec::new(),
        files: None,
        uploads_aborted: 0,
        failures: Vec::new(),
    };
    if dry_run {
        return Ok(swept);
    }
    let due = Box::pin(mark(janitor, &mut swept)).await?;
    for backup_id in due {
        match Box::pin(expire_backup(janitor, backup_id)).await {
            Ok(expired) => swept.expired.push(expired),
            Err(e) => swept.failures.push(format!("backup {backup_id}: {e}")),
        }
    }
    match Box::pin(sweep_files(janitor, tenant_id, org_id)).await {
        Ok(files) => swept.files = Some(files),
        Err(e) => swept.failures.push(format!("file bodies: {e}")),
    }
    match Box::pin(abort_stale_uploads(janitor, tenant_id, org_id)).await {
        Ok(n) => swept.uploads_aborted = n,
        Err(e) => swept.failures.push(format!("stale uploads: {e}")),
    }
    tracing::info!(
        tenant = %tenant_id, org = %org_id, sweep_id,
        marked = swept.marked.len(), expired = swept.expired.len(),
        failures = swept.failures.len(), "retention sweep done"
    );
    crate::metrics::swept(&swept);
    Ok(swept)
}

/// Marks, unmarks and re-checks; returns the backups to delete now (started deletions first,
/// then the newly due, newest first so an incremental goes before its base).
async fn mark(janitor: &Janitor<'_>, swept: &mut OrgSweep) -> Result<Vec<BackupId>, WorkerError> {
    let catalog = janitor.catalog;
    let (tenant_id, org_id) = (&swept.plan.tenant_id, &swept.plan.org_id);
    let marks = catalog.open_marks(tenant_id, org_id).await?;
    let now = catalog.now().await?;
    let grace = time::Duration::try_from(janitor.settings.grace).unwrap_or(time::Duration::MAX);
    let steps = steps(&swept.plan.decisions, &marks, now, grace);
    for (backup_id, reason) in &steps.mark {
        let secs = i64::try_from(janitor.settings.grace.as_secs()).unwrap_or(i64::MAX);
        catalog
            .mark_backup(*backup_id, swept.sweep_id, reason, secs)
            .await?;
        tracing::info!(%backup_id, ?reason, "backup marked for deletion");
        swept.marked.push(*backup_id);
    }
    for backup_id in &steps.unmark {
        if catalog.unmark_backup(*backup_id).await? {
            tracing::info!(%backup_id, "mark lifted: the plan keeps the backup now");
            swept.unmarked.push(*backup_id);
        }
    }
    let mut due = steps.resume;
    for backup_id in steps.expire {
        match catalog.begin_expiry(backup_id).await? {
            Expiry::Started => due.push(backup_id),
            Expiry::Refused(why) => {
                tracing::warn!(%backup_id, %why, "deletion refused at the last check; mark lifted");
                catalog.unmark_backup(backup_id).await?;
                swept.refused.push((backup_id, why));
            }
        }
    }
    Ok(due)
}
