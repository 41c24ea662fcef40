//! Org pauses: an org whose Salesforce API allowance is used up is paused until a time, and its
//! work is deferred until then without a call to Salesforce. Times are the database's clock
//! (`CURRENT_TIMESTAMP`), so workers with skewed clocks agree on when a pause ends.

use std::time::Duration;

use coffer_core::{OrgId, TenantId};
use sqlx::Row;
use time::OffsetDateTime;

use crate::{Catalog, CatalogError};

/// A pause in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgPause {
    /// When work on the org may start again (UTC).
    pub until: OffsetDateTime,
    /// Why it was paused (the Salesforce error).
    pub reason: String,
}

impl Catalog {
    /// Pauses the org for `pause_for` from now, or keeps a pause that already lasts longer;
    /// returns the pause in force.
    pub async fn pause_org(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        pause_for: Duration,
        reason: &str,
    ) -> Result<OrgPause, CatalogError> {
        let micros = i64::try_from(pause_for.as_micros()).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO org_pauses (tenant_id, org_id, paused_until, reason) \
             VALUES (?, ?, CURRENT_TIMESTAMP(6) + INTERVAL ? MICROSECOND, ?) \
             ON DUPLICATE KEY UPDATE \
               reason = IF(VALUES(paused_until) > paused_until, VALUES(reason), reason), \
               paused_at = IF(VALUES(paused_until) > paused_until, CURRENT_TIMESTAMP(6), paused_at), \
               paused_until = GREATEST(paused_until, VALUES(paused_until))",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .bind(micros)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        self.org_pause(tenant_id, org_id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("the pause of org {org_id} vanished")))
    }

    /// The org's pause, if one is in force now.
    pub async fn org_pause(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
    ) -> Result<Option<OrgPause>, CatalogError> {
        let row = sqlx::query(
            "SELECT paused_until, reason FROM org_pauses \
             WHERE tenant_id = ? AND org_id = ? AND paused_until > CURRENT_TIMESTAMP(6)",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(OrgPause {
                until: row.try_get::<OffsetDateTime, _>("paused_until")?,
                reason: row.try_get("reason")?,
            })
        })
        .transpose()
    }

    /// Ends the org's pause now (an operator who raised the allocation); says whether one was
    /// in force.
    pub async fn resume_org(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "DELETE FROM org_pauses WHERE tenant_id = ? AND org_id = ? \
             AND paused_until > CURRENT_TIMESTAMP(6)",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
