//! A backup survives its workers being killed: two `coffer worker` processes share a backup and
//! are killed with SIGKILL at random points, several times, each replaced by a fresh process.
//! The backup still completes, and the bucket holds exactly what the catalog says: every record
//! of the org once, no object the catalog does not know, no multipart upload left open. The
//! seed of the random kill points is printed, so a failure can be replayed
//! (`COFFER_KILL_SEED=...`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use coffer_catalog::{BackupRecord, BackupState, ObjectKind};
use coffer_core::JobId;
use coffer_core::layout::OrgPrefix;
use coffer_testkit::{TestEnv, start_sim};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use common::{Reaped, coffer, kill_seed, logs_of, run_json, wait_for_exit};

const KILLS: usize = 5;

/// Starts a worker process with a short task lease and small parts.
fn spawn_worker(env: &TestEnv, n: usize) -> anyhow::Result<(Reaped, std::path::PathBuf)> {
    let vars = [
        ("COFFER_TASK_LEASE", "2s"),
        ("COFFER_MAX_PART_BYTES", "4096"),
    ];
    common::spawn_worker(env, "kill", n, &vars)
}

async fn backup_state(env: &TestEnv, job: JobId) -> anyhow::Result<Option<BackupRecord>> {
    Ok(env.catalog.backup_of_job(job).await?)
}

fn gunzip_csv(body: &[u8]) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut text)?;
    let mut reader = csv::Reader::from_reader(text.as_slice());
    let header = reader.headers()?.iter().map(str::to_owned).collect();
    let rows = reader
        .records()
        .map(|r| r.map(|r| r.iter().map(str::to_owned).collect()))
        .collect::<Result<_, _>>()?;
    Ok((header, rows))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_completes_although_its_workers_are_killed_at_random_points() -> anyhow::Result<()>
{
    let seed = kill_seed()?;
    let mut rng = StdRng::seed_from_u64(seed);

    let env = TestEnv::new().await?;
    let sim = start_sim(60, 4, 40).await?;
    sim.slow_pages(Duration::from_millis(120));
    env.create_tenant("acme", "").await?;
    env.connect_org("acme", &sim).await?;
    env.broker().await?;

    let mut spawned = 0;
    let mut workers = Vec::new();
    let mut logs = Vec::new();
    for _ in 0..2 {
        let (child, log) = spawn_worker(&env, spawned)?;
        spawned += 1;
        workers.push(child);
        logs.push(log);
    }
    let mut enqueue = coffer(&env);
    enqueue.args(["enqueue", "backup", "--tenant", "acme", "--json"]);
    let job: JobId = run_json(enqueue)?["jobs"][0]["job_id"]
        .as_str()
        .context("job id")?
        .parse()?;

    // Kill a random worker at random moments while the backup runs, replacing each.
    let mut kills = 0;
    while kills < KILLS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..1_200))).await;
        if backup_state(&env, job)
            .await?
            .is_some_and(|b| b.state == BackupState::Complete)
        {
            break;
        }
        let victim = rng.random_range(0..workers.len());
        workers[victim].kill()?;
        workers[victim].wait()?;
        kills += 1;
        let (child, log) = spawn_worker(&env, spawned)?;
        spawned += 1;
        workers[victim] = child;
        logs.push(log);
    }
    eprintln!("killed {kills} worker processes");
    assert!(
        kills >= 2,
        "the backup finished before two kills (seed {seed})"
    );

    let deadline = Instant::now() + Duration::from_secs(240);
    let backup = loop {
        match backup_state(&env, job).await? {
            Some(b) if b.state == BackupState::Complete => break b,
            Some(b) if b.state == BackupState::Failed => bail!("backup failed (seed {seed})"),
            _ if Instant::now() > deadline => {
                bail!(
                    "no complete backup (seed {seed}); logs:\n{}",
                    logs_of(&logs)
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    for worker in &mut workers {
        let pid = worker.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        wait_for_exit(worker, Duration::from_secs(30))?;
    }

    let tenant = env
        .catalog
        .tenant(&coffer_core::TenantId::new("acme")?)
        .await?
        .context("tenant")?;
    let prefix = OrgPrefix::new(
        &tenant.storage.settings.base_path,
        &tenant.tenant_id,
        sim.org_id(),
    );
    let bucket = &env.bucket;

    // No object the catalog does not know, and none missing: keys equal the catalog's rows.
    let objects = env.catalog.backup_objects(backup.backup_id).await?;
    let catalog_keys: BTreeSet<String> = objects.iter().map(|o| o.key.clone()).collect();
    let bucket_keys: BTreeSet<String> = coffer_storage::list::list_keys(
        &env.s3_client,
        bucket,
        &prefix.backup_prefix(&backup.backup_id),
    )
    .await?
    .into_iter()
    .collect();
    assert_eq!(
        bucket_keys, catalog_keys,
        "bucket and catalog disagree (seed {seed})"
    );
    let file_keys: BTreeSet<String> = env
        .catalog
        .backup_files(backup.backup_id)
        .await?
        .iter()
        .map(|f| prefix.file_key(&f.sha256))
        .collect::<Result<_, _>>()?;
    let stored_files: BTreeSet<String> =
        coffer_storage::list::list_keys(&env.s3_client, bucket, &prefix.files_prefix())
            .await?
            .into_iter()
            .collect();
    assert_eq!(
        stored_files, file_keys,
        "file bodies without a reference (seed {seed})"
    );

    // No multipart upload left open anywhere under the org.
    let open = coffer_storage::list::list_open_uploads(
        &env.s3_client,
        bucket,
        &format!("{}/", prefix.as_str().trim_end_matches('/')),
    )
    .await?;
    assert!(open.is_empty(), "uploads left open (seed {seed}): {open:?}");

    // Every record of the org exactly once, as the org has it; the index agrees.
    let mut held: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for object in objects.iter().filter(|o| o.kind == ObjectKind::Records) {
        let body = env
            .s3_client
            .get_object()
            .bucket(bucket)
            .key(&object.key)
            .send()
            .await?
            .body
            .collect()
            .await?
            .into_bytes();
        let (_, rows) = gunzip_csv(&body)?;
        held.entry(object.sobject.clone().unwrap_or_default())
            .or_default()
            .extend(rows);
    }
    let mut total = 0;
    for name in sim.sobjects() {
        let (_, mut want) = sim.table(&name).context("sim table")?;
        let mut got = held.remove(&name).unwrap_or_default();
        want.sort();
        got.sort();
        assert_eq!(got.len(), want.len(), "{name} rows (seed {seed})");
        assert!(
            got == want,
            "{name} rows differ from the org's (seed {seed})"
        );
        total += got.len() as u64;
    }
    assert_eq!(backup.record_count, total);
    let indexed = env.catalog.indexed_records(backup.backup_id, None).await?;
    assert_eq!(indexed.len() as u64, total, "record index (seed {seed})");

    sim.shutdown().await;
    env.cleanup().await
}
