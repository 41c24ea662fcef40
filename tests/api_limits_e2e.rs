//! Salesforce API limits through the real queue, bucket and catalog: an org whose allowance is
//! used up (Salesforce's `403 REQUEST_LIMIT_EXCEEDED`, or the share of its daily allocation the
//! vendor lets Coffer use) is paused, not retried: its jobs wait in the parked queue without a
//! call to Salesforce and without using up attempts, and the backup completes once calls free up.

use std::time::Duration;

use coffer_catalog::BackupState;
use coffer_core::{OrgId, TenantId};
use coffer_e2e::*;
use coffer_sfsim::SimHandle;
use coffer_testkit::{TEST_ORG_ID, TestEnv, start_sim};
use coffer_worker::WorkerSettings;

const WAIT: Duration = Duration::from_secs(120);
const ORG_PAUSE: Duration = Duration::from_secs(2);

async fn env_with_fast_parking() -> anyhow::Result<TestEnv> {
    let mut env = TestEnv::new().await?;
    env.queue.park_delay = Duration::from_millis(300);
    Ok(env)
}

fn settings(env: &TestEnv) -> WorkerSettings {
    WorkerSettings {
        org_pause: ORG_PAUSE,
        ..small_part_settings(env)
    }
}

fn ids() -> anyhow::Result<(TenantId, OrgId)> {
    Ok((TenantId::new("acme")?, OrgId::new(TEST_ORG_ID)?))
}

/// Rows of every object the org has, as the backup must hold them.
fn org_row_count(sim: &SimHandle) -> u64 {
    sim.sobjects()
        .iter()
        .filter_map(|name| sim.table(name))
        .map(|(_, rows)| rows.len() as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_out_of_api_calls_is_paused_not_retried_and_backed_up_once_calls_free_up()
-> anyhow::Result<()> {
    let env = env_with_fast_parking().await?;
    let sim = start_sim(20, 2, 25).await?;
    env.create_tenant("acme", "coffer").await?;
    env.connect_org("acme", &sim).await?;
    let (tenant, org) = ids()?;
    sim.exhaust_api_limit(true);
    let worker = start_worker(&env, settings(&env)).await?;
    let broker = env.broker().await?;

    let job = request_backup(&broker, "acme", TEST_ORG_ID).await?;
    let pause = eventually("the org to be paused", WAIT, || async {
        Ok(env.catalog.org_pause(&tenant, &org).await?)
    })
    .await?;
    assert!(
        pause.reason.contains("REQUEST_LIMIT_EXCEEDED") || pause.reason.contains("limit"),
        "{}",
        pause.reason
    );

    // While paused: the job comes back from the parked queue every 300 ms and is deferred
    // again without a single call to Salesforce.
    let calls = sim.api_calls();
    tokio::time::sleep(ORG_PAUSE / 2).await;
    assert_eq!(sim.api_calls(), calls, "a paused org was called");
    let record = env.catalog.job(job).await?.expect("job row");
    assert!(
        record
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("paused until"),
        "{:?}",
        record.last_error
    );

    // The window frees calls: once the pause ends, the backup runs and completes.
    sim.exhaust_api_limit(false);
    let backup = wait_for_backup(&env, job, WAIT).await?;
    worker.stop().await;
    assert_eq!(backup.state, BackupState::Complete);
    assert_eq!(backup.record_count, org_row_count(&sim));
    assert!(
        broker.get_dead_letter().await?.is_none(),
        "a paused job was dead-lettered"
    );
    assert_eq!(env.catalog.org_pause(&tenant, &org).await?, None);
    sim.shutdown().await;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_stops_at_its_share_of_the_daily_allocation_and_finishes_after_the_pause()
-> anyhow::Result<()> {
    // How many calls a whole backup of this org takes, on an org of its own.
    let calls_for_a_backup = {
        let env = env_with_fast_parking().await?;
        let sim = start_sim(20, 2, 25).await?;
        env.create_tenant("acme", "coffer").await?;
        env.connect_org("acme", &sim).await?;
        let worker = start_worker(&env, settings(&env)).await?;
        let job = request_backup(&env.broker().await?, "acme", TEST_ORG_ID).await?;
        wait_for_backup(&env, job, WAIT).await?;
        worker.stop().await;
        let calls = sim.api_calls();
        sim.shutdown().await;
        env.cleanup().await?;
        calls
    };

    // The same org with an allocation whose 80 % covers about half a backup.
    let env = env_with_fast_parking().await?;
    let sim = start_sim(20, 2, 25).await?;
    env.create_tenant("acme", "coffer").await?;
    env.connect_org("acme", &sim).await?;
    let (tenant, org) = ids()?;
    let max = (calls_for_a_backup as f64 / 2.0 / 0.8).ceil() as u64;
    sim.set_api_max(max);
    let worker = start_worker(&env, settings(&env)).await?;
    let broker = env.broker().await?;
    let job = request_backup(&broker, "acme", TEST_ORG_ID).await?;
    let pause = eventually("the org to be paused", WAIT, || async {
        Ok(env.catalog.org_pause(&tenant, &org).await?)
    })
    .await?;
    assert!(pause.reason.contains("budget"), "{}", pause.reason);
    tokio::time::sleep(ORG_PAUSE / 2).await;
    let used = sim.api_calls();
    assert!(
        used < max,
        "coffer used {used} of {max} calls, past its 80 % share"
    );
    let backup = env.catalog.backup_of_job(job).await?.expect("backup row");
    let counts = env.catalog.task_counts(backup.backup_id).await?;
    assert!(
        counts.done > 0 && counts.done < counts.total,
        "expected the backup to stop part-way, {} of {} tasks done",
        counts.done,
        counts.total
    );

    // The rolling window frees calls: the backup finishes where it stopped.
    sim.set_api_max(1_000_000);
    let backup = wait_for_backup(&env, job, WAIT).await?;
    worker.stop().await;
    assert_eq!(backup.record_count, org_row_count(&sim));
    assert!(broker.get_dead_letter().await?.is_none());
    sim.shutdown().await;
    env.cleanup().await
}
