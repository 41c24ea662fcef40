//! `coffer enqueue backup --wait` as a script runs it (no terminal): it follows the backup to
//! its end, prints the outcome (one JSON object with `--json`), reports progress as plain lines
//! on stderr, and exits 1 when the backup fails.

mod common;

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use coffer_testkit::{TEST_ORG_ID, TestEnv, start_sim};

use common::{Reaped, coffer, wait_for_exit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waited_backup_ends_complete_with_progress_on_stderr() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(20, 2, 500).await?;
    env.create_tenant_with("acme", "", coffer_catalog::Sse::S3)
        .await?;
    env.connect_org("acme", &sim).await?;
    let (_worker, log) = common::spawn_worker(&env, "wait", 0, &[])?;
    let mut enqueue = coffer(&env);
    enqueue.args(["enqueue", "backup", "--tenant", "acme", "--wait", "--json"]);
    let (status, stdout, stderr) = run_to_end(enqueue, Duration::from_secs(120))?;
    assert!(
        status.success(),
        "{stderr}\nworker log:\n{}",
        std::fs::read_to_string(&log)?
    );
    let out: serde_json::Value = serde_json::from_str(&stdout).context("one JSON object")?;
    let job = &out["jobs"][0];
    assert_eq!(job["org_id"], TEST_ORG_ID);
    assert_eq!(job["backup"]["state"], "complete", "{out}");
    assert!(job["backup"]["records"].as_u64().unwrap_or(0) > 0, "{out}");
    assert_eq!(job["error"], serde_json::Value::Null);
    assert!(
        stderr.contains(&format!("backup of org {TEST_ORG_ID}")),
        "plain progress lines on stderr: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no bar drawn without a terminal"
    );
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waited_backup_that_fails_exits_non_zero_with_its_error() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    env.create_tenant_with("acme", "", coffer_catalog::Sse::S3)
        .await?;
    let (_worker, log) = common::spawn_worker(&env, "wait-fail", 0, &[])?;
    // An org the tenant never connected: the worker refuses the job for good.
    let mut enqueue = coffer(&env);
    enqueue
        .args([
            "enqueue",
            "backup",
            "--tenant",
            "acme",
            "--org",
            TEST_ORG_ID,
        ])
        .args(["--wait", "--json"]);
    let (status, stdout, _) = run_to_end(enqueue, Duration::from_secs(60))?;
    assert!(!status.success(), "{stdout}");
    let out: serde_json::Value = serde_json::from_str(&stdout).context("one JSON object")?;
    assert!(
        out["jobs"][0]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{out}\nworker log:\n{}",
        std::fs::read_to_string(&log)?
    );
    env.cleanup().await
}

/// Runs `cmd` to its end (at most `limit`), returning its status, stdout and stderr.
fn run_to_end(
    mut cmd: std::process::Command,
    limit: Duration,
) -> anyhow::Result<(std::process::ExitStatus, String, String)> {
    use std::io::Read;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Reaped(cmd.spawn()?);
    let status = wait_for_exit(&mut child, limit)?;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut stdout)?;
    child
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut stderr)?;
    Ok((status, stdout, stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_times_out_exits_non_zero_and_the_backup_job_goes_on() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(5, 1, 500).await?;
    env.create_tenant_with("acme", "", coffer_catalog::Sse::S3)
        .await?;
    env.connect_org("acme", &sim).await?;
    let broker = env.broker().await?;
    // no worker runs: the backup cannot finish
    let mut enqueue = coffer(&env);
    enqueue.args([
        "enqueue",
        "backup",
        "--tenant",
        "acme",
        "--wait",
        "--wait-timeout",
        "2s",
        "--json",
    ]);
    let (status, stdout, stderr) = run_to_end(enqueue, Duration::from_secs(60))?;
    assert!(!status.success(), "{stdout}");
    let out: serde_json::Value = serde_json::from_str(&stdout).context("one JSON object")?;
    let job = &out["jobs"][0];
    assert_eq!(job["timed_out"], true, "{out}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("not finished after 2s") && e.contains("goes on")),
        "{out}"
    );
    assert!(stderr.contains("did not finish"), "{stderr}");
    assert_eq!(
        broker.queue_depth(broker.topology().jobs_queue()).await?,
        1,
        "the job still waits for a worker"
    );
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waited_restore_refused_before_it_began_exits_with_the_reason() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let tenant = env
        .create_tenant_with("acme", "", coffer_catalog::Sse::S3)
        .await?;
    common::offline_org(&env, &tenant.tenant_id, &TEST_ORG_ID.parse()?).await?;
    let (_worker, log) = common::spawn_worker(&env, "wait-restore", 0, &[])?;
    let missing = coffer_core::BackupId::generate().to_string();
    let mut restore = coffer(&env);
    restore.args([
        "restore",
        "start",
        "--tenant",
        "acme",
        "--org",
        TEST_ORG_ID,
        "--backup",
        &missing,
        "--object",
        "Account",
        "--wait",
    ]);
    let (status, stdout, stderr) = run_to_end(restore, Duration::from_secs(60))?;
    assert!(!status.success(), "{stdout}");
    assert!(
        stderr.contains("failed before it began") && stderr.contains(&missing),
        "the reason names the backup: {stderr}\nworker log:\n{}",
        std::fs::read_to_string(&log)?
    );
    env.cleanup().await
}
