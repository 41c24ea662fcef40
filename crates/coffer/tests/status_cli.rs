//! `coffer status` as an operator reads it: the queues of the deployment's prefix with their
//! messages and consumers, the worker consuming them, and a running backup with its progress
//! and the worker holding its task.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use coffer_catalog::Sse;
use coffer_core::JobId;
use coffer_queue::{Broker, QueueConfig};
use coffer_testkit::{TEST_ORG_ID, TestEnv};
use secrecy::SecretString;

use common::{Reaped, coffer, run_json};

fn status(env: &TestEnv) -> anyhow::Result<serde_json::Value> {
    let mut cmd = coffer(env);
    cmd.args(["status", "--json"]);
    run_json(cmd)
}

/// The queue of `role` in a status.
fn queue<'a>(status: &'a serde_json::Value, role: &str) -> anyhow::Result<&'a serde_json::Value> {
    status["queues"]
        .as_array()
        .context("queues")?
        .iter()
        .find(|q| q["role"] == role)
        .with_context(|| format!("no {role} queue in {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_queued_jobs_consumers_dead_letters_and_a_running_backup() -> anyhow::Result<()>
{
    let env = TestEnv::new().await?;
    // The topology as `coffer` itself declares it (production retry delays), under the test's
    // prefix; three jobs no worker can read wait in it.
    let production = QueueConfig {
        prefix: env.queue.prefix.clone(),
        ..QueueConfig::new(SecretString::from(env.stack.amqp_url.clone()))
    };
    let broker = Broker::connect(&production).await?;
    broker.declare_topology().await?;
    let publisher = broker.publisher().await?;
    for _ in 0..3 {
        publisher.publish_raw_job(b"not a job envelope").await?;
    }

    // A backup with one of its two tasks done (42 records) and the other held by a worker.
    let tenant = env.create_tenant_with("acme", "", Sse::S3).await?;
    let (tenant_id, org) = (tenant.tenant_id.clone(), TEST_ORG_ID.parse()?);
    let job = JobId::generate();
    let backup = env
        .catalog
        .begin_backup(job, &tenant_id, &org, tenant.storage.storage_id, "full")
        .await?;
    let plan = vec![
        ("Account".to_owned(), "{}".to_owned()),
        ("Contact".to_owned(), "{}".to_owned()),
    ];
    env.catalog.plan_tasks(backup.backup_id, &plan).await?;
    let lease = Duration::from_secs(120);
    env.catalog
        .acquire_task(backup.backup_id, 1, "node-7:41/a", lease)
        .await?;
    env.catalog
        .complete_task(backup.backup_id, 1, "node-7:41/a", (1, 42), None)
        .await?;
    env.catalog
        .acquire_task(backup.backup_id, 2, "node-7:41/b", lease)
        .await?;

    let seen = status(&env)?;
    let jobs = queue(&seen, "jobs")?;
    assert_eq!(jobs["name"], format!("{}.jobs", env.queue.prefix));
    assert_eq!(
        (&jobs["messages"], &jobs["consumers"]),
        (&3.into(), &0.into())
    );
    assert_eq!(queue(&seen, "dead_letter")?["messages"], 0);
    assert_eq!(queue(&seen, "parked")?["messages"], 0);
    assert!(
        seen["queues"]
            .as_array()
            .context("queues")?
            .iter()
            .filter(|q| q["role"] == "retry")
            .all(|q| q["exists"] == true && q["messages"] == 0),
        "{seen}"
    );
    let running = &seen["backups"][0];
    assert_eq!(running["backup_id"], backup.backup_id.to_string());
    assert_eq!(running["job_id"], job.to_string());
    assert_eq!(
        (&running["tenant"], &running["org_id"]),
        (&"acme".into(), &TEST_ORG_ID.into())
    );
    assert_eq!(
        (
            &running["tasks_total"],
            &running["tasks_done"],
            &running["records"]
        ),
        (&2.into(), &1.into(), &42.into())
    );
    assert_eq!(seen["workers"]["lease_holders"][0]["worker"], "node-7:41");
    assert_eq!(seen["workers"]["lease_holders"][0]["tasks"], 1);
    assert_eq!(seen["errors"], serde_json::json!([]));

    let mut plain = coffer(&env);
    let out = plain.arg("status").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("backups running: 1"), "{text}");
    assert!(text.contains("tasks 1/2 done"), "{text}");

    // A worker attaches, and dead-letters the three jobs it cannot read.
    let log = std::env::temp_dir().join(format!("coffer-status-{}.log", env.id));
    let worker = Reaped(
        coffer(&env)
            .arg("worker")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = status(&env)?;
        let jobs = queue(&seen, "jobs")?;
        let dlq = queue(&seen, "dead_letter")?;
        if jobs["consumers"] == 1 && jobs["messages"] == 0 && dlq["messages"] == 3 {
            assert_eq!(seen["workers"]["consumers"], 1);
            break;
        }
        if Instant::now() > deadline {
            bail!("{seen}\nworker log:\n{}", std::fs::read_to_string(&log)?);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(worker);
    broker.delete_topology().await?;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_a_broker_it_cannot_reach_and_still_shows_the_catalog() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let out = coffer(&env)
        .env("COFFER_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .args(["status", "--json"])
        .output()?;
    assert!(!out.status.success());
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(seen["queues"], serde_json::Value::Null);
    assert_eq!(seen["backups"], serde_json::json!([]));
    assert!(
        seen["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("RabbitMQ")),
        "{seen}"
    );
    env.cleanup().await
}
