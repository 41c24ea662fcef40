//! Each org's Salesforce API usage as a worker last saw it (`Sforce-Limit-Info`), with any pause
//! in force: the per-org view `coffer status` shows. Metrics carry no org ids, so this is where
//! an operator finds which org is near its daily allocation.

use coffer_core::{OrgId, TenantId};
use sqlx::Row;
use time::OffsetDateTime;

use crate::{Catalog, CatalogError};

/// One org's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgApiUsage {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The org.
    pub org_id: OrgId,
    /// Calls made in the rolling 24 hours, as last reported.
    pub used: u64,
    /// The org's daily allocation.
    pub daily_max: u64,
    /// When a worker saw the report (worker clock, UTC).
    pub seen_at: OffsetDateTime,
    /// Until when the org's work is paused on its API limits, if a pause is in force.
    pub paused_until: Option<OffsetDateTime>,
}

impl OrgApiUsage {
    /// `used / daily_max` (0 when the maximum is 0).
    pub fn share(&self) -> f64 {
        match self.daily_max {
            0 => 0.0,
            // the counts are far below 2^52: the division is exact enough
            #[allow(clippy::cast_precision_loss)]
            max => self.used as f64 / max as f64,
        }
    }
}

impl Catalog {
    /// Records what a response seen at `seen_at` reported of the org's usage, unless a later
    /// report is already stored.
    pub async fn record_api_usage(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
        used: u64,
        daily_max: u64,
        seen_at: OffsetDateTime,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO org_api_usage (tenant_id, org_id, used, daily_max, seen_at) \
             VALUES (?, ?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE \
               used = IF(VALUES(seen_at) >= seen_at, VALUES(used), used), \
               daily_max = IF(VALUES(seen_at) >= seen_at, VALUES(daily_max), daily_max), \
               seen_at = GREATEST(seen_at, VALUES(seen_at))",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .bind(used)
        .bind(daily_max)
        .bind(seen_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every org with a recorded usage, the highest share first, at most `limit`.
    pub async fn api_usage(&self, limit: u32) -> Result<Vec<OrgApiUsage>, CatalogError> {
        let rows = sqlx::query(
            "SELECT u.tenant_id, u.org_id, u.used, u.daily_max, u.seen_at, \
             p.paused_until, COALESCE(p.paused_until > CURRENT_TIMESTAMP(6), 0) AS paused_now \
             FROM org_api_usage u LEFT JOIN org_pauses p \
               ON p.tenant_id = u.tenant_id AND p.org_id = u.org_id \
             ORDER BY u.used / GREATEST(u.daily_max, 1) DESC, u.tenant_id, u.org_id LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OrgApiUsage {
                    tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id")?)?,
                    org_id: OrgId::new(row.try_get::<String, _>("org_id")?)?,
                    used: row.try_get("used")?,
                    daily_max: row.try_get("daily_max")?,
                    seen_at: row.try_get("seen_at")?,
                    paused_until: match row.try_get::<i64, _>("paused_now")? {
                        0 => None,
                        _ => row.try_get("paused_until")?,
                    },
                })
            })
            .collect()
    }
}
