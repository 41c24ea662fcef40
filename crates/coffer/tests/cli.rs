//! The `coffer` binary as operators run it: a `coffer worker` process, `coffer enqueue backup`,
//! `coffer backups list`, `coffer restore start|plan|status`, and a SIGTERM that drains the
//! worker.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use coffer_core::JobId;
use coffer_testkit::{TEST_ORG_ID, TestEnv, start_sim};

use common::{Reaped, coffer, run_json, wait_for_backup, wait_for_exit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_and_a_worker_process_back_up_an_org_and_sigterm_drains_it() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(20, 2, 500).await?;
    sim.set_api_max(250_000);
    env.create_tenant("acme", "").await?;
    env.connect_org("acme", &sim).await?;
    env.broker().await?; // declare the topology so the enqueue below has somewhere to go
    let log_path = std::env::temp_dir().join(format!("coffer-worker-{}.log", env.id));
    let mut worker = Reaped(
        coffer(&env)
            .arg("worker")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()?,
    );

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

    let backup = wait_for_backup(&env, job, &log_path).await?;

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

    // `coffer status` shows the org's API usage as the worker last saw it: calls the org
    // counted (the backup's own, at most all of them) out of its daily allocation.
    let mut status = coffer(&env);
    status.args(["status", "--json"]);
    let seen = run_json(status)?;
    let usage = seen["api_usage"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["org_id"] == TEST_ORG_ID))
        .with_context(|| format!("the org's api usage in {seen}"))?;
    assert_eq!(usage["tenant"], "acme");
    let used = usage["used"].as_u64().context("used")?;
    assert!(
        used > 0 && used <= sim.api_calls(),
        "used {used} of the {} calls the org counted",
        sim.api_calls()
    );
    assert_eq!(usage["daily_max"], 250_000, "{usage}");
    assert_eq!(usage["paused_until"], serde_json::Value::Null);

    // A plan-only restore of one account and its children, waited for, then read back.
    let (header, rows) = sim.table("Account").context("accounts")?;
    let id_col = header.iter().position(|h| h == "Id").context("Id column")?;
    let account = rows[0][id_col].clone();
    let mut start = coffer(&env);
    start.args([
        "restore",
        "start",
        "--tenant",
        "acme",
        "--org",
        TEST_ORG_ID,
        "--backup",
        &backup.backup_id.to_string(),
        "--id",
        &account,
        "--children",
        "1",
        "--wait",
        "--json",
    ]);
    let planned = run_json(start)?;
    assert_eq!(planned["state"], "planned", "{planned}");
    assert_eq!(planned["mode"], "plan");
    // Nothing changed in the org since the backup: every record in scope (the account, its
    // child accounts, contacts, cases...) is to be kept as it is.
    let counts = planned["counts"].as_object().context("counts")?;
    assert!(
        counts.contains_key("Contact"),
        "children are in scope: {planned}"
    );
    for (object, outcomes) in counts {
        let outcomes = outcomes.as_object().context("outcomes")?;
        assert!(
            outcomes.keys().all(|k| k == "skip:pending"),
            "{object}: {outcomes:?}"
        );
    }
    let job = planned["job_id"].as_str().context("job id")?.to_owned();
    let mut plan = coffer(&env);
    plan.args(["restore", "plan", "--job", &job, "--json"]);
    let plan = run_json(plan)?;
    assert_eq!(plan["order"]["objects"][0], "Account", "{plan}");
    let mut status = coffer(&env);
    status.args(["restore", "status", "--job", &job, "--json"]);
    assert_eq!(run_json(status)?["restore_id"], planned["restore_id"]);

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
