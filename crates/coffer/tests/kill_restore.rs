//! A restore survives its worker being killed: accounts with all their children are deleted
//! and purged, a `coffer worker` process restores them and is killed with SIGKILL at random
//! points, several times, each time replaced by a fresh process. The restore completes, and the
//! org ends as it was before the delete, as an uninterrupted restore leaves it: every record
//! back once, with its values and its links, under new ids. The seed of the kill points is
//! printed (`COFFER_KILL_SEED=...` replays it).
//!
//! The org has no restore key field, so every create that a kill cut between Salesforce's
//! commit and the catalog's is found again by its values; `with_the_restore_key_...` in the
//! restore tests covers the keyed path.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use coffer_catalog::{RecordState, RestoreRecord, RestoreState};
use coffer_core::JobId;
use coffer_testkit::org::{createable_fields, records_up_to_ids, snapshot};
use coffer_testkit::{TestEnv, start_sim};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use common::{Reaped, kill_seed, logs_of, wait_for_backup};

const KILLS: usize = 4;

fn spawn_worker(env: &TestEnv, n: usize) -> anyhow::Result<(Reaped, std::path::PathBuf)> {
    common::spawn_worker(env, "kill-restore", n, &[])
}

async fn restore_of(env: &TestEnv, job: JobId) -> anyhow::Result<Option<RestoreRecord>> {
    Ok(env.catalog.restore_of_job(job).await?)
}

/// Waits until the restore's plan is stored (its writes start right after).
async fn wait_for_plan(env: &TestEnv, job: JobId) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let restore = restore_of(env, job).await?;
        if restore.is_some_and(|r| r.plan_json.is_some()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the restore was not planned within a minute");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_killed_at_random_points_ends_as_an_uninterrupted_one() -> anyhow::Result<()> {
    let seed = kill_seed()?;
    let mut rng = StdRng::seed_from_u64(seed);

    let env = TestEnv::new().await?;
    let sim = start_sim(24, 3, 40).await?;
    env.create_tenant("acme", "").await?;
    env.connect_org("acme", &sim).await?;
    env.broker().await?;
    let (mut worker, log) = spawn_worker(&env, 0)?;
    let mut logs = vec![log];

    let job = common::enqueue_backup(&env, "acme")?;
    let backup = wait_for_backup(&env, job, &logs[0]).await?;
    let before = snapshot(&sim);

    // Eight accounts are deleted with everything their delete takes, and purged.
    let accounts: Vec<String> = {
        let mut ids: Vec<&String> = before
            .iter()
            .filter(|(_, (sobject, _))| sobject == "Account")
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        ids.into_iter().step_by(3).take(8).cloned().collect()
    };
    let doomed: Vec<&str> = accounts.iter().map(String::as_str).collect();
    sim.delete("Account", &doomed)?;
    let gone = before.len() - snapshot(&sim).len();
    assert!(sim.empty_recycle_bin() > 0);
    // Each write takes a while, so kills land in the middle of the restore, before or after
    // Salesforce commits a write.
    sim.slow_writes(Duration::from_millis(300));

    let job = common::start_restore(&env, backup.backup_id, &accounts)?;

    // The first kill lands anywhere (planning, most likely); the others while records are
    // being written, once the plan is stored.
    let mut kills = 0;
    let mut spawned = 1;
    while kills < KILLS {
        if kills > 0 {
            wait_for_plan(&env, job).await?;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..1_200))).await;
        if restore_of(&env, job)
            .await?
            .is_some_and(|r| r.state == RestoreState::Complete)
        {
            break;
        }
        worker.kill()?;
        worker.wait()?;
        kills += 1;
        let (child, log) = spawn_worker(&env, spawned)?;
        spawned += 1;
        worker = child;
        logs.push(log);
    }
    let written = env
        .catalog
        .restore_counts(&restore_of(&env, job).await?.context("restore")?.restore_id)
        .await?;
    eprintln!("killed {kills} worker processes; at the last kill: {written:?}");
    assert!(
        kills >= 2,
        "the restore ended before two kills (seed {seed})"
    );

    let deadline = Instant::now() + Duration::from_secs(240);
    let restore = loop {
        match restore_of(&env, job).await? {
            Some(r) if r.state == RestoreState::Complete => break r,
            Some(r) if r.state == RestoreState::Failed => {
                bail!(
                    "restore failed (seed {seed}): {:?}\n{}",
                    r.error,
                    logs_of(&logs)
                )
            }
            _ if Instant::now() > deadline => {
                bail!(
                    "no complete restore (seed {seed}); logs:\n{}",
                    logs_of(&logs)
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    drop(worker);

    // Every record of the restore written, none failed or left behind.
    let rows = env
        .catalog
        .restore_rows(&restore.restore_id, None, None)
        .await?;
    assert!(
        rows.len() >= gone,
        "{} rows for {gone} records gone",
        rows.len()
    );
    let unwritten: Vec<_> = rows
        .iter()
        .filter(|r| !matches!(r.state, RecordState::Written | RecordState::Linked))
        .map(|r| (&r.sobject, &r.source_id, r.state, &r.error))
        .collect();
    assert!(unwritten.is_empty(), "seed {seed}: {unwritten:?}");

    // The org holds what it held before the delete: the same records, values and links, each
    // once (a create repeated after a kill would show as a record too many).
    let old_id: HashMap<String, String> = rows
        .iter()
        .filter_map(|r| Some((r.target_id.clone()?, r.source_id.clone())))
        .collect();
    let compared = createable_fields(&env.catalog, backup.backup_id).await?;
    let want = records_up_to_ids(&before, &compared, &[], &HashMap::new());
    let got = records_up_to_ids(&snapshot(&sim), &compared, &[], &old_id);
    let (want_set, got_set): (BTreeSet<_>, BTreeSet<_>) =
        (want.iter().collect(), got.iter().collect());
    let missing: Vec<_> = want_set.difference(&got_set).take(5).collect();
    let extra: Vec<_> = got_set.difference(&want_set).take(5).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "seed {seed}: record count; missing {missing:?}, extra {extra:?}"
    );
    assert!(
        got == want,
        "seed {seed}: the org differs; missing {missing:?}, extra {extra:?}"
    );
    sim.shutdown().await;
    env.cleanup().await
}
