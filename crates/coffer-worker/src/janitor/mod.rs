//! The retention janitor: what retention no longer keeps, planned per org.
//!
//! The flow (as `../shared/design.md` draws it): **plan** which backups fall out of each org's
//! policy, with the reason for every decision ([`plan_org`], built on the pure
//! [`coffer_core::retention::plan`]); then mark, wait a grace period, delete the objects and the
//! file bodies no kept backup references, and remove the catalog rows, each step resumable.
//! This module has the plan; the steps that delete come next.
//!
//! Times are the database's clock, so janitors on machines with skewed clocks agree.

use coffer_catalog::Catalog;
use coffer_core::retention::{Decision, Policy, plan};
use coffer_core::{OrgId, TenantId};
use serde::Serialize;

use crate::error::WorkerError;

/// The retention plan of one org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgPlan {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The org.
    pub org_id: OrgId,
    /// The policy that applies (the org's, else the tenant's); `None`: nothing is deleted.
    pub policy: Option<Policy>,
    /// One decision per backup, newest first.
    pub decisions: Vec<Decision>,
}

impl OrgPlan {
    /// How many backups it deletes.
    pub fn deletions(&self) -> usize {
        self.decisions.iter().filter(|d| d.deletes()).count()
    }
}

/// Plans retention for one org, now (by the catalog's clock).
pub async fn plan_org(
    catalog: &Catalog,
    tenant_id: &TenantId,
    org_id: &OrgId,
) -> Result<OrgPlan, WorkerError> {
    let policy = catalog.retention_policy(tenant_id, org_id).await?;
    let facts = catalog.retention_facts(tenant_id, org_id).await?;
    let now = catalog.now().await?;
    let decisions = plan(&policy.unwrap_or_default(), &facts, now);
    Ok(OrgPlan {
        tenant_id: tenant_id.clone(),
        org_id: org_id.clone(),
        policy,
        decisions,
    })
}

/// Plans retention for every org of the tenant.
pub async fn plan_tenant(
    catalog: &Catalog,
    tenant_id: &TenantId,
) -> Result<Vec<OrgPlan>, WorkerError> {
    let mut plans = Vec::new();
    for org in catalog.orgs_of(tenant_id).await? {
        plans.push(plan_org(catalog, tenant_id, &org.org_id).await?);
    }
    Ok(plans)
}
