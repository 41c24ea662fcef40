//! The retention janitor: deletes what retention no longer keeps, and keeps the bucket clean.
//!
//! One sweep of one org ([`sweep::sweep_org`]) follows the flow in the design:
//!
//! 1. **plan** which backups fall out of the org's policy, with the reason for every decision
//!    ([`plan_org`], on the pure [`coffer_core::retention::plan`]), and store the plan;
//! 2. **mark** what it deletes, due after the grace period; lift marks the plan no longer
//!    agrees with ([`coffer_core::sweep::steps`]);
//! 3. for each due backup, re-check it under a lock and make it `expiring`, then **delete its
//!    objects** (DeleteObjects, 1,000 keys a request, per-key failures kept) and **its rows**
//!    ([`expire`]);
//! 4. delete the **file bodies no backup references** any more, with the org fenced against
//!    new backups ([`files`]);
//! 5. abort **multipart uploads** left open longer than a threshold ([`uploads`]).
//!
//! [`erase`] removes given records from every kept backup (GDPR) and keeps their tombstones,
//! which restores honour.
//!
//! Every step is idempotent: a janitor killed anywhere leaves marks and `expiring` backups that
//! the next sweep finishes. [`sweep::sweep_all`] sweeps every tenant and never stops on one
//! tenant's error. Times are the database's clock, so janitors on machines with skewed clocks
//! agree.

pub mod erase;
pub mod expire;
pub mod files;
pub mod sweep;
pub mod uploads;

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
