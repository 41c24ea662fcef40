//! [`TestEnv`]: one test's private database, queues, bucket and KMS key.

use coffer_catalog::{
    BackupRecord, BackupState, Catalog, NewStorage, OrgRecord, Sse, StorageAccess, TenantRecord,
};
use coffer_core::layout::BasePath;
use coffer_core::{JobId, TenantId};
use coffer_queue::{Broker, QueueConfig};
use coffer_sfsim::SimHandle;
use coffer_storage::provision::{self, KmsKey};
use coffer_storage::{S3Client, S3Settings};
use secrecy::SecretString;
use sqlx::Connection;
use std::time::Duration;

use crate::stack::Stack;

/// Everything one test owns. Names carry a random id, so parallel tests never collide.
pub struct TestEnv {
    /// The random id in every name.
    pub id: String,
    /// The services.
    pub stack: Stack,
    /// The test's own catalog database, migrated.
    pub catalog: Catalog,
    /// Its URL (with credentials: tests only).
    pub database_url: SecretString,
    /// Queue settings with the test's own prefix and fast retries.
    pub queue: QueueConfig,
    /// S3/KMS settings (emulator admin identity).
    pub s3: S3Settings,
    /// An S3 client for independent reads of what the code under test wrote.
    pub s3_client: S3Client,
    /// The test's bucket.
    pub bucket: String,
    /// The test's KMS key.
    pub kms_key: KmsKey,
    db_name: String,
}

impl TestEnv {
    /// Creates the database, bucket and key; nothing is declared on the broker yet.
    pub async fn new() -> anyhow::Result<TestEnv> {
        Self::with_stack(Stack::from_env()).await
    }

    /// As [`TestEnv::new`], on the services of `stack` (a suite's private broker and database).
    pub async fn with_stack(stack: Stack) -> anyhow::Result<TestEnv> {
        crate::logs::init();
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let db_name = format!("coffer_t_{id}");
        let database_url = create_database(&stack.database_url, &db_name).await?;
        let catalog = Catalog::connect(&database_url).await?;
        catalog.migrate().await?;
        let s3 = stack.admin_s3();
        let s3_client = s3.s3_client().await;
        let bucket = format!("coffer-t-{id}");
        provision::ensure_bucket(&s3_client, &bucket, &stack.region).await?;
        let kms_key =
            provision::create_kms_key(&s3.kms_client().await, &format!("coffer test {id}")).await?;
        let queue = QueueConfig {
            prefix: format!("t-{id}"),
            retry_delays: vec![Duration::from_millis(300), Duration::from_millis(600)],
            max_attempts: 3,
            drain_timeout: Duration::from_secs(5),
            ..QueueConfig::new(SecretString::from(stack.amqp_url.clone()))
        };
        Ok(TestEnv {
            id,
            stack,
            catalog,
            database_url,
            queue,
            s3,
            s3_client,
            bucket,
            kms_key,
            db_name,
        })
    }

    /// Creates tenant `tenant` writing to the test's bucket with SSE-KMS under the test's key.
    pub async fn create_tenant(
        &self,
        tenant: &str,
        base_path: &str,
    ) -> anyhow::Result<TenantRecord> {
        let sse = Sse::Kms {
            key_id: self.kms_key.key_id.clone(),
            bucket_key: false,
        };
        self.create_tenant_with(tenant, base_path, sse).await
    }

    /// As [`TestEnv::create_tenant`], with `sse`. Tests where encryption is not the point use
    /// SSE-S3: fakecloud 0.51.0 deadlocks when a GetObject of an SSE-KMS object overlaps any
    /// S3 write (its `get_object` takes the state's read lock a second time to decrypt, and a
    /// queued writer blocks it), so tests that read SSE-KMS bodies back while others write can
    /// hang the emulator.
    pub async fn create_tenant_with(
        &self,
        tenant: &str,
        base_path: &str,
        sse: Sse,
    ) -> anyhow::Result<TenantRecord> {
        let storage = NewStorage {
            bucket: self.bucket.clone(),
            region: self.stack.region.clone(),
            endpoint: None,
            base_path: BasePath::new(base_path)?,
            sse,
            access: StorageAccess::Vendor,
        };
        Ok(self
            .catalog
            .put_tenant(
                &TenantId::new(tenant)?,
                &format!("Tenant {tenant}"),
                &storage,
            )
            .await?)
    }

    /// Turns versioning on for `bucket` (the test's own, or a customer bucket a test created).
    pub async fn enable_versioning(&self, bucket: &str) -> anyhow::Result<()> {
        use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
        let config = VersioningConfiguration::builder()
            .status(BucketVersioningStatus::Enabled)
            .build();
        self.s3_client
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(config)
            .send()
            .await?;
        Ok(())
    }

    /// Connects the simulated org to `tenant`.
    pub async fn connect_org(&self, tenant: &str, sim: &SimHandle) -> anyhow::Result<OrgRecord> {
        let org = OrgRecord {
            tenant_id: TenantId::new(tenant)?,
            org_id: sim.org_id().clone(),
            login_url: sim.base_url(),
            client_id: sim.client_id().to_owned(),
            client_secret: SecretString::from(sim.client_secret().to_owned()),
            api_version: "62.0".to_owned(),
        };
        self.catalog.put_org(&org).await?;
        Ok(org)
    }

    /// Connects to the broker and declares the test's topology.
    pub async fn broker(&self) -> anyhow::Result<Broker> {
        let broker = Broker::connect(&self.queue).await?;
        broker.declare_topology().await?;
        Ok(broker)
    }

    /// `program` (the `coffer` binary) with this test's database, broker, queue prefix and
    /// endpoint in its environment, logging JSON.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        use secrecy::ExposeSecret as _;
        let mut cmd = std::process::Command::new(program);
        cmd.env("COFFER_DATABASE_URL", self.database_url.expose_secret())
            .env("COFFER_AMQP_URL", &self.stack.amqp_url)
            .env("COFFER_S3_ENDPOINT", &self.stack.s3_endpoint)
            .env("AWS_REGION", &self.stack.region)
            .env("COFFER_QUEUE_PREFIX", &self.queue.prefix)
            .env("COFFER_LOG_FORMAT", "json")
            .env_remove("RUST_LOG");
        cmd
    }

    /// Waits until the backup of `job` is complete; fails if it fails or `timeout` passes.
    pub async fn wait_for_backup(
        &self,
        job: JobId,
        timeout: Duration,
    ) -> anyhow::Result<BackupRecord> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(b) = self.catalog.backup_of_job(job).await? {
                match b.state {
                    BackupState::Complete => return Ok(b),
                    BackupState::Failed => {
                        let reason = self.catalog.job(job).await?.and_then(|j| j.last_error);
                        anyhow::bail!("backup {} failed: {reason:?}", b.backup_id)
                    }
                    BackupState::Expiring => {
                        anyhow::bail!("backup {} is being deleted by retention", b.backup_id)
                    }
                    BackupState::Running => {}
                }
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!("backup of job {job} not complete after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Drops the database and the test's queues and exchanges. The bucket stays, for a look
    /// after a failure (the emulator's memory is freed when it stops).
    pub async fn cleanup(self) -> anyhow::Result<()> {
        if let Ok(broker) = Broker::connect(&self.queue).await {
            broker.delete_topology().await?;
        }
        self.catalog.pool().close().await;
        drop_database(&self.stack.database_url, &self.db_name).await
    }
}

/// Creates `db` beside the database of `base_url`; returns the new database's URL.
async fn create_database(base_url: &str, db: &str) -> anyhow::Result<SecretString> {
    let mut conn = sqlx::MySqlConnection::connect(base_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE IF NOT EXISTS `{db}`"
    )))
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    let mut url = url::Url::parse(base_url)?;
    url.set_path(db);
    Ok(SecretString::from(url.to_string()))
}

async fn drop_database(base_url: &str, db: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::MySqlConnection::connect(base_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS `{db}`"
    )))
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    Ok(())
}
