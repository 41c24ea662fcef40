//! Retention deletion throughput, beside the AWS CLI's recursive delete of the same objects.
//!
//! One org holds a full backup of `BENCH_JANITOR_OBJECTS` records parts (default 100,000, a few
//! bytes each, one catalog row each) completed 40 days ago, and a complete backup of 10 parts
//! from today; the tenant keeps 7 days. Both are made by `coffer_testkit::history` (objects PUT
//! straight into the bucket, rows inserted): setup, not measured.
//!
//! Then, on the same server in the same run:
//!
//! - **coffer**: one retention sweep of the org (`coffer_worker::janitor::sweep::sweep_org`, no
//!   grace period, `BENCH_JANITOR_IN_FLIGHT` DeleteObjects requests in flight, default 8): plan,
//!   mark, re-check under the lock, list the backup's prefix, delete every key (1,000 a
//!   request), remove the catalog rows, then the file-body and stale-upload steps. Timed from
//!   the call to its return.
//! - **aws cli**: the same keys PUT again, then `aws s3 rm s3://{bucket}/{prefix} --recursive`
//!   with the CLI's default settings.
//!
//! Each row prints the objects deleted, seconds, objects/s, and the 1-minute load average before
//! and after (the machine may be shared); the prefix is checked empty after each, and the newer
//! backup kept. A note gives the catalog's share of the sweep: reading the
//! object rows and removing them, timed on a catalog-only copy of the backup after the sweep.
//!
//! Run with `scripts/bench-tools && cargo bench -p coffer --bench janitor` (the stack must be
//! up: `scripts/stack up`). Under `cargo test --all-targets` it runs a 2,000-object smoke pass
//! of the sweep alone.

#![allow(clippy::print_stdout)]

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use coffer_catalog::OrgRecord;
use coffer_core::retention::Policy;
use coffer_core::{BackupId, JobId, OrgId, TenantId};
use coffer_storage::list::list_keys;
use coffer_testkit::{TEST_ORG_ID, TestEnv, history};
use coffer_worker::janitor::sweep::{Janitor, SweepSettings, sweep_org};
use coffer_worker::storage::StorageClients;
use secrecy::{ExposeSecret, SecretString};

fn main() -> anyhow::Result<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let objects = match full {
        true => env_number("BENCH_JANITOR_OBJECTS")?.unwrap_or(100_000),
        false => 2_000,
    };
    let in_flight = env_number("BENCH_JANITOR_IN_FLIGHT")?.unwrap_or(8);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(janitor_run(objects, in_flight, full))
}

fn env_number(name: &str) -> anyhow::Result<Option<usize>> {
    std::env::var(name)
        .ok()
        .map(|s| {
            s.trim()
                .parse()
                .with_context(|| format!("{name}: a number"))
        })
        .transpose()
}

/// One measured deletion.
struct Row {
    tool: String,
    objects: usize,
    seconds: f64,
    /// The 1-minute load average before and after.
    load: (String, String),
}

async fn janitor_run(objects: usize, in_flight: usize, full: bool) -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let tenant = env.create_tenant("bench", "").await?.tenant_id;
    let org = OrgId::new(TEST_ORG_ID)?;
    env.catalog
        .put_org(&OrgRecord {
            tenant_id: tenant.clone(),
            org_id: org.clone(),
            login_url: "http://127.0.0.1:9".to_owned(),
            client_id: "bench".to_owned(),
            client_secret: SecretString::from("bench".to_owned()),
            api_version: "62.0".to_owned(),
        })
        .await?;
    let mut notes = Vec::new();

    let t = Instant::now();
    let old = history::backup(&env, &tenant, &org, objects, 0, &[], 40).await?;
    let newest = history::backup(&env, &tenant, &org, 10, 0, &[], 0).await?;
    notes.push(format!(
        "setup: {} objects PUT and their rows inserted in {:.1} s",
        objects + 10,
        t.elapsed().as_secs_f64()
    ));
    let policy = Policy {
        keep_days: Some(7),
        ..Policy::default()
    };
    env.catalog
        .put_retention_policy(&tenant, None, &policy)
        .await?;
    let (_, layout) = history::place(&env, &tenant, &org).await?;
    let prefix = layout.backup_prefix(&old);
    let keys = list_keys(&env.s3_client, &env.bucket, &prefix).await?;
    ensure!(
        keys.len() == objects,
        "{} objects under {prefix}, not {objects}",
        keys.len()
    );
    let mut rows = Vec::new();

    // Coffer: one sweep of the org.
    let clients = StorageClients::new(env.s3.clone(), "coffer".to_owned(), None);
    let settings = SweepSettings {
        grace: Duration::ZERO,
        stale_upload_age: Duration::from_secs(24 * 3600),
        delete_in_flight: in_flight,
        ..SweepSettings::default()
    };
    let janitor = Janitor {
        catalog: &env.catalog,
        storage: &clients,
        settings: &settings,
        name: "bench",
    };
    let load_before = load_average();
    let started = Instant::now();
    let swept = sweep_org(&janitor, &tenant, &org).await?;
    let seconds = started.elapsed().as_secs_f64();
    let load = (load_before, load_average());
    ensure!(
        swept.failures.is_empty(),
        "sweep failures: {:?}",
        swept.failures
    );
    let [expired] = &swept.expired[..] else {
        bail!(
            "the sweep deleted {} backups, not 1: {swept:?}",
            swept.expired.len()
        );
    };
    ensure!(
        expired.backup_id == old && expired.objects_deleted == objects as u64,
        "the sweep deleted {} objects of backup {}, not {objects} of {old}",
        expired.objects_deleted,
        expired.backup_id
    );
    ensure_empty(&env, &prefix).await?;
    ensure!(
        env.catalog.backup(newest).await?.is_some(),
        "the newest backup is gone"
    );
    rows.push(Row {
        tool: format!("coffer ({in_flight} in flight)"),
        objects,
        seconds,
        load,
    });
    notes.push(format!(
        "coffer: {} catalog rows removed; catalog share: {}",
        expired.rows_removed,
        catalog_share(&env, &tenant, &org, &keys).await?
    ));

    // The AWS CLI: the same keys again, then a recursive delete.
    if full {
        let t = Instant::now();
        history::put_all(&env, &env.bucket, &keys).await?;
        notes.push(format!(
            "setup: {objects} objects PUT again in {:.1} s",
            t.elapsed().as_secs_f64()
        ));
        let t = Instant::now();
        let listed = list_keys(&env.s3_client, &env.bucket, &prefix).await?.len();
        ensure!(
            listed == objects,
            "{listed} objects under {prefix}, not {objects}"
        );
        notes.push(format!(
            "listing the {listed} keys, as the sweep does first: {:.2} s",
            t.elapsed().as_secs_f64()
        ));
        let load_before = load_average();
        let started = Instant::now();
        aws_rm(&env, &prefix)?;
        let seconds = started.elapsed().as_secs_f64();
        let load = (load_before, load_average());
        ensure_empty(&env, &prefix).await?;
        rows.push(Row {
            tool: "aws cli".to_owned(),
            objects,
            seconds,
            load,
        });
        notes.push(format!("aws cli: {}", aws_version()));
    }

    println!(
        "{:>22} {:>9} {:>9} {:>10} {:>14}",
        "tool", "objects", "seconds", "objects/s", "load (1 min)"
    );
    for row in &rows {
        let load = format!("{} -> {}", row.load.0, row.load.1);
        println!(
            "{:>22} {:>9} {:>9.2} {:>10.0} {:>14}",
            row.tool,
            row.objects,
            row.seconds,
            row.objects as f64 / row.seconds,
            load
        );
    }
    if let [coffer, aws] = &rows[..] {
        println!(
            "coffer deletes {:.2}x the objects/s of aws s3 rm --recursive",
            aws.seconds / coffer.seconds
        );
    }
    for note in notes {
        println!("{note}");
    }
    println!(
        "load: the 1-minute load average before -> after each deletion, on {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    env.cleanup().await
}

/// The 1-minute load average (Linux), or `n/a`: the machine may be shared.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "n/a".to_owned())
}

async fn ensure_empty(env: &TestEnv, prefix: &str) -> anyhow::Result<()> {
    let left = list_keys(&env.s3_client, &env.bucket, prefix).await?;
    if let Some(first) = left.first() {
        bail!("{} objects left under {prefix}, e.g. {first}", left.len());
    }
    Ok(())
}

/// The catalog's share of a sweep, timed on a catalog-only copy of the deleted backup (a row per
/// key, no objects): reading its object rows, and removing its rows once it is `expiring`.
async fn catalog_share(
    env: &TestEnv,
    tenant: &TenantId,
    org: &OrgId,
    keys: &[String],
) -> anyhow::Result<String> {
    let c = &env.catalog;
    let (storage_id, _) = history::place(env, tenant, org).await?;
    let copy = c
        .begin_backup(JobId::generate(), tenant, org, storage_id, "full")
        .await?
        .backup_id;
    insert_object_rows(env, copy, keys).await?;
    sqlx::query("UPDATE backups SET state = 'expiring' WHERE backup_id = ?")
        .bind(copy.to_string())
        .execute(c.pool())
        .await?;
    let t = Instant::now();
    let read = c.backup_objects(copy).await?.len();
    let read_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let removed = c.remove_backup_rows(copy).await?;
    let remove_secs = t.elapsed().as_secs_f64();
    ensure!(
        read == keys.len(),
        "read {read} object rows, not {}",
        keys.len()
    );
    Ok(format!(
        "reading {read} object rows {read_secs:.2} s, removing {removed} rows {remove_secs:.2} s"
    ))
}

/// A `records` row per key, 1,000 an INSERT.
async fn insert_object_rows(
    env: &TestEnv,
    backup: BackupId,
    keys: &[String],
) -> anyhow::Result<()> {
    let id = backup.to_string();
    for chunk in keys.chunks(1000) {
        let mut insert = sqlx::QueryBuilder::<sqlx::MySql>::new(
            "INSERT INTO backup_objects \
             (backup_id, object_key, kind, sobject, part, size_bytes, sha256, row_count) ",
        );
        insert.push_values(chunk, |mut row, key| {
            row.push_bind(&id)
                .push_bind(key)
                .push_bind("records")
                .push_bind("Account")
                .push_bind(coffer_core::layout::OrgPrefix::part_of_key(key))
                .push_bind(8_u64)
                .push_bind("0".repeat(64))
                .push_bind(0_u64);
        });
        insert.build().execute(env.catalog.pool()).await?;
    }
    Ok(())
}

/// `aws s3 rm --recursive` of `prefix` in the run's bucket, with the emulator's admin keys.
fn aws_rm(env: &TestEnv, prefix: &str) -> anyhow::Result<()> {
    let keys = env.stack.admin_s3().keys.context("admin keys")?;
    let status = Command::new("aws")
        .args([
            "s3",
            "rm",
            &format!("s3://{}/{prefix}", env.bucket),
            "--recursive",
            "--only-show-errors",
            "--endpoint-url",
            &env.stack.s3_endpoint,
        ])
        .env("AWS_ACCESS_KEY_ID", &keys.access_key_id)
        .env(
            "AWS_SECRET_ACCESS_KEY",
            keys.secret_access_key.expose_secret(),
        )
        .env("AWS_DEFAULT_REGION", &env.stack.region)
        .env_remove("AWS_CA_BUNDLE")
        .status()
        .map_err(|e| anyhow::anyhow!("aws: {e} (install it with scripts/bench-tools)"))?;
    if !status.success() {
        bail!("aws s3 rm exited with {status}");
    }
    Ok(())
}

fn aws_version() -> String {
    Command::new("aws")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&[o.stdout, o.stderr].concat())
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|e| format!("aws --version: {e}"))
}
