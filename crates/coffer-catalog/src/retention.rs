//! Retention policies and legal holds, and the facts about an org's backups that
//! [`coffer_core::retention::plan`] decides on.
//!
//! A policy is stored per tenant (the default for its orgs) and per org (which wins). A hold
//! is placed on a tenant, an org or one backup, and stops all deletion under it until it is
//! released; released holds stay as a record of who was protected when.

use coffer_core::retention::{BackupFacts, BackupStage, Policy};
use coffer_core::{BackupId, OrgId, TenantId};
use sqlx::Row;
use time::OffsetDateTime;

use crate::{Catalog, CatalogError};

/// What a hold covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldScope {
    /// Every backup of the tenant.
    Tenant,
    /// Every backup of one org.
    Org(OrgId),
    /// One backup.
    Backup(BackupId),
}

/// A legal hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHold {
    /// Its id (to release it).
    pub hold_id: u64,
    /// The tenant.
    pub tenant_id: TenantId,
    /// What it covers.
    pub scope: HoldScope,
    /// Why (a case number, a request).
    pub reason: String,
    /// When it was placed.
    pub placed_at: OffsetDateTime,
    /// When it was released; `None` while in force.
    pub released_at: Option<OffsetDateTime>,
}

impl Catalog {
    /// Sets the retention policy of the tenant (`org` none) or of one org.
    pub async fn put_retention_policy(
        &self,
        tenant_id: &TenantId,
        org_id: Option<&OrgId>,
        policy: &Policy,
    ) -> Result<(), CatalogError> {
        let json = serde_json::to_string(policy)
            .map_err(|e| CatalogError::Corrupt(format!("retention policy: {e}")))?;
        sqlx::query(
            "INSERT INTO retention_policies (tenant_id, org_id, policy_json) VALUES (?, ?, ?) \
             ON DUPLICATE KEY UPDATE policy_json = VALUES(policy_json)",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.map_or("", OrgId::as_str))
        .bind(json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The policy that applies to `org_id`: its own, else its tenant's, else none (which
    /// deletes nothing).
    pub async fn retention_policy(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
    ) -> Result<Option<Policy>, CatalogError> {
        let row = sqlx::query(
            "SELECT policy_json FROM retention_policies WHERE tenant_id = ? AND org_id IN (?, '') \
             ORDER BY org_id DESC LIMIT 1",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let json: String = row.try_get("policy_json")?;
            serde_json::from_str(&json)
                .map_err(|e| CatalogError::Corrupt(format!("retention policy of {org_id}: {e}")))
        })
        .transpose()
    }

    /// The tenant's own policy (not an org's), if set.
    pub async fn tenant_retention_policy(
        &self,
        tenant_id: &TenantId,
    ) -> Result<Option<Policy>, CatalogError> {
        let json: Option<String> = sqlx::query_scalar(
            "SELECT policy_json FROM retention_policies WHERE tenant_id = ? AND org_id = ''",
        )
        .bind(tenant_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        json.map(|json| {
            serde_json::from_str(&json)
                .map_err(|e| CatalogError::Corrupt(format!("retention policy of {tenant_id}: {e}")))
        })
        .transpose()
    }

    /// Places a hold; returns its id.
    pub async fn place_hold(
        &self,
        tenant_id: &TenantId,
        scope: &HoldScope,
        reason: &str,
    ) -> Result<u64, CatalogError> {
        let (org, backup) = match scope {
            HoldScope::Tenant => (String::new(), String::new()),
            HoldScope::Org(org) => (org.to_string(), String::new()),
            HoldScope::Backup(backup) => (String::new(), backup.to_string()),
        };
        let done = sqlx::query(
            "INSERT INTO legal_holds (tenant_id, org_id, backup_id, reason) VALUES (?, ?, ?, ?)",
        )
        .bind(tenant_id.as_str())
        .bind(org)
        .bind(backup)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(done.last_insert_id())
    }

    /// Releases hold `hold_id` of the tenant; says whether one was in force.
    pub async fn release_hold(
        &self,
        tenant_id: &TenantId,
        hold_id: u64,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "UPDATE legal_holds SET released_at = CURRENT_TIMESTAMP(6) \
             WHERE tenant_id = ? AND hold_id = ? AND released_at IS NULL",
        )
        .bind(tenant_id.as_str())
        .bind(hold_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The tenant's holds, released ones included, oldest first.
    pub async fn holds(&self, tenant_id: &TenantId) -> Result<Vec<LegalHold>, CatalogError> {
        let rows = sqlx::query(
            "SELECT hold_id, org_id, backup_id, reason, placed_at, released_at FROM legal_holds \
             WHERE tenant_id = ? ORDER BY hold_id",
        )
        .bind(tenant_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let org: String = row.try_get("org_id")?;
                let backup: String = row.try_get("backup_id")?;
                let scope = match (org.is_empty(), backup.is_empty()) {
                    (_, false) => HoldScope::Backup(backup.parse()?),
                    (false, true) => HoldScope::Org(OrgId::new(org)?),
                    (true, true) => HoldScope::Tenant,
                };
                Ok(LegalHold {
                    hold_id: row.try_get("hold_id")?,
                    tenant_id: tenant_id.clone(),
                    scope,
                    reason: row.try_get("reason")?,
                    placed_at: row.try_get("placed_at")?,
                    released_at: row.try_get("released_at")?,
                })
            })
            .collect()
    }

    /// Every backup of the org as the retention planner sees it: stage, time, base, whether a
    /// hold in force covers it and whether a restore in progress reads it. Backups already
    /// being deleted (`expiring`) are left out: they are past deciding.
    pub async fn retention_facts(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
    ) -> Result<Vec<BackupFacts>, CatalogError> {
        let rows = sqlx::query(
            "SELECT b.backup_id, b.state, COALESCE(b.completed_at, b.started_at) AS at, \
             b.base_backup_id, EXISTS (SELECT 1 FROM legal_holds h WHERE h.tenant_id = b.tenant_id \
               AND h.released_at IS NULL AND (h.org_id = '' OR h.org_id = b.org_id) \
               AND (h.backup_id = '' OR h.backup_id = b.backup_id)) AS held, \
             EXISTS (SELECT 1 FROM restores r WHERE r.backup_id = b.backup_id \
               AND (r.state IN ('planning', 'running') OR (r.state = 'planned' AND r.mode = 'execute'))) \
               AS restoring \
             FROM backups b WHERE b.tenant_id = ? AND b.org_id = ? AND b.state <> 'expiring'",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let stage = match row.try_get::<String, _>("state")?.as_str() {
                    "complete" => BackupStage::Complete,
                    "failed" => BackupStage::Failed,
                    _ => BackupStage::Running,
                };
                let base: Option<String> = row.try_get("base_backup_id")?;
                Ok(BackupFacts {
                    backup_id: row.try_get::<String, _>("backup_id")?.parse()?,
                    stage,
                    at: row.try_get("at")?,
                    base: base.map(|b| b.parse()).transpose()?,
                    held: row.try_get::<i64, _>("held")? != 0,
                    restoring: row.try_get::<i64, _>("restoring")? != 0,
                })
            })
            .collect()
    }
}
