//! Graceful shutdown of a worker: on SIGTERM it stops taking jobs and gives the one in flight
//! the drain timeout. Past it the job is left unacked, so the broker hands it to another worker,
//! which takes the task over once the stopped worker's lease has run out; within it the worker
//! finishes the task and acks it before it exits. Either way the backup holds every record of
//! the org exactly once, the bucket agrees with the catalog, and no job is left in a queue or
//! dead-lettered.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use coffer_catalog::{BackupState, Sse};
use coffer_core::JobId;
use coffer_testkit::{TestEnv, start_sim};

use common::{Reaped, logs_of, wait_for_exit};

/// A worker with a short lease (so a takeover is quick) and the given drain timeout.
fn worker(env: &TestEnv, n: usize, drain: &str) -> anyhow::Result<(Reaped, std::path::PathBuf)> {
    let vars = [
        ("COFFER_TASK_LEASE", "3s"),
        ("COFFER_DRAIN_TIMEOUT", drain),
        ("COFFER_MAX_PART_BYTES", "4096"),
    ];
    common::spawn_worker(env, "sigterm", n, &vars)
}

/// Waits until the worker with process id `pid` holds the lease of an unfinished task of the
/// backup of `job`; returns that task's number.
async fn task_held_by(env: &TestEnv, job: JobId, pid: u32) -> anyhow::Result<u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(backup) = env.catalog.backup_of_job(job).await? {
            let held: Option<(u32,)> = sqlx::query_as(
                "SELECT task_no FROM backup_tasks WHERE backup_id = ? AND state = 'running' \
                 AND lease_owner LIKE ? AND lease_until > CURRENT_TIMESTAMP(6) LIMIT 1",
            )
            .bind(backup.backup_id.to_string())
            .bind(format!("%:{pid}/%"))
            .fetch_optional(env.catalog.pool())
            .await?;
            if let Some((task_no,)) = held {
                return Ok(task_no);
            }
        }
        if Instant::now() > deadline {
            bail!("worker {pid} never held a task");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The task's state and attempts.
async fn task_state(env: &TestEnv, job: JobId, task_no: u32) -> anyhow::Result<(String, u32)> {
    let backup = env
        .catalog
        .backup_of_job(job)
        .await?
        .context("backup of the job")?;
    Ok(sqlx::query_as(
        "SELECT state, attempts FROM backup_tasks WHERE backup_id = ? AND task_no = ?",
    )
    .bind(backup.backup_id.to_string())
    .bind(task_no)
    .fetch_one(env.catalog.pool())
    .await?)
}

fn sigterm(child: &Reaped) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    Ok(())
}

/// A slow org: one page of 10 rows every 250 ms, so a task runs for seconds.
async fn slow_org(env: &TestEnv) -> anyhow::Result<coffer_sfsim::SimHandle> {
    let sim = start_sim(40, 4, 10).await?;
    sim.slow_pages(Duration::from_millis(250));
    env.create_tenant_with("acme", "", Sse::S3).await?;
    env.connect_org("acme", &sim).await?;
    env.broker().await?;
    Ok(sim)
}

/// The backup completed once and holds the org; no job waits in a queue or the DLQ.
async fn assert_completed_once(
    env: &TestEnv,
    sim: &coffer_sfsim::SimHandle,
    job: JobId,
    logs: &[std::path::PathBuf],
) -> anyhow::Result<()> {
    let backup = match env.wait_for_backup(job, Duration::from_secs(180)).await {
        Ok(b) => b,
        Err(e) => bail!("{e:#}; logs:\n{}", logs_of(logs)),
    };
    assert_eq!(backup.state, BackupState::Complete);
    assert!(
        env.catalog
            .tasks(backup.backup_id)
            .await?
            .iter()
            .all(|t| t.done),
        "every task done"
    );
    common::assert_backup_holds_the_org(env, sim, &backup).await?;
    let broker = env.broker().await?;
    let topology = broker.topology();
    let (jobs, dlq) = (
        topology.jobs_queue().to_owned(),
        topology.dead_letter_queue().to_owned(),
    );
    assert_eq!(broker.queue_depth(&dlq).await?, 0, "nothing dead-lettered");
    assert_eq!(broker.queue_depth(&jobs).await?, 0, "no job left waiting");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_cut_by_sigterm_is_completed_by_another_worker() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = slow_org(&env).await?;
    let (mut stopping, log_a) = worker(&env, 0, "1s")?;
    let job = common::enqueue_backup(&env, "acme")?;
    let task_no = task_held_by(&env, job, stopping.id()).await?;

    let (mut other, log_b) = worker(&env, 1, "30s")?;
    let logs = [log_a.clone(), log_b];
    sigterm(&stopping)?;
    let status = wait_for_exit(&mut stopping, Duration::from_secs(30))?;
    assert!(status.success(), "stopped worker exited with {status}");
    let stopped_log = std::fs::read_to_string(&log_a)?;
    assert!(
        stopped_log.contains("leaving unfinished jobs unacked"),
        "the worker gave its task back:\n{stopped_log}"
    );
    let (state, _) = task_state(&env, job, task_no).await?;
    assert_ne!(
        state, "done",
        "the cut task was not recorded done by the stopped worker"
    );

    assert_completed_once(&env, &sim, job, &logs).await?;
    let (state, attempts) = task_state(&env, job, task_no).await?;
    assert_eq!(state, "done");
    assert_eq!(
        attempts, 2,
        "the cut task ran once more, on the other worker"
    );
    sigterm(&other)?;
    assert!(wait_for_exit(&mut other, Duration::from_secs(60))?.success());
    sim.shutdown().await;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_the_drain_timeout_the_task_is_finished_and_acked_before_exit() -> anyhow::Result<()>
{
    let env = TestEnv::new().await?;
    let sim = slow_org(&env).await?;
    let (mut stopping, log_a) = worker(&env, 0, "120s")?;
    let job = common::enqueue_backup(&env, "acme")?;
    let task_no = task_held_by(&env, job, stopping.id()).await?;
    sigterm(&stopping)?;
    let status = wait_for_exit(&mut stopping, Duration::from_secs(150))?;
    assert!(status.success(), "stopped worker exited with {status}");
    // It finished the task it held, and took no other after the signal.
    let (state, attempts) = task_state(&env, job, task_no).await?;
    assert_eq!(
        (state.as_str(), attempts),
        ("done", 1),
        "the task in flight was finished by the stopping worker, once"
    );
    let backup = env.catalog.backup_of_job(job).await?.context("backup")?;
    let done = env
        .catalog
        .tasks(backup.backup_id)
        .await?
        .iter()
        .filter(|t| t.done)
        .count();
    assert!(done >= 1);

    // The rest is done by a worker started afterwards; the finished task is not run again.
    let (mut other, log_b) = worker(&env, 1, "30s")?;
    assert_completed_once(&env, &sim, job, &[log_a, log_b]).await?;
    let (_, attempts) = task_state(&env, job, task_no).await?;
    assert_eq!(attempts, 1, "the acked task was not delivered again");
    sigterm(&other)?;
    assert!(wait_for_exit(&mut other, Duration::from_secs(60))?.success());
    sim.shutdown().await;
    env.cleanup().await
}
