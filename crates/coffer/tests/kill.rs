//! A backup survives its workers being killed: two `coffer worker` processes share a backup and
//! are killed with SIGKILL at random points, several times, each replaced by a fresh process.
//! The backup still completes, and the bucket holds exactly what the catalog says: every record
//! of the org once, no object the catalog does not know, no multipart upload left open. The
//! seed of the random kill points is printed, so a failure can be replayed
//! (`COFFER_KILL_SEED=...`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use coffer_catalog::{BackupRecord, BackupState};
use coffer_core::JobId;
use coffer_testkit::{TestEnv, start_sim};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use common::{Reaped, kill_seed, logs_of, wait_for_exit};

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
    let job = common::enqueue_backup(&env, "acme")?;

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

    common::assert_backup_holds_the_org(&env, &sim, &backup)
        .await
        .with_context(|| format!("seed {seed}"))?;

    sim.shutdown().await;
    env.cleanup().await
}
