//! The `coffer` binary as operators run it: a `coffer worker` process, `coffer enqueue backup`,
//! `coffer backups list`, and a SIGTERM that drains the worker.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use coffer_catalog::BackupState;
use coffer_core::JobId;
use coffer_testkit::{TEST_ORG_ID, TestEnv, start_sim};
use secrecy::ExposeSecret;

fn coffer(env: &TestEnv) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.env("COFFER_DATABASE_URL", env.database_url.expose_secret())
        .env("COFFER_AMQP_URL", &env.stack.amqp_url)
        .env("COFFER_S3_ENDPOINT", &env.stack.s3_endpoint)
        .env("AWS_REGION", &env.stack.region)
        .env("COFFER_QUEUE_PREFIX", &env.queue.prefix)
        .env("COFFER_LOG_FORMAT", "json")
        .env_remove("RUST_LOG");
    cmd
}

fn run_json(mut cmd: Command) -> anyhow::Result<serde_json::Value> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_and_a_worker_process_back_up_an_org_and_sigterm_drains_it() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(20, 2, 500).await?;
    env.create_tenant("acme", "").await?;
    env.connect_org("acme", &sim).await?;
    env.broker().await?; // declare the topology so the enqueue below has somewhere to go
    let log_path = std::env::temp_dir().join(format!("coffer-worker-{}.log", env.id));
    let mut worker = coffer(&env)
        .arg("worker")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()?;

    let mut enqueue = coffer(&env);
    enqueue.args(["enqueue", "backup", "--tenant", "acme", "--json"]);
    let enqueued = run_json(enqueue)?;
    let job: JobId = enqueued["jobs"][0]["job_id"]
        .as_str()
        .context("job id")?
        .parse()?;
    assert_eq!(
        enqueued["jobs"][0]["org_id"], TEST_ORG_ID,
        "one job for the tenant's one org"
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    let backup = loop {
        if let Some(b) = env.catalog.backup_of_job(job).await?
            && b.state == BackupState::Complete
        {
            break b;
        }
        if Instant::now() > deadline {
            bail!(
                "no complete backup; worker log:\n{}",
                std::fs::read_to_string(&log_path)?
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let mut list = coffer(&env);
    list.args([
        "backups",
        "list",
        "--tenant",
        "acme",
        "--org",
        TEST_ORG_ID,
        "--json",
    ]);
    let listed = run_json(list)?;
    assert_eq!(
        listed["backups"][0]["backup_id"],
        backup.backup_id.to_string()
    );
    assert_eq!(listed["backups"][0]["state"], "complete");
    assert_eq!(listed["backups"][0]["records"], backup.record_count);

    let pid = worker.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()?
            .success()
    );
    let stopped = wait_for_exit(&mut worker, Duration::from_secs(30))?;
    assert!(
        stopped.success(),
        "worker exit status after sigterm: {stopped}"
    );

    let log = std::fs::read_to_string(&log_path)?;
    assert!(
        log.contains("backup complete"),
        "worker log lacks the completion line:\n{log}"
    );
    for secret in ["sfsim-client-secret", "guest:guest", "coffer:coffer"] {
        assert!(!log.contains(secret), "worker log leaks {secret:?}");
    }
    sim.shutdown().await;
    env.cleanup().await
}

fn wait_for_exit(
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
