//! Tenants, the storages they write to, and the orgs they connected.
//!
//! A tenant has a default storage (the vendor's bucket) and may have its own (a bucket in the
//! customer's account, reached through a role or access keys). New backups go to the own storage
//! while it is enabled, which requires its last connection test to have passed; otherwise to
//! the default. Changing a storage adds a row and moves a pointer: backups keep the storage they
//! were written to, for listing, restore and retention.

use coffer_core::layout::{BasePath, BucketName};
use coffer_core::{OrgId, TenantId};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;
use sqlx::mysql::MySqlRow;
use time::OffsetDateTime;

use crate::{Catalog, CatalogError};

/// Server-side encryption of a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// SSE-KMS with this key (id, alias or ARN).
    Kms {
        /// The key.
        key_id: String,
        /// Whether S3 Bucket Keys are on.
        bucket_key: bool,
    },
    /// SSE-S3 (S3-managed keys).
    S3,
}

/// How Coffer authenticates to a storage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StorageAccess {
    /// The vendor's own credentials (the default storage).
    #[default]
    Vendor,
    /// AssumeRole into the customer's role, with the external id derived from the tenant record.
    Role {
        /// `arn:aws:iam::<account>:role/<name>`.
        role_arn: String,
    },
    /// The customer's access keys; the secret is kept sealed (`coffer_core::sealed`).
    AccessKeys {
        /// Access key id (not secret).
        access_key_id: String,
        /// The secret access key, envelope-encrypted with context [`secret_context`].
        secret_sealed: String,
    },
}

impl StorageAccess {
    /// `vendor`, `role` or `access_keys`, as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            StorageAccess::Vendor => "vendor",
            StorageAccess::Role { .. } => "role",
            StorageAccess::AccessKeys { .. } => "access_keys",
        }
    }
}

/// The sealing context of a tenant's secret access key: a sealed secret copied to another
/// tenant or key id does not open.
pub fn secret_context(tenant: &TenantId, access_key_id: &str) -> String {
    format!("tenant:{tenant}:access_key:{access_key_id}")
}

/// The outcome of a storage's last connection test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageTest {
    /// When it ran.
    pub at: OffsetDateTime,
    /// Whether every step passed.
    pub ok: bool,
    /// The report, JSON.
    pub report: String,
}

/// A storage to create for a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStorage {
    /// Bucket name.
    pub bucket: String,
    /// Bucket region.
    pub region: String,
    /// S3-compatible endpoint; `None` for AWS.
    pub endpoint: Option<String>,
    /// Prefix under which the tenant's data lives.
    pub base_path: BasePath,
    /// Encryption of every object written.
    pub sse: Sse,
    /// How Coffer authenticates.
    pub access: StorageAccess,
}

/// A stored storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRecord {
    /// Row id; backups refer to it.
    pub storage_id: u64,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Its settings.
    pub settings: NewStorage,
    /// Its last connection test, if any.
    pub last_test: Option<StorageTest>,
}

/// A tenant's own storage and whether new backups go to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnStorage {
    /// The storage.
    pub storage: StorageRecord,
    /// Whether new backups go to it.
    pub enabled: bool,
}

/// A tenant and the storage its new backups go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    /// The tenant.
    pub tenant_id: TenantId,
    /// A name for people.
    pub display_name: String,
    /// Where new backups go: the own storage if enabled, else the default.
    pub storage: StorageRecord,
    /// The default (vendor) storage.
    pub default_storage_id: u64,
    /// The customer's own storage, if configured.
    pub own: Option<OwnStorage>,
}

/// A connected Salesforce org and how to reach it.
#[derive(Debug, Clone)]
pub struct OrgRecord {
    /// The tenant that owns the org.
    pub tenant_id: TenantId,
    /// The org.
    pub org_id: OrgId,
    /// OAuth login URL (My Domain, or the simulator).
    pub login_url: String,
    /// Connected app consumer key.
    pub client_id: String,
    /// Connected app consumer secret (never printed).
    pub client_secret: SecretString,
    /// REST API version, e.g. `62.0`.
    pub api_version: String,
}

impl Catalog {
    /// Creates the tenant, or moves an existing tenant to a new default storage. Returns the
    /// tenant.
    pub async fn put_tenant(
        &self,
        tenant_id: &TenantId,
        display_name: &str,
        storage: &NewStorage,
    ) -> Result<TenantRecord, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let storage_id = insert_storage(&mut tx, tenant_id, storage).await?;
        sqlx::query(
            "INSERT INTO tenants (tenant_id, display_name, storage_id) VALUES (?, ?, ?) \
             ON DUPLICATE KEY UPDATE display_name = VALUES(display_name), storage_id = VALUES(storage_id)",
        )
        .bind(tenant_id.as_str())
        .bind(display_name)
        .bind(storage_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.tenant(tenant_id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("tenant {tenant_id} vanished")))
    }

    /// The tenant, or `None` if it does not exist.
    pub async fn tenant(&self, tenant_id: &TenantId) -> Result<Option<TenantRecord>, CatalogError> {
        let row = sqlx::query(
            "SELECT display_name, storage_id, own_storage_id, own_storage_enabled FROM tenants \
             WHERE tenant_id = ?",
        )
        .bind(tenant_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let default_storage_id: u64 = row.try_get("storage_id")?;
        let own = match row.try_get::<Option<u64>, _>("own_storage_id")? {
            Some(id) => Some(OwnStorage {
                storage: self.storage(id).await?,
                enabled: row.try_get("own_storage_enabled")?,
            }),
            None => None,
        };
        let storage = match &own {
            Some(own) if own.enabled => own.storage.clone(),
            _ => self.storage(default_storage_id).await?,
        };
        Ok(Some(TenantRecord {
            tenant_id: tenant_id.clone(),
            display_name: row.try_get("display_name")?,
            storage,
            default_storage_id,
            own,
        }))
    }

    /// A storage row by id (backups keep pointing at theirs).
    pub async fn storage(&self, storage_id: u64) -> Result<StorageRecord, CatalogError> {
        let sql = "SELECT storage_id, tenant_id, bucket, region, endpoint, base_path, sse, kms_key_id, \
                   bucket_key, access, role_arn, access_key_id, secret_sealed, last_test_at, \
                   last_test_ok, last_test_report FROM storages WHERE storage_id = ?";
        let row = sqlx::query(sql)
            .bind(storage_id)
            .fetch_optional(&self.pool)
            .await?;
        let row = row.ok_or_else(|| {
            CatalogError::NotFound(format!("storage {storage_id} does not exist"))
        })?;
        storage_from_row(&row)
    }

    /// Configures the tenant's own storage (a new row), disabled until a connection test passes
    /// and [`Catalog::enable_own_storage`] is called. Until then new backups go to the default.
    pub async fn set_own_storage(
        &self,
        tenant_id: &TenantId,
        storage: &NewStorage,
    ) -> Result<StorageRecord, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let storage_id = insert_storage(&mut tx, tenant_id, storage).await?;
        let updated = sqlx::query(
            "UPDATE tenants SET own_storage_id = ?, own_storage_enabled = FALSE WHERE tenant_id = ?",
        )
        .bind(storage_id)
        .bind(tenant_id.as_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(no_tenant(tenant_id));
        }
        tx.commit().await?;
        self.storage(storage_id).await
    }

    /// Records the outcome of a connection test of a storage.
    pub async fn record_storage_test(
        &self,
        storage_id: u64,
        ok: bool,
        report: &str,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE storages SET last_test_at = CURRENT_TIMESTAMP(6), last_test_ok = ?, \
             last_test_report = ? WHERE storage_id = ?",
        )
        .bind(ok)
        .bind(report)
        .bind(storage_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sends new backups to the tenant's own storage. Refused unless its last connection test
    /// passed.
    pub async fn enable_own_storage(
        &self,
        tenant_id: &TenantId,
    ) -> Result<StorageRecord, CatalogError> {
        let tenant = self
            .tenant(tenant_id)
            .await?
            .ok_or_else(|| no_tenant(tenant_id))?;
        let own = tenant.own.ok_or_else(|| {
            CatalogError::Refused(format!(
                "tenant {tenant_id} has no own storage: configure one with `coffer storage set`"
            ))
        })?;
        match &own.storage.last_test {
            Some(test) if test.ok => {}
            Some(_) => {
                return Err(CatalogError::Refused(format!(
                    "the last connection test of tenant {tenant_id}'s storage failed: fix what it reported, then run `coffer storage test` until it passes"
                )));
            }
            None => {
                return Err(CatalogError::Refused(format!(
                    "tenant {tenant_id}'s storage was never tested: run `coffer storage test` first"
                )));
            }
        }
        // Only the tested row is enabled, even if `set` ran again in between.
        sqlx::query(
            "UPDATE tenants SET own_storage_enabled = TRUE WHERE tenant_id = ? AND own_storage_id = ?",
        )
        .bind(tenant_id.as_str())
        .bind(own.storage.storage_id)
        .execute(&self.pool)
        .await?;
        Ok(own.storage)
    }

    /// Sends new backups to the default storage again, keeping the own storage configured.
    pub async fn disable_own_storage(&self, tenant_id: &TenantId) -> Result<(), CatalogError> {
        self.update_own(
            tenant_id,
            "UPDATE tenants SET own_storage_enabled = FALSE WHERE tenant_id = ?",
        )
        .await
    }

    /// Forgets the tenant's own storage: new backups go to the default storage. Backups already
    /// written there keep pointing at it.
    pub async fn reset_storage(&self, tenant_id: &TenantId) -> Result<(), CatalogError> {
        self.update_own(
            tenant_id,
            "UPDATE tenants SET own_storage_id = NULL, own_storage_enabled = FALSE WHERE tenant_id = ?",
        )
        .await
    }

    async fn update_own(
        &self,
        tenant_id: &TenantId,
        sql: &'static str,
    ) -> Result<(), CatalogError> {
        let found = sqlx::query("SELECT 1 FROM tenants WHERE tenant_id = ?")
            .bind(tenant_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        if found.is_none() {
            return Err(no_tenant(tenant_id));
        }
        sqlx::query(sql)
            .bind(tenant_id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Adds or updates a connected org.
    pub async fn put_org(&self, org: &OrgRecord) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO orgs (tenant_id, org_id, login_url, client_id, client_secret, api_version) \
             VALUES (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE login_url = VALUES(login_url), \
             client_id = VALUES(client_id), client_secret = VALUES(client_secret), api_version = VALUES(api_version)",
        )
        .bind(org.tenant_id.as_str())
        .bind(org.org_id.as_str())
        .bind(&org.login_url)
        .bind(&org.client_id)
        .bind(org.client_secret.expose_secret())
        .bind(&org.api_version)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One org of a tenant, or `None`.
    pub async fn org(
        &self,
        tenant_id: &TenantId,
        org_id: &OrgId,
    ) -> Result<Option<OrgRecord>, CatalogError> {
        let row = sqlx::query(
            "SELECT tenant_id, org_id, login_url, client_id, client_secret, api_version FROM orgs \
             WHERE tenant_id = ? AND org_id = ?",
        )
        .bind(tenant_id.as_str())
        .bind(org_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(org_from_row).transpose()
    }

    /// Every org of a tenant, by org id.
    pub async fn orgs_of(&self, tenant_id: &TenantId) -> Result<Vec<OrgRecord>, CatalogError> {
        let rows = sqlx::query(
            "SELECT tenant_id, org_id, login_url, client_id, client_secret, api_version FROM orgs \
             WHERE tenant_id = ? ORDER BY org_id",
        )
        .bind(tenant_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(org_from_row).collect()
    }
}

fn storage_from_row(row: &MySqlRow) -> Result<StorageRecord, CatalogError> {
    let sse: String = row.try_get("sse")?;
    let sse = match sse.as_str() {
        "sse-kms" => Sse::Kms {
            key_id: row
                .try_get::<Option<String>, _>("kms_key_id")?
                .unwrap_or_default(),
            bucket_key: row.try_get("bucket_key")?,
        },
        _ => Sse::S3,
    };
    Ok(StorageRecord {
        storage_id: row.try_get("storage_id")?,
        tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id")?)?,
        settings: NewStorage {
            bucket: row.try_get("bucket")?,
            region: row.try_get("region")?,
            endpoint: row.try_get("endpoint")?,
            base_path: BasePath::new(row.try_get::<String, _>("base_path")?)?,
            sse,
            access: access_from_row(row)?,
        },
        last_test: test_from_row(row)?,
    })
}

fn access_from_row(row: &MySqlRow) -> Result<StorageAccess, CatalogError> {
    let access: String = row.try_get("access")?;
    let text = |column: &str| -> Result<String, CatalogError> {
        row.try_get::<Option<String>, _>(column)?.ok_or_else(|| {
            CatalogError::Corrupt(format!("storage with {access} access has no {column}"))
        })
    };
    Ok(match access.as_str() {
        "role" => StorageAccess::Role {
            role_arn: text("role_arn")?,
        },
        "access_keys" => StorageAccess::AccessKeys {
            access_key_id: text("access_key_id")?,
            secret_sealed: text("secret_sealed")?,
        },
        _ => StorageAccess::Vendor,
    })
}

fn test_from_row(row: &MySqlRow) -> Result<Option<StorageTest>, CatalogError> {
    let Some(at) = row.try_get::<Option<OffsetDateTime>, _>("last_test_at")? else {
        return Ok(None);
    };
    Ok(Some(StorageTest {
        at,
        ok: row
            .try_get::<Option<bool>, _>("last_test_ok")?
            .unwrap_or(false),
        report: row
            .try_get::<Option<String>, _>("last_test_report")?
            .unwrap_or_default(),
    }))
}

async fn insert_storage(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    tenant_id: &TenantId,
    storage: &NewStorage,
) -> Result<u64, CatalogError> {
    // The CLI parses bucket names already; a caller building `NewStorage` by hand gets the
    // same rule here, so no row names a bucket S3 would read as a path.
    BucketName::new(storage.bucket.as_str()).map_err(|e| CatalogError::Refused(e.to_string()))?;
    let (sse, key, bucket_key) = match &storage.sse {
        Sse::Kms { key_id, bucket_key } => ("sse-kms", Some(key_id.as_str()), *bucket_key),
        Sse::S3 => ("sse-s3", None, false),
    };
    let (role_arn, key_id, sealed) = match &storage.access {
        StorageAccess::Vendor => (None, None, None),
        StorageAccess::Role { role_arn } => (Some(role_arn.as_str()), None, None),
        StorageAccess::AccessKeys {
            access_key_id,
            secret_sealed,
        } => (
            None,
            Some(access_key_id.as_str()),
            Some(secret_sealed.as_str()),
        ),
    };
    let inserted = sqlx::query(
        "INSERT INTO storages (tenant_id, bucket, region, endpoint, base_path, sse, kms_key_id, \
         bucket_key, access, role_arn, access_key_id, secret_sealed) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(tenant_id.as_str())
    .bind(&storage.bucket)
    .bind(&storage.region)
    .bind(storage.endpoint.as_deref())
    .bind(storage.base_path.as_str())
    .bind(sse)
    .bind(key)
    .bind(bucket_key)
    .bind(storage.access.kind())
    .bind(role_arn)
    .bind(key_id)
    .bind(sealed)
    .execute(&mut **tx)
    .await?;
    Ok(inserted.last_insert_id())
}

fn no_tenant(tenant_id: &TenantId) -> CatalogError {
    CatalogError::NotFound(format!(
        "tenant {tenant_id} does not exist: create it with `coffer tenant create`"
    ))
}

fn org_from_row(row: &MySqlRow) -> Result<OrgRecord, CatalogError> {
    Ok(OrgRecord {
        tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id")?)?,
        org_id: OrgId::new(row.try_get::<String, _>("org_id")?)?,
        login_url: row.try_get("login_url")?,
        client_id: row.try_get("client_id")?,
        client_secret: SecretString::from(row.try_get::<String, _>("client_secret")?),
        api_version: row.try_get("api_version")?,
    })
}
