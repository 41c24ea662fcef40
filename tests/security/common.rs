//! A customer who brings their own bucket: a role in "their" account (the emulator's IAM) that
//! trusts the vendor's IAM user with the org's external id, the tenant's storage in the catalog
//! pointing at it, and a worker running as the vendor.

use std::time::{Duration, Instant};

use anyhow::bail;
use coffer_catalog::{
    BackupRecord, BackupState, JobState, NewStorage, Sse, StorageAccess, StorageRecord,
};
use coffer_core::layout::{BasePath, tenant_prefix};
use coffer_core::policy::{external_id, trust_policy};
use coffer_core::{OrgId, TenantId};
use coffer_e2e::{RunningWorker, request_backup, small_part_settings, start_worker};
use coffer_sfsim::SimHandle;
use coffer_storage::provision;
use coffer_testkit::iam::{Vendor, create_role, create_vendor, grant_vendor_default_bucket};
use coffer_testkit::{TestEnv, start_sim};
use coffer_worker::WorkerSettings;
use coffer_worker::storage::StorageClients;
use serde_json::Value;

/// The vendor name every external id starts with (`coffer-org-{org}`).
pub const VENDOR: &str = "coffer";

/// The base path of the customer's storage: the tenant's prefix is `byo/{tenant}`.
pub const BASE: &str = "byo";

/// One customer on a role in their own bucket, with a worker serving it.
pub struct Customer {
    pub env: TestEnv,
    pub sim: SimHandle,
    pub vendor: Vendor,
    /// The customer's bucket (the test's own bucket is the vendor's default storage).
    pub bucket: String,
    /// The role's name (to change its policy).
    pub role_name: String,
    pub tenant: TenantId,
    pub org: OrgId,
    /// The tenant's own storage row (the role).
    pub storage: StorageRecord,
    worker: Option<RunningWorker>,
}

impl Customer {
    /// Tenant `acme` with its org on the simulator, its default storage in the test's bucket
    /// (the vendor's), and its own storage in a bucket of the customer's under `byo/acme`,
    /// reached through a role whose permission policy is `permissions(bucket, prefix)`. SSE-S3:
    /// encryption is not the point here (see `TestEnv::create_tenant_with`).
    pub async fn new(permissions: impl Fn(&str, &str) -> Value) -> anyhow::Result<Customer> {
        let env = TestEnv::new().await?;
        let sim = start_sim(6, 2, 50).await?;
        env.create_tenant_with("acme", "", Sse::S3).await?;
        env.connect_org("acme", &sim).await?;
        let tenant = TenantId::new("acme")?;
        let org = sim.org_id().clone();
        let vendor = create_vendor(&env).await?;
        grant_vendor_default_bucket(&env).await?;
        let bucket = format!("customer-{}", env.id);
        provision::ensure_bucket(&env.s3_client, &bucket, &env.stack.region).await?;
        let prefix = tenant_prefix(&BasePath::new(BASE)?, &tenant);
        let role_name = format!("coffer-acme-{}", env.id);
        let role_arn = create_role(
            &env,
            &role_name,
            &trust_policy(&vendor.arn, &[external_id(VENDOR, &org)]),
            &permissions(&bucket, &prefix),
        )
        .await?;
        let own = env
            .catalog
            .set_own_storage(
                &tenant,
                &NewStorage {
                    bucket: bucket.clone(),
                    region: env.stack.region.clone(),
                    endpoint: None,
                    base_path: BasePath::new(BASE)?,
                    sse: Sse::S3,
                    access: StorageAccess::Role { role_arn },
                },
            )
            .await?;
        env.catalog
            .record_storage_test(own.storage_id, true, "{}")
            .await?;
        let storage = env.catalog.enable_own_storage(&tenant).await?;
        let worker = start_worker(
            &env,
            WorkerSettings {
                s3: vendor.settings.clone(),
                ..small_part_settings(&env)
            },
        )
        .await?;
        Ok(Customer {
            env,
            sim,
            vendor,
            bucket,
            role_name,

            tenant,
            org,
            storage,
            worker: Some(worker),
        })
    }

    /// The tenant's prefix, `byo/acme`.
    pub fn prefix(&self) -> String {
        tenant_prefix(&self.storage.settings.base_path, &self.tenant)
    }

    /// Fresh S3 clients as the vendor (each AssumeRole anew).
    pub fn clients(&self) -> StorageClients {
        StorageClients::new(self.vendor.settings.clone(), VENDOR.to_owned(), None)
    }

    /// A full backup through the queue and the worker: the backup, or why its job failed.
    pub async fn backup(&self) -> anyhow::Result<Result<BackupRecord, String>> {
        let broker = self.env.broker().await?;
        let job = request_backup(&broker, self.tenant.as_str(), self.org.as_str()).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let backup = self.env.catalog.backup_of_job(job).await?;
            if let Some(b) = &backup
                && b.state == BackupState::Complete
            {
                return Ok(Ok(b.clone()));
            }
            if let Some(j) = self.env.catalog.job(job).await?
                && j.state == JobState::Failed
            {
                return Ok(Err(j.last_error.unwrap_or_default()));
            }
            if Instant::now() > deadline {
                bail!("backup of job {job} neither complete nor failed after 120 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the worker, the simulator, and drops the test's database and queues.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        if let Some(worker) = self.worker.take() {
            worker.stop().await;
        }
        self.sim.shutdown().await;
        self.env.cleanup().await
    }
}
