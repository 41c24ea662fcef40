//! `coffer demo`: one real backup and restore, end to end, on the local stack.
//!
//! 1. bring the stack up if a service does not answer (`scripts/stack up`);
//! 2. create tenant `demo` with bucket `coffer-demo` and a new KMS key (SSE-KMS);
//! 3. start a seeded simulated org and connect it;
//! 4. start a worker, publish a BackupRequested on the queue, wait for the backup to complete;
//! 5. delete five accounts with everything their delete takes and purge them from the org's
//!    Recycle Bin, publish a RestoreRequested for them with two levels of children, wait for
//!    the restore, and count the org's records again;
//! 6. print what was written and restored and how to look at it (or one JSON object with
//!    `--json`).

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use coffer_catalog::{
    BackupRecord, BackupState, Catalog, NewStorage, ObjectRecord, OrgRecord, RecordState, Sse,
    StorageAccess,
};
use coffer_core::layout::BasePath;
use coffer_core::{JobId, OrgId, TenantId};
use coffer_proto::v1::job_envelope::Job;
use coffer_sfsim::{OrgSeed, SimConfig, SimHandle};
use coffer_storage::provision;
use coffer_worker::{Worker, WorkerSettings};
use secrecy::SecretString;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::enqueue::publish_backup;
use super::{print_json, say};
use crate::args::Services;
use crate::connect;

const TENANT: &str = "demo";
const BUCKET: &str = "coffer-demo";
const DEMO_ORG: &str = "00D5g0000004DemAAA";

/// Demo options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    services: Services,
    /// Accounts in the simulated org (each with `--contacts-per-account` Contacts).
    #[arg(long, default_value_t = 500)]
    accounts: usize,
    /// Contacts per Account.
    #[arg(long, default_value_t = 4)]
    contacts_per_account: usize,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
    /// Do not try to start the local stack.
    #[arg(long)]
    no_stack: bool,
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !args.no_stack {
        ensure_stack(&args.services)?;
    }
    let catalog = connect::catalog(&args.services).await?;
    let kms_key_id = create_tenant(&catalog, &args.services).await?;
    let sim = start_sim(&args).await?;
    connect_org(&catalog, &sim).await?;
    let worker = DemoWorker::start(&catalog, &args.services).await?;
    let started = Instant::now();
    let backup = backup_through_the_queue(&catalog, &worker).await;
    let duration = started.elapsed();
    let restored = match &backup {
        Ok(backup) => restore_through_the_queue(&catalog, &worker, &sim, backup).await,
        Err(_) => Err(anyhow::anyhow!("no backup to restore from")),
    };
    worker.stop().await?;
    sim.shutdown().await;
    let (backup, restored) = (backup?, restored?);
    let objects = catalog.backup_objects(backup.backup_id).await?;
    let report = Report {
        backup: &backup,
        objects: &objects,
        duration,
        kms_key_id: &kms_key_id,
        services: &args.services,
        restored: &restored,
    };
    if args.json {
        print_json(&report.json())
    } else {
        report.print()
    }
}

/// Starts the stack unless every service already answers.
fn ensure_stack(services: &Services) -> anyhow::Result<()> {
    let ports = [
        ("rabbitmq", 5672u16),
        ("mariadb", 3306),
        ("fakecloud", 4566),
    ];
    let down: Vec<&str> = ports
        .iter()
        .filter(|(_, p)| !answers(*p))
        .map(|(n, _)| *n)
        .collect();
    if down.is_empty() || services.s3_endpoint().is_none() {
        return Ok(());
    }
    let script = stack_script();
    eprintln!(
        "demo: {} not answering; running {} up",
        down.join(", "),
        script.display()
    );
    let status = std::process::Command::new(&script)
        .arg("up")
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !status.success() {
        bail!("{} up failed ({status})", script.display());
    }
    Ok(())
}

fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

fn stack_script() -> PathBuf {
    std::env::var_os("COFFER_STACK_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/stack"))
        })
}

/// Creates bucket, key and tenant; returns the key id.
async fn create_tenant(catalog: &Catalog, services: &Services) -> anyhow::Result<String> {
    let s3 = services.s3();
    provision::ensure_bucket(&s3.s3_client().await, BUCKET, &services.region).await?;
    let key = provision::create_kms_key(&s3.kms_client().await, "coffer demo tenant key").await?;
    let storage = NewStorage {
        bucket: BUCKET.to_owned(),
        region: services.region.clone(),
        endpoint: None,
        base_path: BasePath::new("coffer")?,
        sse: Sse::Kms {
            key_id: key.key_id.clone(),
            bucket_key: false,
        },
        access: StorageAccess::Vendor,
    };
    catalog
        .put_tenant(&TenantId::new(TENANT)?, "Demo tenant", &storage)
        .await?;
    eprintln!(
        "demo: tenant {TENANT} writes to s3://{BUCKET}/coffer/ with SSE-KMS key {}",
        key.key_id
    );
    Ok(key.key_id)
}

async fn start_sim(args: &DemoArgs) -> anyhow::Result<SimHandle> {
    let org = OrgSeed::new(
        OrgId::new(DEMO_ORG)?,
        7,
        args.accounts,
        args.contacts_per_account,
    );
    let sim = coffer_sfsim::start(SimConfig::local(org)).await?;
    eprintln!("demo: simulated org {DEMO_ORG} at {}", sim.base_url());
    Ok(sim)
}

async fn connect_org(catalog: &Catalog, sim: &SimHandle) -> anyhow::Result<()> {
    let org = OrgRecord {
        tenant_id: TenantId::new(TENANT)?,
        org_id: sim.org_id().clone(),
        login_url: sim.base_url(),
        client_id: sim.client_id().to_owned(),
        client_secret: SecretString::from(sim.client_secret().to_owned()),
        api_version: "62.0".to_owned(),
    };
    Ok(catalog.put_org(&org).await?)
}

/// A worker consuming the queue for the length of the demo.
struct DemoWorker {
    broker: coffer_queue::Broker,
    shutdown: CancellationToken,
    consumer: tokio::task::JoinHandle<Result<(), coffer_queue::QueueError>>,
}

impl DemoWorker {
    async fn start(catalog: &Catalog, services: &Services) -> anyhow::Result<DemoWorker> {
        let queue = services.queue();
        let broker = connect::broker(&queue).await?;
        let settings = WorkerSettings::new(services.s3());
        let worker = Worker::new(catalog.clone(), settings).with_events(broker.publisher().await?);
        let shutdown = CancellationToken::new();
        let consumer = tokio::spawn(coffer_queue::run_consumer(
            queue,
            Arc::new(worker),
            shutdown.clone(),
        ));
        Ok(DemoWorker {
            broker,
            shutdown,
            consumer,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.consumer
            .await
            .context("consumer task")?
            .context("consumer")
    }
}

/// Publishes a backup job and waits for the backup.
async fn backup_through_the_queue(
    catalog: &Catalog,
    worker: &DemoWorker,
) -> anyhow::Result<BackupRecord> {
    let broker = &worker.broker;
    let job = publish_backup(
        &broker.publisher().await?,
        &TenantId::new(TENANT)?,
        &OrgId::new(DEMO_ORG)?,
        &[],
        coffer_proto::v1::BackupKind::Full,
    )
    .await?;
    eprintln!(
        "demo: published backup job {job} on {}",
        broker.topology().jobs_queue()
    );
    wait_for_backup(catalog, job, Duration::from_secs(300)).await
}

/// What the restore step did.
struct Restored {
    job: JobId,
    restore_id: String,
    accounts: usize,
    deleted: usize,
    written: u64,
    failed: u64,
    records_before: usize,
    records_after: usize,
    duration: Duration,
}

/// Live records in the simulated org, every object.
fn live_records(sim: &SimHandle) -> usize {
    sim.sobjects()
        .iter()
        .filter_map(|name| sim.table(name))
        .map(|(_, rows)| rows.len())
        .sum()
}

/// Deletes and purges five accounts (with what their delete takes), restores them with two
/// levels of children through the queue, and counts the org's records again.
async fn restore_through_the_queue(
    catalog: &Catalog,
    worker: &DemoWorker,
    sim: &SimHandle,
    backup: &BackupRecord,
) -> anyhow::Result<Restored> {
    let (header, rows) = sim.table("Account").context("the org has no accounts")?;
    let id = header
        .iter()
        .position(|h| h == "Id")
        .context("Account.Id")?;
    let accounts: Vec<String> = rows.iter().take(5).map(|r| r[id].clone()).collect();
    let records_before = live_records(sim);
    let doomed: Vec<&str> = accounts.iter().map(String::as_str).collect();
    sim.delete("Account", &doomed)?;
    sim.empty_recycle_bin();
    let deleted = records_before - live_records(sim);
    eprintln!(
        "demo: deleted and purged {} accounts ({deleted} records with what their delete took)",
        accounts.len()
    );
    let started = Instant::now();
    let request = coffer_proto::v1::RestoreRequested {
        tenant_id: TENANT.to_owned(),
        org_id: DEMO_ORG.to_owned(),
        backup_id: backup.backup_id.to_string(),
        as_of_unix_ms: 0,
        target_org_id: String::new(),
        scope: Some(coffer_proto::v1::RestoreScope {
            sobjects: Vec::new(),
            record_ids: accounts.clone(),
            child_depth: 2,
            parent_depth: 0,
        }),
        mode: coffer_proto::v1::RestoreMode::Execute as i32,
    };
    let publisher = worker.broker.publisher().await?;
    let job = Job::RestoreRequested(request);
    let job = super::enqueue::publish_job(
        &publisher,
        &TenantId::new(TENANT)?,
        "restore_requested",
        job,
    )
    .await?;
    eprintln!("demo: published restore job {job}");
    let restore = tokio::time::timeout(
        Duration::from_secs(300),
        super::restore::wait(catalog, job, true, None, None),
    )
    .await
    .context("the restore did not finish within 5 minutes")??;
    if restore.state != coffer_catalog::RestoreState::Complete {
        bail!(
            "restore {} ended {}: {:?}",
            restore.restore_id,
            restore.state.as_str(),
            restore.error
        );
    }
    let counts = catalog.restore_counts(&restore.restore_id).await?;
    let count = |states: &[RecordState]| -> u64 {
        counts
            .iter()
            .filter(|c| states.contains(&c.state))
            .map(|c| c.count)
            .sum()
    };
    Ok(Restored {
        job,
        restore_id: restore.restore_id.clone(),
        accounts: accounts.len(),
        deleted,
        written: count(&[RecordState::Written, RecordState::Linked]),
        failed: count(&[RecordState::Failed]),
        records_before,
        records_after: live_records(sim),
        duration: started.elapsed(),
    })
}

async fn wait_for_backup(
    catalog: &Catalog,
    job: JobId,
    timeout: Duration,
) -> anyhow::Result<BackupRecord> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(backup) = catalog.backup_of_job(job).await? {
            match backup.state {
                BackupState::Complete => return Ok(backup),
                BackupState::Failed => bail!(
                    "backup {} failed; see the worker log above",
                    backup.backup_id
                ),
                BackupState::Expiring => {
                    bail!("backup {} is being deleted by retention", backup.backup_id)
                }
                BackupState::Running => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("backup of job {job} did not complete within {timeout:?}")
}

/// How the user can run `coffer` again: through cargo when the demo was started with
/// `cargo run` (which sets `CARGO`), else the binary itself.
fn coffer_command() -> &'static str {
    if std::env::var_os("CARGO").is_some() {
        "cargo run -q -p coffer --"
    } else {
        "coffer"
    }
}

/// What the demo prints.
struct Report<'a> {
    backup: &'a BackupRecord,
    objects: &'a [ObjectRecord],
    duration: Duration,
    kms_key_id: &'a str,
    services: &'a Services,
    restored: &'a Restored,
}

impl Report<'_> {
    fn endpoint(&self) -> String {
        self.services
            .s3_endpoint()
            .unwrap_or("https://s3.amazonaws.com")
            .to_owned()
    }

    fn json(&self) -> serde_json::Value {
        let b = self.backup;
        json!({
            "backup_id": b.backup_id.to_string(),
            "tenant": b.tenant_id.as_str(),
            "org_id": b.org_id.as_str(),
            "bucket": BUCKET,
            "endpoint": self.endpoint(),
            "kms_key_id": self.kms_key_id,
            "objects": self.objects.iter().map(|o| json!({
                "key": o.key, "rows": o.rows, "bytes": o.size, "sha256": o.sha256,
            })).collect::<Vec<_>>(),
            "records": b.record_count,
            "bytes": b.bytes,
            "duration_ms": self.duration.as_millis() as u64,
            "restore": {
                "restore_id": self.restored.restore_id,
                "accounts": self.restored.accounts,
                "deleted_records": self.restored.deleted,
                "written": self.restored.written,
                "failed": self.restored.failed,
                "org_records_before": self.restored.records_before,
                "org_records_after": self.restored.records_after,
                "duration_ms": self.restored.duration.as_millis() as u64,
            },
        })
    }

    fn print(&self) -> anyhow::Result<()> {
        let b = self.backup;
        say(format!(
            "backup {} of org {} (tenant {}) complete in {:.2} s",
            b.backup_id,
            b.org_id,
            b.tenant_id,
            self.duration.as_secs_f64()
        ));
        say(format!("\n  {:>8}  {:>10}  key", "rows", "bytes"));
        for o in self.objects {
            say(format!(
                "  {:>8}  {:>10}  s3://{BUCKET}/{}",
                o.rows, o.size, o.key
            ));
        }
        say(format!(
            "\n  {} objects, {} records, {} bytes, SSE-KMS key {}",
            b.objects, b.record_count, b.bytes, self.kms_key_id
        ));
        let r = self.restored;
        say(format!(
            "\nrestore {}: {} accounts deleted and purged with what their delete took ({} records), \
             restored from backup {} in {:.2} s: {} records written, {} failed; the org has {} \
             records again (it had {} before the delete)",
            r.restore_id,
            r.accounts,
            r.deleted,
            b.backup_id,
            r.duration.as_secs_f64(),
            r.written,
            r.failed,
            r.records_after,
            r.records_before
        ));
        let endpoint = self.endpoint();
        say("\nlook at it:");
        say(format!(
            "  {} backups show --backup {}",
            coffer_command(),
            b.backup_id
        ));
        say(format!(
            "  {} restore status --job {}",
            coffer_command(),
            r.job
        ));
        say(format!(
            "  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test aws --endpoint-url {endpoint} s3 ls --recursive s3://{BUCKET}/coffer/"
        ));
        say(
            "  mariadb -ucoffer -pcoffer -h127.0.0.1 coffer -e 'SELECT backup_id, state, objects, record_count, bytes FROM backups'",
        );
        Ok(())
    }
}
