//! `coffer schedule` and `coffer scheduler` as operators run them: bad expressions and zones are
//! refused by name; two scheduler processes publish each occurrence once, and when the leader is
//! killed the other carries on.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use coffer_catalog::OrgRecord;
use coffer_core::{JobId, OrgId, TenantId};
use coffer_proto::v1::job_envelope::Job;
use coffer_testkit::TestEnv;
use lapin::options::BasicGetOptions;
use secrecy::SecretString;
use time::OffsetDateTime;

use common::{Reaped, coffer, run_json, wait_for_exit};

const ORG_1: &str = "00D000000000001AAA";
const ORG_2: &str = "00D000000000002AAA";

async fn tenant_with_two_orgs(env: &TestEnv) -> anyhow::Result<()> {
    env.create_tenant("acme", "").await?;
    for org in [ORG_1, ORG_2] {
        env.catalog
            .put_org(&OrgRecord {
                tenant_id: TenantId::new("acme")?,
                org_id: OrgId::new(org)?,
                login_url: "http://127.0.0.1:1".to_owned(),
                client_id: "id".to_owned(),
                client_secret: SecretString::from("secret".to_owned()),
                api_version: "62.0".to_owned(),
            })
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_set_refuses_bad_expressions_and_zones_and_list_shows_utc_and_local()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    tenant_with_two_orgs(&env).await?;
    for (cron, tz, needle) in [
        (
            "61 * * * *",
            "UTC",
            "invalid cron expression \"61 * * * *\"",
        ),
        ("0 2 * * *", "Mars/Base", "unknown time zone \"Mars/Base\""),
    ] {
        let out = coffer(&env)
            .args([
                "schedule", "set", "--tenant", "acme", "--cron", cron, "--tz", tz,
            ])
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cron:?} {tz:?} accepted");
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}:\n{stderr}"
        );
    }

    let mut set = coffer(&env);
    set.args([
        "schedule",
        "set",
        "--tenant",
        "acme",
        "--org",
        ORG_1,
        "--cron",
        "30 2 * * *",
        "--tz",
        "Europe/Paris",
        "--kind",
        "incremental",
        "--json",
    ]);
    let created = run_json(set)?;
    let id = created["id"].as_u64().context("schedule id")?;
    let mut list = coffer(&env);
    list.args(["schedule", "list", "--tenant", "acme", "--json"]);
    let listed = run_json(list)?;
    let s = &listed["schedules"][0];
    assert_eq!(s["id"].as_u64(), Some(id));
    assert_eq!(s["kind"], "incremental");
    assert_eq!(s["org_id"], ORG_1);
    let utc = s["next_run_utc"].as_str().context("utc")?;
    let local = s["next_run_local"].as_str().context("local")?;
    assert!(utc.ends_with('Z'), "{utc}");
    // 02:30 in Paris, or 03:00 on the day the clocks skip 02:30.
    assert!(
        local.contains("T02:30:00+0") || local.contains("T03:00:00+02:00"),
        "{local}"
    );
    let out = coffer(&env)
        .args(["schedule", "remove", "--id", &id.to_string()])
        .output()?;
    assert!(out.status.success());
    let mut list = coffer(&env);
    list.args(["schedule", "list", "--tenant", "acme", "--json"]);
    assert_eq!(run_json(list)?["schedules"], serde_json::json!([]));
    env.cleanup().await
}

fn spawn_scheduler(env: &TestEnv, name: &str) -> anyhow::Result<(Reaped, std::path::PathBuf)> {
    let log = std::env::temp_dir().join(format!("coffer-scheduler-{}-{name}.log", env.id));
    let child = coffer(env)
        .args(["scheduler", "--tick", "200ms"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    Ok((Reaped(child), log))
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

const LEADING: &str = "scheduler leading";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_publish_each_occurrence_once_and_the_survivor_takes_over()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    tenant_with_two_orgs(&env).await?;
    let broker = env.broker().await?;
    // Every 2 seconds, for every org of the tenant.
    let mut set = coffer(&env);
    set.args([
        "schedule",
        "set",
        "--tenant",
        "acme",
        "--cron",
        "*/2 * * * * *",
        "--tz",
        "Europe/Paris",
        "--json",
    ]);
    let schedule_id = run_json(set)?["id"].as_u64().context("id")?;

    let (a, a_log) = spawn_scheduler(&env, "a")?;
    let (b, b_log) = spawn_scheduler(&env, "b")?;
    tokio::time::sleep(Duration::from_secs(8)).await;

    // One leader, and only it published.
    let (a_leads, b_leads) = (
        read(&a_log).contains(LEADING),
        read(&b_log).contains(LEADING),
    );
    if a_leads == b_leads {
        bail!(
            "expected exactly one leader; a:\n{}\nb:\n{}",
            read(&a_log),
            read(&b_log)
        );
    }
    let (mut leader, mut survivor, survivor_log) = if a_leads {
        (a, b, b_log.clone())
    } else {
        (b, a, a_log.clone())
    };
    assert!(
        !read(&survivor_log).contains("scheduled backup published"),
        "the follower published:\n{}",
        read(&survivor_log)
    );
    leader.kill()?; // SIGKILL: no goodbye, the lock goes with its connection
    leader.wait()?;
    let killed_at = OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        read(&survivor_log).contains(LEADING),
        "the survivor never took over:\n{}",
        read(&survivor_log)
    );
    assert!(
        Command::new("kill")
            .args(["-TERM", &survivor.id().to_string()])
            .status()?
            .success()
    );
    let stopped = wait_for_exit(&mut survivor, Duration::from_secs(20))?;
    assert!(stopped.success(), "survivor exit after sigterm: {stopped}");

    // What the broker holds, message by message.
    let depth = broker.queue_depth(broker.topology().jobs_queue()).await?;
    let conn =
        lapin::Connection::connect(&env.stack.amqp_url, lapin::ConnectionProperties::default())
            .await?;
    let channel = conn.create_channel().await?;
    let mut published: BTreeMap<JobId, (String, i64)> = BTreeMap::new();
    let mut messages = 0;
    while let Some(got) = channel
        .basic_get(
            broker.topology().jobs_queue().into(),
            BasicGetOptions { no_ack: true },
        )
        .await?
    {
        messages += 1;
        let envelope = coffer_proto::decode_job(&got.delivery.data)?;
        let Some(Job::BackupRequested(backup)) = envelope.job else {
            bail!("not a backup job: {envelope:?}");
        };
        assert_eq!(backup.tenant_id, "acme");
        let job: JobId = envelope.job_id.parse()?;
        let again = published.insert(job, (backup.org_id, envelope.requested_at_unix_ms));
        assert!(again.is_none(), "job {job} published twice");
    }
    assert_eq!(messages, depth as usize);

    let runs = env.catalog.schedule_runs(schedule_id).await?;
    let mut occurrences: BTreeMap<OffsetDateTime, BTreeSet<String>> = BTreeMap::new();
    let mut unpublished = 0;
    for (run, published_at) in &runs {
        occurrences
            .entry(run.occurrence_at)
            .or_default()
            .insert(run.org_id.to_string());
        match (published_at, published.get(&run.job_id)) {
            (Some(_), Some((org, at))) => {
                assert_eq!(org, run.org_id.as_str());
                assert_eq!(
                    *at as i128,
                    run.occurrence_at.unix_timestamp_nanos() / 1_000_000
                );
            }
            (Some(_), None) => bail!("run {} marked published but not on the queue", run.job_id),
            // Killed between the broker's confirm and the mark, or before publishing: at most
            // the runs of the occurrence the leader was working on.
            (None, _) => unpublished += 1,
        }
    }
    assert!(unpublished <= 2, "{unpublished} unpublished runs: {runs:?}");
    for job in published.keys() {
        assert!(
            runs.iter().any(|(r, _)| r.job_id == *job),
            "job {job} on the queue without a run row"
        );
    }
    // Every occurrence covers both orgs; the schedule kept firing before and after the kill
    // (every 2 s, over 8 s each side, less the takeover).
    for (at, orgs) in &occurrences {
        assert_eq!(orgs.len(), 2, "occurrence {at}: {orgs:?}");
        assert_eq!(at.second() % 2, 0, "occurrence {at} is not on the pattern");
    }
    let before = occurrences.keys().filter(|t| **t < killed_at).count();
    let after = occurrences.keys().filter(|t| **t > killed_at).count();
    assert!(
        before >= 2,
        "{before} occurrences before the kill: {occurrences:?}"
    );
    assert!(
        after >= 2,
        "{after} occurrences after the kill: {occurrences:?}"
    );
    // One run per occurrence, never a burst: no two occurrences closer than the pattern.
    let times: Vec<_> = occurrences.keys().collect();
    for pair in times.windows(2) {
        assert!(*pair[1] - *pair[0] >= time::Duration::seconds(2));
    }
    let log = read(&survivor_log);
    for field in ["\"tenant\":\"acme\"", "\"job_id\":", "\"org_id\":"] {
        assert!(log.contains(field), "survivor log lacks {field}:\n{log}");
    }
    for secret in ["guest:guest", "coffer:coffer"] {
        assert!(!log.contains(secret), "scheduler log leaks {secret:?}");
    }
    drop(conn);
    env.cleanup().await
}
