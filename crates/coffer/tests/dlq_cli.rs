//! `coffer dlq` as an operator works the dead-letter queue: a tenant's backups fail while its
//! connected app's secret is wrong, and a malformed message from elsewhere is dead-lettered
//! too. `list` shows both with their reasons and leaves them; once the secret is fixed,
//! `replay --tenant` sends back that tenant's job alone, which a worker then completes, and
//! the malformed message stays, refused by `replay --all` because it is not a job.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use coffer_catalog::{BackupState, Sse};
use coffer_testkit::{TestEnv, start_sim};
use secrecy::SecretString;

use common::{coffer, logs_of, run_json};

fn dlq(env: &TestEnv, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut cmd = coffer(env);
    cmd.arg("dlq").args(args).arg("--json");
    run_json(cmd)
}

/// Waits until the test's dead-letter queue holds `n` messages.
async fn wait_for_dead_letters(env: &TestEnv, n: u32, log: &std::path::Path) -> anyhow::Result<()> {
    let broker = env.broker().await?;
    let dlq = broker.topology().dead_letter_queue().to_owned();
    let deadline = Instant::now() + Duration::from_secs(90);
    while broker.queue_depth(&dlq).await? < n {
        if Instant::now() > deadline {
            bail!(
                "fewer than {n} dead letters; worker log:\n{}",
                logs_of(&[log.to_path_buf()])
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn letter_of<'a>(letters: &'a serde_json::Value, job: &str) -> Option<&'a serde_json::Value> {
    letters.as_array()?.iter().find(|l| l["job_id"] == job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_tenants_dead_letter_is_replayed_alone_and_its_backup_completes()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(30, 2, 50).await?;
    env.create_tenant_with("acme", "", Sse::S3).await?;
    let mut org = env.connect_org("acme", &sim).await?;
    org.client_secret = SecretString::from("rotated-and-not-updated".to_owned());
    env.catalog.put_org(&org).await?;
    let broker = env.broker().await?;
    broker
        .publisher()
        .await?
        .publish_raw_job(b"not a job envelope")
        .await?;

    let (_worker, log) = common::spawn_worker(&env, "dlq", 0, &[])?;
    let job = common::enqueue_backup(&env, "acme")?;
    let job_id = job.to_string();
    wait_for_dead_letters(&env, 2, &log).await?;

    // list: both letters, with what an operator needs to decide, and nothing taken
    let listed = dlq(&env, &["list"])?;
    let letter = letter_of(&listed["letters"], &job_id).context("acme's letter listed")?;
    assert_eq!(letter["tenant"], "acme");
    assert_eq!(letter["kind"], "backup_requested");
    assert_eq!(letter["class"], "permanent");
    let reason = letter["reason"].as_str().context("reason")?;
    assert!(
        reason.contains("invalid_client"),
        "reason names the refusal: {reason}"
    );
    let malformed = listed["letters"]
        .as_array()
        .context("letters")?
        .iter()
        .find(|l| l["job_id"].is_null())
        .with_context(|| format!("the malformed letter is listed: {listed}"))?;
    assert_eq!(malformed["class"], "permanent");
    let only_acme = dlq(&env, &["list", "--tenant", "acme"])?;
    assert_eq!(only_acme["letters"].as_array().map(Vec::len), Some(1));
    let dlq_name = broker.topology().dead_letter_queue().to_owned();
    assert_eq!(
        broker.queue_depth(&dlq_name).await?,
        2,
        "list takes nothing"
    );
    let failed = env
        .catalog
        .backup_of_job(job)
        .await?
        .context("backup row")?;
    assert_eq!(failed.state, BackupState::Failed);

    // replay without a choice is refused, naming the choices
    let out = coffer(&env).args(["dlq", "replay"]).output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tenant") && err.contains("--all"), "{err}");

    // the secret is fixed; acme's job alone goes back and completes
    env.connect_org("acme", &sim).await?;
    let replayed = dlq(&env, &["replay", "--tenant", "acme"])?;
    let ids: Vec<&str> = replayed["replayed"]
        .as_array()
        .context("replayed")?
        .iter()
        .filter_map(|l| l["job_id"].as_str())
        .collect();
    assert_eq!(ids, [job_id.as_str()]);
    assert_eq!(replayed["kept"], 1);
    // the backup stays failed until the worker takes the replayed job and revives it
    let deadline = Instant::now() + Duration::from_secs(120);
    let backup = loop {
        let backup = env
            .catalog
            .backup_of_job(job)
            .await?
            .context("backup row")?;
        if backup.state == BackupState::Complete {
            break backup;
        }
        if Instant::now() > deadline {
            bail!(
                "backup {:?} after the replay; worker log:\n{}",
                backup.state,
                logs_of(&[log])
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        backup.backup_id, failed.backup_id,
        "the failed backup is the one completed"
    );
    common::assert_backup_holds_the_org(&env, &sim, &backup).await?;

    // the malformed letter stays: it is not a job, so --all does not replay it
    let all = dlq(&env, &["replay", "--all"])?;
    assert_eq!(all["replayed"].as_array().map(Vec::len), Some(0));
    assert_eq!(all["not_replayable"].as_array().map(Vec::len), Some(1));
    assert_eq!(broker.queue_depth(&dlq_name).await?, 1);
    let left = dlq(&env, &["list"])?;
    assert_eq!(left["letters"].as_array().map(Vec::len), Some(1));
    assert!(left["letters"][0]["job_id"].is_null());
    assert_eq!(
        broker.queue_depth(broker.topology().jobs_queue()).await?,
        0,
        "no job left waiting"
    );
    drop(broker);
    env.cleanup().await
}
