//! A migrated database of each test's own, on the local MariaDB (`scripts/stack up`).

#![allow(dead_code)]

use coffer_catalog::{Catalog, NewStorage, Sse, StorageAccess};
use coffer_core::TenantId;
use coffer_core::layout::BasePath;
use secrecy::SecretString;
use sqlx::Connection;

/// A fresh, migrated database; dropped by [`TestDb::drop`].
pub struct TestDb {
    /// The catalog over it.
    pub catalog: Catalog,
    base: String,
    name: String,
}

impl TestDb {
    /// Creates and migrates a database named `coffer_c_<random>` beside `COFFER_DATABASE_URL`'s.
    /// Migrations run twice, so every test also checks that they are idempotent.
    pub async fn new() -> TestDb {
        let base = std::env::var("COFFER_DATABASE_URL")
            .unwrap_or_else(|_| "mysql://coffer:coffer@127.0.0.1:3306/coffer".to_owned());
        let name = format!(
            "coffer_c_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut conn = sqlx::MySqlConnection::connect(&base)
            .await
            .expect("connect to MariaDB (scripts/stack up)");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{name}`")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let mut url = url::Url::parse(&base).expect("database url");
        url.set_path(&name);
        let catalog = Catalog::connect(&SecretString::from(url.to_string()))
            .await
            .expect("connect");
        catalog.migrate().await.expect("migrate");
        catalog.migrate().await.expect("migrations are idempotent");
        TestDb {
            catalog,
            base,
            name,
        }
    }

    /// Drops the database.
    pub async fn drop(self) {
        self.catalog.pool().close().await;
        let mut conn = sqlx::MySqlConnection::connect(&self.base)
            .await
            .expect("reconnect");
        let sql = format!("DROP DATABASE `{}`", self.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("drop test database");
    }
}

/// Same as [`TestDb::new`].
pub async fn fresh_catalog() -> TestDb {
    TestDb::new().await
}

/// Creates `tenant` ("Acme") writing to the vendor's bucket `acme-backups`; returns its storage
/// id.
pub async fn vendor_tenant(catalog: &Catalog, tenant: &TenantId) -> u64 {
    let storage = NewStorage {
        bucket: "acme-backups".to_owned(),
        region: "us-east-1".to_owned(),
        endpoint: None,
        base_path: BasePath::default(),
        sse: Sse::S3,
        access: StorageAccess::Vendor,
    };
    catalog
        .put_tenant(tenant, "Acme", &storage)
        .await
        .expect("put tenant")
        .storage
        .storage_id
}

/// A complete backup of `org` completed `days` days ago (an incremental of `base` when given),
/// back-dated; with the job that made it.
pub async fn backup(
    c: &Catalog,
    (tenant, org): (&TenantId, &coffer_core::OrgId),
    storage_id: u64,
    days: u32,
    base: Option<coffer_core::BackupId>,
) -> (coffer_core::BackupId, coffer_core::JobId) {
    let job = coffer_core::JobId::generate();
    let b = match base {
        Some(base) => {
            c.begin_incremental_backup(job, tenant, org, storage_id, base)
                .await
        }
        None => c.begin_backup(job, tenant, org, storage_id, "full").await,
    }
    .expect("begin backup");
    c.complete_backup(b.backup_id)
        .await
        .expect("complete backup");
    back_date(c, b.backup_id, days).await;
    (b.backup_id, job)
}

/// Moves a backup `days` days into the past: it completed then (if it did) and started an
/// hour before.
pub async fn back_date(c: &Catalog, id: coffer_core::BackupId, days: u32) {
    sqlx::query(
        "UPDATE backups SET started_at = CURRENT_TIMESTAMP(6) - INTERVAL ? DAY - INTERVAL 1 HOUR, \
         completed_at = IF(completed_at IS NULL, NULL, CURRENT_TIMESTAMP(6) - INTERVAL ? DAY) \
         WHERE backup_id = ?",
    )
    .bind(days)
    .bind(days)
    .bind(id.to_string())
    .execute(c.pool())
    .await
    .expect("back-date");
}
