//! Running the `coffer` binary from tests, against a test's own services.

#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use coffer_catalog::{BackupRecord, BackupState};
use coffer_core::JobId;
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
