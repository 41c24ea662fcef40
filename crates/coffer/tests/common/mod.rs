//! Running the `coffer` binary from tests, against a test's own services.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use coffer_catalog::{BackupRecord, BackupState, ObjectKind};
use coffer_core::JobId;
use coffer_core::layout::OrgPrefix;
use coffer_testkit::TestEnv;

/// `coffer` with the test's database, broker, queue prefix and endpoint, logging JSON.
pub fn coffer(env: &TestEnv) -> Command {
    env.command(env!("CARGO_BIN_EXE_coffer"))
}

/// Runs `cmd`, which must succeed, and parses its stdout as JSON.
pub fn run_json(mut cmd: Command) -> anyhow::Result<serde_json::Value> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// `coffer enqueue backup --tenant {tenant}`, which must succeed; the id of its (first) job.
pub fn enqueue_backup(env: &TestEnv, tenant: &str) -> anyhow::Result<JobId> {
    let mut enqueue = coffer(env);
    enqueue.args(["enqueue", "backup", "--tenant", tenant, "--json"]);
    Ok(run_json(enqueue)?["jobs"][0]["job_id"]
        .as_str()
        .context("job id in the output of `coffer enqueue backup`")?
        .parse()?)
}

/// A child process that is killed (SIGKILL) and reaped when dropped, so a test that fails
/// halfway leaves no worker or scheduler behind to consume other tests' time.
pub struct Reaped(pub std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits for `child` to exit, killing it after `timeout`.
pub fn wait_for_exit(
    child: &mut std::process::Child,
    timeout: Duration,
) -> anyhow::Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            child.kill()?;
            bail!("worker did not stop within {timeout:?} of sigterm");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits up to 90 s for `job`'s backup to complete; on timeout, fails with the worker's log.
pub async fn wait_for_backup(
    env: &TestEnv,
    job: JobId,
    worker_log: &std::path::Path,
) -> anyhow::Result<BackupRecord> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(b) = env.catalog.backup_of_job(job).await?
            && b.state == BackupState::Complete
        {
            return Ok(b);
        }
        if Instant::now() > deadline {
            bail!(
                "no complete backup; worker log:\n{}",
                std::fs::read_to_string(worker_log)?
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The seed of a kill test's random points: `COFFER_KILL_SEED` when set (a replay), else a new
/// one; printed either way, so a failure can be replayed.
pub fn kill_seed() -> anyhow::Result<u64> {
    let seed: u64 = match std::env::var("COFFER_KILL_SEED") {
        Ok(s) => s.parse()?,
        Err(_) => rand::random(),
    };
    eprintln!("kill test seed: COFFER_KILL_SEED={seed}");
    Ok(seed)
}

/// Starts `coffer worker` number `n` of a test with the extra environment `vars`, its log in a
/// file of its own (returned) named after `label`.
pub fn spawn_worker(
    env: &TestEnv,
    label: &str,
    n: usize,
    vars: &[(&str, &str)],
) -> anyhow::Result<(Reaped, std::path::PathBuf)> {
    let log = std::env::temp_dir().join(format!("coffer-{label}-{}-{n}.log", env.id));
    let mut cmd = coffer(env);
    cmd.arg("worker")
        .envs(vars.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    Ok((Reaped(cmd.spawn()?), log))
}

/// The workers' logs, one after the other, for a failure message.
pub fn logs_of(logs: &[std::path::PathBuf]) -> String {
    let logs: Vec<String> = logs
        .iter()
        .map(|l| std::fs::read_to_string(l).unwrap_or_default())
        .collect();
    logs.join("\n---\n")
}

/// Connects `org` to `tenant` in the catalog with a login no one answers: for tests that
/// work on the catalog and the bucket only (histories, sweeps, verification).
pub async fn offline_org(
    env: &TestEnv,
    tenant: &coffer_core::TenantId,
    org: &coffer_core::OrgId,
) -> anyhow::Result<()> {
    env.catalog
        .put_org(&coffer_catalog::OrgRecord {
            tenant_id: tenant.clone(),
            org_id: org.clone(),
            login_url: "http://127.0.0.1:1".to_owned(),
            client_id: "id".to_owned(),
            client_secret: secrecy::SecretString::from("secret".to_owned()),
            api_version: "62.0".to_owned(),
        })
        .await?;
    Ok(())
}

/// What a backup of the `acme` tenant's org must hold whatever happened to its workers: the
/// bucket's keys equal the catalog's rows (nothing unknown, nothing missing), every file body
/// referenced, no multipart upload open, and every record of the org exactly once, as the org
/// has it, with the record index agreeing.
pub async fn assert_backup_holds_the_org(
    env: &TestEnv,
    sim: &coffer_sfsim::SimHandle,
    backup: &BackupRecord,
) -> anyhow::Result<()> {
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
    assert_eq!(bucket_keys, catalog_keys, "bucket and catalog disagree");
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
    assert_eq!(stored_files, file_keys, "file bodies without a reference");

    // No multipart upload left open anywhere under the org.
    let open = coffer_storage::list::list_open_uploads(
        &env.s3_client,
        bucket,
        &format!("{}/", prefix.as_str().trim_end_matches('/')),
    )
    .await?;
    assert!(open.is_empty(), "uploads left open: {open:?}");

    // Every record of the org exactly once, as the org has it; the index agrees.
    let mut held: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for object in objects.iter().filter(|o| o.kind == ObjectKind::Records) {
        let (_, rows) = read_part(env, &object.key).await?;
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
        assert_eq!(got.len(), want.len(), "{name} rows");
        assert!(got == want, "{name} rows differ from the org's");
        total += got.len() as u64;
    }
    assert_eq!(backup.record_count, total);
    let indexed = env.catalog.indexed_records(backup.backup_id, None).await?;
    assert_eq!(indexed.len() as u64, total, "record index");

    Ok(())
}

/// A gzip records part of the test's bucket, read back: header and rows.
pub async fn read_part(
    env: &TestEnv,
    key: &str,
) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let body = env
        .s3_client
        .get_object()
        .bucket(&env.bucket)
        .key(key)
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes();
    gunzip_csv(&body)
}

/// Un-gzips a records part and parses its CSV: header and rows.
pub fn gunzip_csv(body: &[u8]) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    use std::io::Read as _;
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

/// The address a worker's log says its HTTP endpoint listens on.
pub async fn http_addr_of(log: &std::path::Path) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let addr = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("http server listening"))
            })
            .and_then(|v| v["addr"].as_str().map(str::to_owned));
        match addr {
            Some(a) => return Ok(a),
            None if Instant::now() > deadline => {
                anyhow::bail!("no http address in the log:\n{text}")
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// `coffer restore start --execute` of `accounts` of the `acme` tenant's test org from
/// `backup`, with two levels of children; returns the restore's job id.
pub fn start_restore(
    env: &TestEnv,
    backup: coffer_core::BackupId,
    accounts: &[String],
) -> anyhow::Result<JobId> {
    let mut start = coffer(env);
    start.args([
        "restore",
        "start",
        "--tenant",
        "acme",
        "--org",
        coffer_testkit::TEST_ORG_ID,
    ]);
    start.args(["--backup", &backup.to_string(), "--children", "2"]);
    for account in accounts {
        start.args(["--id", account]);
    }
    start.args(["--execute", "--json"]);
    Ok(run_json(start)?["job_id"]
        .as_str()
        .context("restore job id")?
        .parse()?)
}
