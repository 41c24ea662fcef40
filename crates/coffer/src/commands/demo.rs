//! `coffer demo`: one real backup, end to end, on the local stack.
//!
//! 1. bring the stack up if a service does not answer (`scripts/stack up`);
//! 2. create tenant `demo` with bucket `coffer-demo` and a new KMS key (SSE-KMS);
//! 3. start a seeded simulated org and connect it;
//! 4. start a worker, publish a BackupRequested on the queue, wait for the backup to complete;
//! 5. print what was written and how to look at it (or one JSON object with `--json`).

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use coffer_catalog::{
    BackupRecord, BackupState, Catalog, NewStorage, ObjectRecord, OrgRecord, Sse, StorageAccess,
};
use coffer_core::layout::BasePath;
use coffer_core::{JobId, OrgId, TenantId};
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
    let started = Instant::now();
    let backup = backup_through_the_queue(&catalog, &args.services).await?;
    let duration = started.elapsed();
    sim.shutdown().await;
    let objects = catalog.backup_objects(backup.backup_id).await?;
    let report = Report {
        backup: &backup,
        objects: &objects,
        duration,
        kms_key_id: &kms_key_id,
        services: &args.services,
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
    if down.is_empty() || services.s3_endpoint.is_none() {
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

/// Runs a worker, publishes the job, waits for the backup, stops the worker.
async fn backup_through_the_queue(
    catalog: &Catalog,
    services: &Services,
) -> anyhow::Result<BackupRecord> {
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
    let result = wait_for_backup(catalog, job, Duration::from_secs(300)).await;
    shutdown.cancel();
    consumer
        .await
        .context("consumer task")?
        .context("consumer")?;
    result
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
                BackupState::Expiring => bail!(
                    "backup {} is being deleted by retention",
                    backup.backup_id
                ),
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
}

impl Report<'_> {
    fn endpoint(&self) -> String {
        self.services
            .s3_endpoint
            .clone()
            .unwrap_or_else(|| "https://s3.amazonaws.com".to_owned())
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
        let endpoint = self.endpoint();
        say("\nlook at it:");
        say(format!(
            "  {} backups show --backup {}",
            coffer_command(),
            b.backup_id
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
