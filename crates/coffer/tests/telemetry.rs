//! What operators see of a backup run by two `coffer worker` processes:
//!
//! - one trace, started by `coffer enqueue`, holds the plan and the extract tasks of both
//!   workers, with their uploads and catalog writes, linked through the trace context the jobs
//!   carry in their headers (spans received by a real OTLP/HTTP receiver);
//! - the counters scraped from both workers' `/metrics` agree with the catalog, carry no ids,
//!   and `/healthz` and `/readyz` answer.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use coffer_catalog::{BackupRecord, ObjectKind, Sse};
use coffer_core::JobId;
use coffer_testkit::otlp::{Receiver, Span};
use coffer_testkit::{TestEnv, start_sim};

use common::{Reaped, coffer, http_addr_of, logs_of, run_json, wait_for_exit};

/// Two workers and a backup they shared.
struct Run {
    env: TestEnv,
    sim: coffer_sfsim::SimHandle,
    workers: Vec<Reaped>,
    logs: Vec<std::path::PathBuf>,
    job: JobId,
    backup: BackupRecord,
}

/// Starts two workers with `vars`, enqueues a backup of a simulated org (with `vars` too: the
/// CLI exports its span as well) and waits until it is complete.
async fn backup_by_two_workers(label: &str, vars: &[(&str, &str)]) -> anyhow::Result<Run> {
    let env = TestEnv::new().await?;
    let sim = start_sim(30, 3, 20).await?;
    // Slow pages keep each worker busy long enough that the other takes tasks too.
    sim.slow_pages(Duration::from_millis(40));
    env.create_tenant_with("acme", "", Sse::S3).await?;
    env.connect_org("acme", &sim).await?;
    env.broker().await?;
    let mut workers = Vec::new();
    let mut logs = Vec::new();
    for n in 0..2 {
        let (child, log) = common::spawn_worker(&env, label, n, vars)?;
        workers.push(child);
        logs.push(log);
    }
    let mut enqueue = coffer(&env);
    enqueue
        .args(["enqueue", "backup", "--tenant", "acme", "--json"])
        .envs(vars.iter().copied());
    let job: JobId = run_json(enqueue)?["jobs"][0]["job_id"]
        .as_str()
        .context("job id")?
        .parse()?;
    let backup = match env.wait_for_backup(job, Duration::from_secs(120)).await {
        Ok(b) => b,
        Err(e) => bail!("{e:#}; logs:\n{}", logs_of(&logs)),
    };
    Ok(Run {
        env,
        sim,
        workers,
        logs,
        job,
        backup,
    })
}

impl Run {
    /// SIGTERM to every worker; each must exit cleanly (and flush its spans).
    fn stop_workers(&mut self) -> anyhow::Result<()> {
        for worker in &mut self.workers {
            Command::new("kill")
                .args(["-TERM", &worker.id().to_string()])
                .status()?;
        }
        for worker in &mut self.workers {
            let status = wait_for_exit(worker, Duration::from_secs(60))?;
            assert!(
                status.success(),
                "worker exited with {status}; logs:\n{}",
                logs_of(&self.logs)
            );
        }
        Ok(())
    }

    async fn finish(self) -> anyhow::Result<()> {
        self.sim.shutdown().await;
        self.env.cleanup().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_links_the_plan_and_the_tasks_of_both_workers() -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let endpoint = receiver.endpoint();
    let vars = [
        ("COFFER_OTLP_ENDPOINT", endpoint.as_str()),
        ("COFFER_OTLP_PROTOCOL", "http/json"),
    ];
    let mut run = backup_by_two_workers("trace", &vars).await?;
    run.stop_workers()?;
    let tasks = run.env.catalog.tasks(run.backup.backup_id).await?;

    let spans = receiver.spans();
    let job = run.job.to_string();
    let root = spans
        .iter()
        .find(|s| s.name == "enqueue" && s.attributes.get("job_id") == Some(&job))
        .with_context(|| format!("no enqueue span of job {job} among {} spans", spans.len()))?;
    assert!(
        root.parent_span_id.is_empty(),
        "the CLI's span starts the trace"
    );
    let trace: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id == root.trace_id)
        .collect();
    let by_id: HashMap<&str, &Span> = trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    let reaches_root = |span: &Span| {
        let mut at = span;
        for _ in 0..64 {
            if at.span_id == root.span_id {
                return true;
            }
            match by_id.get(at.parent_span_id.as_str()) {
                Some(parent) => at = parent,
                None => return false,
            }
        }
        false
    };
    let named =
        |name: &str| -> Vec<&Span> { trace.iter().copied().filter(|s| s.name == name).collect() };

    // The plan, and every task's extract, are in the trace and hang from the CLI's span.
    let plans = named("plan");
    assert_eq!(plans.len(), 1, "one plan span in the trace");
    let extracts = named("extract");
    assert_eq!(
        extracts.len(),
        tasks.len(),
        "one extract span per task of the backup"
    );
    let sobjects: BTreeSet<&str> = extracts
        .iter()
        .filter_map(|s| s.attributes.get("sobject").map(String::as_str))
        .collect();
    let planned: BTreeSet<&str> = tasks.iter().map(|t| t.sobject.as_str()).collect();
    assert_eq!(
        sobjects, planned,
        "the extract spans name the planned objects"
    );
    for span in plans.iter().chain(&extracts) {
        assert!(
            reaches_root(span),
            "{} span of {} is not linked to the enqueue span",
            span.name,
            span.instance()
        );
    }

    // Both workers ran tasks, and the trace spans three processes: the CLI and the workers.
    let task_workers: BTreeSet<&str> = extracts.iter().map(|s| s.instance()).collect();
    eprintln!(
        "trace {}: {} spans; {} tasks, extracted by {:?}",
        root.trace_id,
        trace.len(),
        tasks.len(),
        task_workers
    );
    assert_eq!(task_workers.len(), 2, "tasks of both workers in one trace");
    let processes: BTreeSet<&str> = trace.iter().map(|s| s.instance()).collect();
    assert_eq!(
        processes.len(),
        3,
        "the CLI and both workers: {processes:?}"
    );
    let roles: BTreeSet<&str> = trace
        .iter()
        .filter_map(|s| s.resource.get("coffer.role").map(String::as_str))
        .collect();
    assert_eq!(roles, BTreeSet::from(["cli", "worker"]));

    // Uploads and catalog writes are in it too, under the tasks.
    let uploads: Vec<&Span> = trace
        .iter()
        .copied()
        .filter(|s| s.name == "s3.put_object" || s.name == "s3.complete_multipart_upload")
        .collect();
    let records_objects = run
        .env
        .catalog
        .backup_objects(run.backup.backup_id)
        .await?
        .into_iter()
        .filter(|o| o.kind != ObjectKind::File)
        .count();
    assert!(
        uploads.len() >= records_objects,
        "{} upload spans for {records_objects} parts and manifest",
        uploads.len()
    );
    assert!(uploads.iter().all(|s| reaches_root(s)));
    assert_eq!(named("catalog.record_plan").len(), 1);
    assert_eq!(named("catalog.complete_task").len(), tasks.len());
    assert_eq!(named("catalog.complete_backup").len(), 1);
    assert!(
        trace.iter().any(|s| s.name == "salesforce"),
        "salesforce calls are spans of the trace"
    );
    run.finish().await
}

/// `GET http://{addr}{path}`: status and body.
async fn get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let resp = reqwest::get(format!("http://{addr}{path}")).await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

/// Samples of the Prometheus text format: `name{labels}` -> value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum over `scrapes` of the series `series` (absent counts 0).
fn total(scrapes: &[HashMap<String, f64>], series: &str) -> f64 {
    scrapes.iter().filter_map(|s| s.get(series)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_of_both_workers_agree_with_the_catalog() -> anyhow::Result<()> {
    let vars = [("COFFER_HTTP_ADDR", "127.0.0.1:0")];
    let mut run = backup_by_two_workers("metrics", &vars).await?;
    let mut addrs = Vec::new();
    for log in &run.logs {
        addrs.push(http_addr_of(log).await?);
    }
    for addr in &addrs {
        assert_eq!(get(addr, "/healthz").await?.0, 200);
        let (status, body) = get(addr, "/readyz").await?;
        assert_eq!(status, 200, "readyz: {body}");
        assert!(
            body.contains("catalog: ok") && body.contains("amqp: ok"),
            "{body}"
        );
    }

    let catalog = &run.env.catalog;
    let backup_id = run.backup.backup_id;
    let tasks = catalog.tasks(backup_id).await?.len() as f64;
    // The last task is acked just after the catalog says complete: wait for its count.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (texts, scrapes) = loop {
        let mut texts = Vec::new();
        for addr in &addrs {
            texts.push(get(addr, "/metrics").await?.1);
        }
        let scrapes: Vec<_> = texts.iter().map(|t| samples(t)).collect();
        let settled = total(
            &scrapes,
            r#"coffer_jobs_total{kind="extract_task",outcome="ok"}"#,
        );
        if settled >= tasks || Instant::now() > deadline {
            break (texts, scrapes);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let objects = catalog.backup_objects(backup_id).await?;
    let of_kind = |kind: ObjectKind| objects.iter().filter(move |o| o.kind == kind);
    let parts = of_kind(ObjectKind::Records).count() as f64;
    let part_bytes = of_kind(ObjectKind::Records).map(|o| o.size).sum::<u64>() as f64;
    let manifest_bytes = of_kind(ObjectKind::Manifest).map(|o| o.size).sum::<u64>() as f64;
    let bodies: BTreeSet<(String, u64)> = catalog
        .backup_files(backup_id)
        .await?
        .into_iter()
        .map(|f| (f.sha256, f.size))
        .collect();
    let body_bytes = bodies.iter().map(|(_, size)| *size).sum::<u64>() as f64;

    let expect = [
        (
            r#"coffer_jobs_total{kind="backup_requested",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"coffer_jobs_total{kind="extract_task",outcome="ok"}"#,
            tasks,
        ),
        (
            "coffer_records_backed_up_total",
            run.backup.record_count as f64,
        ),
        (r#"coffer_objects_stored_total{what="records"}"#, parts),
        (r#"coffer_bytes_stored_total{what="records"}"#, part_bytes),
        (r#"coffer_objects_stored_total{what="manifest"}"#, 1.0),
        (
            r#"coffer_bytes_stored_total{what="manifest"}"#,
            manifest_bytes,
        ),
        (
            r#"coffer_objects_stored_total{what="files"}"#,
            bodies.len() as f64,
        ),
        (r#"coffer_bytes_stored_total{what="files"}"#, body_bytes),
        ("coffer_jobs_in_flight", 0.0),
    ];
    eprintln!("expected from the catalog: {expect:?}");
    for (series, want) in expect {
        assert_eq!(total(&scrapes, series), want, "{series}");
    }
    assert!(!bodies.is_empty(), "the org has file bodies to count");
    let uploaded = total(&scrapes, "coffer_bytes_uploaded_total");
    assert!(
        uploaded >= part_bytes + manifest_bytes,
        "{uploaded} bytes uploaded, the catalog holds {} in parts and manifest",
        part_bytes + manifest_bytes
    );
    assert!(total(&scrapes, "coffer_upload_parts_total") >= parts + 1.0);
    assert!(total(&scrapes, r#"coffer_salesforce_api_calls_total{api="bulk"}"#) > 0.0);
    assert!(
        scrapes.iter().any(|s| s
            .keys()
            .any(|k| k.starts_with("coffer_queue_lag_seconds_count"))),
        "queue lag is observed"
    );
    let jobs_queue = format!(
        "coffer_queue_consumers{{queue=\"{}.jobs\"}}",
        run.env.queue.prefix
    );
    assert!(
        scrapes.iter().all(|s| s.contains_key(&jobs_queue)),
        "every worker samples the queues ({jobs_queue})"
    );

    // No id of any kind in a label.
    let ids = [
        run.backup.backup_id.to_string(),
        run.job.to_string(),
        run.sim.org_id().to_string(),
        "acme".to_owned(),
    ];
    for text in &texts {
        for id in &ids {
            assert!(!text.contains(id.as_str()), "{id} appears in the metrics");
        }
    }
    run.stop_workers()?;
    run.finish().await
}
