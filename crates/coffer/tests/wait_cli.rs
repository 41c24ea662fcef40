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
    let log = std::env::temp_dir().join(format!("coffer-wait-{}.log", env.id));
    let _worker = Reaped(
        coffer(&env)
            .arg("worker")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
    let mut enqueue = coffer(&env);
    enqueue
        .args(["enqueue", "backup", "--tenant", "acme", "--wait", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Reaped(enqueue.spawn()?);
    let status = wait_for_exit(&mut child, Duration::from_secs(120))?;
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read;
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
    let log = std::env::temp_dir().join(format!("coffer-wait-fail-{}.log", env.id));
    let _worker = Reaped(
        coffer(&env)
            .arg("worker")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
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
        .args(["--wait", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Reaped(enqueue.spawn()?);
    let status = wait_for_exit(&mut child, Duration::from_secs(60))?;
    let mut stdout = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut stdout)?;
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
