//! The catalog: what Coffer knows, in MySQL (MariaDB in development).
//!
//! - tenants and where their backups go ([`tenants`]): the storage row a tenant writes to now,
//!   and the orgs it connected;
//! - backups and the objects each wrote ([`backups`]): a backup points at the storage it was
//!   written to for the rest of its life;
//! - file bodies stored once per org, content-addressed, and each backup's references to them
//!   ([`files`]);
//! - backup schedules, cron expressions in time zones, and the runs claimed from them exactly
//!   once ([`schedules`]);
//! - jobs ([`jobs`]): one row per job message, with attempts and outcome;
//! - the tasks a backup is planned into, and their leases ([`tasks`]);
//! - the record index and the links between records, and the state of a record as of a time
//!   ([`records`]);
//! - restores ([`restores`]): one row per restore job, its plan, and each record it writes with
//!   the id it got in the target org;
//! - retention policies and legal holds, and the facts the retention planner decides on
//!   ([`retention`]);
//! - erasure of records from every kept backup, and the tombstones restores honour
//!   ([`erasure`]);
//! - what is running now, for `coffer status` ([`status`]), and each org's Salesforce API usage
//!   as a worker last saw it ([`api_usage`]);
//! - retention sweeps ([`sweeps`]): stored plans, marks, the locked re-check before a backup
//!   is deleted, and the fence around deleting unreferenced file bodies.
//!
//! Every write that must be idempotent under redelivery is keyed so that a second attempt finds
//! the first one's row: a backup by its job id, an object by (backup, key), a restore by its job
//! id.
//!
//! Queries are checked at run time (`sqlx::query`), not at compile time, so building Coffer never
//! needs a database. Migrations are embedded and run by [`Catalog::migrate`].

pub mod api_usage;
pub mod backups;
mod conflicts;
pub mod erasure;
pub mod error;
pub mod files;
pub mod jobs;
pub mod pauses;
pub mod records;
pub mod restores;
pub mod retention;
pub mod schedules;
pub mod status;
pub mod sweeps;
pub mod tasks;
pub mod tenants;

use secrecy::{ExposeSecret, SecretString};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{MySql, MySqlPool, QueryBuilder, Row};
use std::str::FromStr;
use std::time::Duration;

pub use api_usage::OrgApiUsage;
pub use backups::{BackupRecord, BackupState, NewObject, ObjectKind, ObjectRecord};
pub use erasure::PartToErase;
pub use error::CatalogError;
pub use files::{BackupFile, FileObject, NewFileObject};
pub use jobs::JobState;
pub use pauses::OrgPause;
pub use records::{IndexedRecord, RecordLink, RecordVersion};
pub use restores::{
    ChainRecord, NewRestore, PlannedRecord, RecordState, RestoreAction, RestoreCount, RestoreHold,
    RestoreMode, RestoreRecord, RestoreRow, RestoreState,
};
pub use retention::{HoldScope, LegalHold};
pub use schedules::{
    Claim, CronSchedule, NewSchedule, ScheduleKind, ScheduleRecord, ScheduledRun, SchedulerLeader,
};
pub use sweeps::{Expiry, FilesFence, RetentionMark};
pub use tasks::{PlannedTask, StrandedTask, TaskCounts, TaskLease, TaskRecord, TaskSlice};
pub use tenants::{
    NewStorage, OrgRecord, OwnStorage, Sse, StorageAccess, StorageRecord, StorageTest,
    TenantRecord, secret_context,
};

/// A handle on the catalog database; cheap to clone (a connection pool).
#[derive(Clone)]
pub struct Catalog {
    pool: MySqlPool,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").finish_non_exhaustive()
    }
}

impl Catalog {
    /// Connects to the database at `url` (`mysql://user:pass@host:port/db`; never logged).
    pub async fn connect(url: &SecretString) -> Result<Self, CatalogError> {
        let options = MySqlConnectOptions::from_str(url.expose_secret()).map_err(|e| {
            CatalogError::Config(format!("invalid database url: {}", redact_url_error(&e)))
        })?;
        let pool = MySqlPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            // Below typical server and proxy idle cut-offs, so a quiet worker never reuses a
            // connection the server already closed.
            .idle_timeout(Duration::from_secs(60))
            .test_before_acquire(true)
            .connect_with(options)
            .await
            .map_err(CatalogError::from)?;
        Ok(Catalog { pool })
    }

    /// Applies the embedded migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), CatalogError> {
        sqlx::migrate!("./migrations")
            .run(&self.pool)
            .await
            .map_err(CatalogError::from)
    }

    /// The underlying pool, for tests and tools that read the catalog directly.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// The database's clock: the one every stored time (leases, pauses, `sent_at`, backup
    /// times) was stamped with, so comparisons with it agree across machines.
    pub async fn now(&self) -> Result<time::OffsetDateTime, CatalogError> {
        let row = sqlx::query("SELECT CURRENT_TIMESTAMP(6) AS now")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("now")?)
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), CatalogError> {
        let row = sqlx::query("SELECT 1 AS one").fetch_one(&self.pool).await?;
        let _: i32 = row.try_get("one")?;
        Ok(())
    }
}

/// A sqlx URL parse error may quote the URL, password included: keep only its kind.
fn redact_url_error(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Configuration(_) => {
            "malformed (expected mysql://user:password@host:port/database)"
        }
        _ => "unusable",
    }
}

/// Binds `values` as the comma-separated list of the `IN (` the query just opened, and closes
/// it.
pub(crate) fn bind_list<'t, T>(query: &mut QueryBuilder<MySql>, values: impl IntoIterator<Item = T>)
where
    T: sqlx::Encode<'t, MySql> + sqlx::Type<MySql>,
{
    let mut list = query.separated(", ");
    for value in values {
        list.push_bind(value);
    }
    query.push(")");
}
