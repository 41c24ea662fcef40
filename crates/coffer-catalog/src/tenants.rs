//! Tenants, the storages they write to, and the orgs they connected.
//!
//! A tenant points at one storage row: where *new* backups go. Changing a tenant's storage adds a
//! row and moves the pointer; backups keep the storage they were written to.

use coffer_core::layout::BasePath;
use coffer_core::{OrgId, TenantId};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;
use sqlx::mysql::MySqlRow;

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
}

/// A tenant and the storage its new backups go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    /// The tenant.
    pub tenant_id: TenantId,
    /// A name for people.
    pub display_name: String,
    /// Where new backups go.
    pub storage: StorageRecord,
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
    /// Creates the tenant, or moves an existing tenant to a new storage. Returns the tenant.
    pub async fn put_tenant(
        &self,
        tenant_id: &TenantId,
        display_name: &str,
        storage: &NewStorage,
    ) -> Result<TenantRecord, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let (sse, key, bucket_key) = match &storage.sse {
            Sse::Kms { key_id, bucket_key } => ("sse-kms", Some(key_id.as_str()), *bucket_key),
            Sse::S3 => ("sse-s3", None, false),
        };
        let inserted = sqlx::query(
            "INSERT INTO storages (tenant_id, bucket, region, endpoint, base_path, sse, kms_key_id, bucket_key) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant_id.as_str())
        .bind(&storage.bucket)
        .bind(&storage.region)
        .bind(storage.endpoint.as_deref())
        .bind(storage.base_path.as_str())
        .bind(sse)
        .bind(key)
        .bind(bucket_key)
        .execute(&mut *tx)
        .await?;
        let storage_id = inserted.last_insert_id();
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
        let storage = StorageRecord {
            storage_id,
            tenant_id: tenant_id.clone(),
            settings: storage.clone(),
        };
        Ok(TenantRecord {
            tenant_id: tenant_id.clone(),
            display_name: display_name.to_owned(),
            storage,
        })
    }

    /// The tenant, or `None` if it does not exist.
    pub async fn tenant(&self, tenant_id: &TenantId) -> Result<Option<TenantRecord>, CatalogError> {
        let row = sqlx::query("SELECT display_name, storage_id FROM tenants WHERE tenant_id = ?")
            .bind(tenant_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let storage = self.storage(row.try_get("storage_id")?).await?;
        Ok(Some(TenantRecord {
            tenant_id: tenant_id.clone(),
            display_name: row.try_get("display_name")?,
            storage,
        }))
    }

    /// A storage row by id (backups keep pointing at theirs).
    pub async fn storage(&self, storage_id: u64) -> Result<StorageRecord, CatalogError> {
        let sql = "SELECT storage_id, tenant_id, bucket, region, endpoint, base_path, sse, kms_key_id, \
                   bucket_key FROM storages WHERE storage_id = ?";
        let row = sqlx::query(sql)
            .bind(storage_id)
            .fetch_optional(&self.pool)
            .await?;
        let row = row.ok_or_else(|| {
            CatalogError::NotFound(format!("storage {storage_id} does not exist"))
        })?;
        storage_from_row(&row)
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
        },
    })
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
