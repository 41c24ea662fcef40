//! A sweep survives its janitor being killed: a `coffer janitor run` process deleting a
//! back-dated history is killed with SIGKILL at random points after its first deletion
//! started (or, later, after it finished one), several times; the next run finishes, and the bucket and the catalog agree: only
//! the kept backup and the bodies it references are left, every deleted backup is recorded as
//! deleted, no upload is left open, and backups of the org can start again (the files fence
//! a killed janitor held is taken over and lifted). The seed of the kill points is printed
//! (`COFFER_KILL_SEED=...` replays it).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use coffer_core::retention::Policy;
use coffer_core::sweep::MarkStage;
use coffer_core::{JobId, OrgId, TenantId};
use coffer_testkit::{TestEnv, consistency, history};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use common::{Reaped, coffer, kill_seed, run_json};

const KILLS: usize = 4;
const BACKUPS: usize = 20;

fn janitor(env: &TestEnv, n: usize) -> anyhow::Result<(Reaped, std::path::PathBuf)> {
    let log = std::env::temp_dir().join(format!("coffer-kill-janitor-{}-{n}.log", env.id));
    let mut cmd = coffer(env);
    cmd.args([
        "janitor",
        "run",
        "--tenant",
        "acme",
        "--grace",
        "0",
        "--stale-upload-age",
        "0",
    ])
    .args(["--delete-in-flight", "1"])
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(&log)?);
    Ok((Reaped(cmd.spawn()?), log))
}

/// How far the sweeps got: backups whose deletion started, and backups deleted.
async fn progress(env: &TestEnv) -> anyhow::Result<(usize, usize)> {
    let marks = env.catalog.retention_marks(&TenantId::new("acme")?).await?;
    let count = |stage: MarkStage| marks.iter().filter(|m| m.stage == stage).count();
    let deleted = count(MarkStage::Deleted);
    Ok((count(MarkStage::Deleting) + deleted, deleted))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_janitor_killed_at_random_points_is_finished_by_the_next_run() -> anyhow::Result<()> {
    let seed = kill_seed()?;
    let mut rng = StdRng::seed_from_u64(seed);
    let env = TestEnv::new().await?;
    let tenant = TenantId::new("acme")?;
    let org = OrgId::new("00D000000000042AAA")?;
    env.create_tenant("acme", "coffer").await?;
    common::offline_org(&env, &tenant, &org).await?;

    // Twenty daily backups; each references two bodies of its own and one shared by all.
    let shared = history::body(&env, &tenant, &org, 0).await?;
    let mut backups = Vec::new();
    let mut bodies_of_newest = BTreeSet::new();
    for day in (0..BACKUPS).rev() {
        let own = [
            history::body(&env, &tenant, &org, 2 * day + 1).await?,
            history::body(&env, &tenant, &org, 2 * day + 2).await?,
        ];
        let bodies = [own[0].clone(), own[1].clone(), shared.clone()];
        backups.push(history::backup(&env, &tenant, &org, 200, 1000, &bodies, day as u32).await?);
        if day == 0 {
            bodies_of_newest = bodies.into_iter().collect();
        }
    }
    let newest = *backups.last().expect("backups");
    let (_, prefix) = history::place(&env, &tenant, &org).await?;
    env.s3_client
        .create_multipart_upload()
        .bucket(&env.bucket)
        .key(format!(
            "{}records/Contact/part-00001.csv.gz",
            prefix.backup_prefix(&backups[0])
        ))
        .send()
        .await?;
    env.catalog
        .put_retention_policy(
            &tenant,
            None,
            &Policy {
                keep_last: Some(1),
                ..Policy::default()
            },
        )
        .await?;

    let mut logs = Vec::new();
    let mut interrupted = 0;
    for n in 0..KILLS {
        // Killed once this run has made progress (started deletions, or finished one), at a
        // random point after that.
        let before = progress(&env).await?;
        let (mut child, log) = janitor(&env, n)?;
        logs.push(log);
        let deadline = Instant::now() + Duration::from_secs(60);
        let moved = |now: (usize, usize)| now.0 > before.0 || now.1 > before.1;
        while !moved(progress(&env).await?) && child.try_wait()?.is_none() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the janitor never started deleting"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..250))).await;
        if child.try_wait()?.is_none() {
            child.kill()?;
            child.wait()?;
            interrupted += 1;
        }
    }
    eprintln!("{interrupted} of {KILLS} kills interrupted a sweep");
    assert!(
        interrupted > 0,
        "no kill landed during a sweep; logs:\n{}",
        common::logs_of(&logs)
    );

    let mut last = coffer(&env);
    last.args([
        "janitor",
        "run",
        "--tenant",
        "acme",
        "--grace",
        "0",
        "--stale-upload-age",
        "0",
        "--json",
    ]);
    let report = run_json(last)?;
    assert_eq!(
        report["failures"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );

    let left: Vec<_> = env.catalog.backups_of(&tenant, &org).await?;
    assert_eq!(
        left.iter().map(|b| b.backup_id).collect::<Vec<_>>(),
        vec![newest]
    );
    let marks = env.catalog.retention_marks(&tenant).await?;
    assert_eq!(marks.len(), BACKUPS - 1);
    assert!(
        marks.iter().all(|m| m.stage == MarkStage::Deleted),
        "{marks:#?}"
    );
    let (storage_id, _) = history::place(&env, &tenant, &org).await?;
    let bodies: BTreeSet<String> = env
        .catalog
        .file_shas(&tenant, &org, storage_id)
        .await?
        .into_iter()
        .collect();
    assert_eq!(
        bodies, bodies_of_newest,
        "only the kept backup's bodies are left"
    );
    let problems = consistency::problems(
        &env.catalog,
        &env.s3_client,
        &env.bucket,
        &coffer_core::layout::BasePath::new("coffer")?,
        &tenant,
        &org,
    )
    .await?;
    assert!(
        problems.is_empty(),
        "bucket and catalog disagree (seed {seed}): {problems:#?}"
    );
    env.catalog
        .begin_backup(JobId::generate(), &tenant, &org, storage_id, "full")
        .await?;
    env.cleanup().await?;
    Ok(())
}
