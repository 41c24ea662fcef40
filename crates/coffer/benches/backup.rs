//! End-to-end backup throughput and worker memory, beside the naive pipeline a user could script.
//!
//! Each run backs up a generated org through the real queue, simulator, bucket and catalog: two
//! `coffer worker` processes (default settings: 128 MiB parts, 8 MiB upload parts, 2 in flight),
//! `coffer enqueue backup`, and an org of `BENCH_RECORDS` rows (default `1000000,5000000`) of the
//! 20-column `Benchmark_Record__c` plus 4,000 Accounts with their Contacts, Invoices, Cases and
//! 2,000 files (1,000 Attachments, 1,000 ContentDocuments with their versions). It prints the
//! records and bytes stored, records/s and stored MB/s from enqueue to completion, and the peak
//! resident memory (`VmHWM`) of each worker process; equal peaks across record counts show
//! that memory does not grow with the org.
//!
//! Then the benchmark object alone, twice: through Coffer (`enqueue backup --sobject`, the same
//! path, record index included), and through the naive pipeline a user could script: fetch the
//! Bulk API 2.0 results page by page into a file (HTTP, no parsing), `gzip` it, and upload it
//! with the AWS CLI (`aws s3 cp`, SSE-KMS), timed step by step; it prints the ratio of the two
//! records/s. File bodies cost one API call each, and the client keeps each org under 25
//! calls/s (its share of the org's allowance), so the whole-org rate is bound by the files.
//!
//! Run with `scripts/bench-tools && cargo bench -p coffer --bench backup` (the stack must be
//! up: `scripts/stack up`). Under `cargo test --all-targets` it runs a 2,000-record smoke pass
//! without the naive pipeline.

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use coffer_catalog::BackupRecord;
use coffer_core::JobId;
use coffer_salesforce::{OrgConnection, SalesforceClient};
use coffer_sfsim::schema::BENCHMARK_OBJECT;
use coffer_sfsim::{OrgSeed, SimConfig, SimHandle};
use coffer_testkit::{TEST_ORG_ID, TestEnv};
use secrecy::ExposeSecret;

const WORKERS: usize = 2;

/// One end-to-end backup's measurements.
struct Run {
    backup: BackupRecord,
    elapsed: Duration,
    worker_peaks_kib: Vec<Option<u64>>,
}

fn main() -> anyhow::Result<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let (counts, accounts) = if full {
        (record_counts()?, 4_000)
    } else {
        (vec![2_000], 40)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "{:<22} {:>10} {:>10} {:>9} {:>9} {:>10} {:>9} {:>24}",
        "scope",
        "bench rows",
        "records",
        "MB stored",
        "seconds",
        "records/s",
        "MB/s",
        "peak RSS MiB per worker"
    );
    for n in &counts {
        let run = runtime.block_on(backup_run(*n, accounts, Scope::WholeOrg))?;
        print_run("whole org + files", *n, &run);
    }
    if full {
        // Like for like with the naive pipeline: the benchmark object alone, same path.
        let n = counts[0];
        let run = runtime.block_on(backup_run(n, accounts, Scope::BenchmarkObject))?;
        print_run(BENCHMARK_OBJECT, n, &run);
        let rate = run.backup.record_count as f64 / run.elapsed.as_secs_f64();
        runtime.block_on(naive_run(n, rate))?;
    }
    Ok(())
}

/// What a run backs up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every object of the org, with file bodies.
    WholeOrg,
    /// Only `Benchmark_Record__c`.
    BenchmarkObject,
}

fn print_run(scope: &str, rows: usize, run: &Run) {
    let secs = run.elapsed.as_secs_f64();
    let mb = run.backup.bytes as f64 / 1e6;
    let peaks: Vec<String> = run
        .worker_peaks_kib
        .iter()
        .map(|p| p.map_or_else(|| "n/a".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)))
        .collect();
    println!(
        "{:<22} {:>10} {:>10} {:>9.1} {:>9.2} {:>10.0} {:>9.1} {:>24}",
        scope,
        rows,
        run.backup.record_count,
        mb,
        secs,
        run.backup.record_count as f64 / secs,
        mb / secs,
        peaks.join(" / ")
    );
}

fn record_counts() -> anyhow::Result<Vec<usize>> {
    let spec = std::env::var("BENCH_RECORDS").unwrap_or_else(|_| "1000000,5000000".to_owned());
    spec.split(',')
        .map(|s| {
            s.trim()
                .parse()
                .context("BENCH_RECORDS: comma-separated row counts")
        })
        .collect()
}

async fn start_org(records: usize, accounts: usize) -> anyhow::Result<SimHandle> {
    let org = OrgSeed::new(coffer_core::OrgId::new(TEST_ORG_ID)?, 7, accounts, 1)
        .with_rows(BENCHMARK_OBJECT, records);
    let config = SimConfig {
        default_page_size: 50_000,
        ..SimConfig::local(org)
    };
    Ok(coffer_sfsim::start(config).await?)
}

/// `coffer` with the run's database, broker, queue prefix and endpoint.
fn coffer(env: &TestEnv) -> Command {
    env.command(env!("CARGO_BIN_EXE_coffer"))
}

async fn backup_run(records: usize, accounts: usize, scope: Scope) -> anyhow::Result<Run> {
    let env = TestEnv::new().await?;
    let sim = start_org(records, accounts).await?;
    env.create_tenant("bench", "").await?;
    env.connect_org("bench", &sim).await?;
    env.broker().await?;
    let logs = std::env::temp_dir();
    let mut workers: Vec<Child> = (0..WORKERS)
        .map(|i| {
            let log = logs.join(format!("coffer-bench-{}-{i}.log", env.id));
            Ok(coffer(&env)
                .arg("worker")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log)?)
                .spawn()?)
        })
        .collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    let mut enqueue = coffer(&env);
    enqueue.args(["enqueue", "backup", "--tenant", "bench", "--json"]);
    if scope == Scope::BenchmarkObject {
        enqueue.args(["--sobject", BENCHMARK_OBJECT]);
    }
    let out = enqueue.output()?;
    if !out.status.success() {
        bail!("enqueue failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let enqueued: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let job: JobId = enqueued["jobs"][0]["job_id"]
        .as_str()
        .context("job id")?
        .parse()?;
    let backup = env.wait_for_backup(job, Duration::from_secs(3_600)).await?;
    let elapsed = started.elapsed();
    let worker_peaks_kib = workers.iter().map(|w| peak_rss_kib(w.id())).collect();
    for worker in &mut workers {
        Command::new("kill")
            .args(["-TERM", &worker.id().to_string()])
            .status()?;
        worker.wait()?;
    }
    sim.shutdown().await;
    env.cleanup().await?;
    Ok(Run {
        backup,
        elapsed,
        worker_peaks_kib,
    })
}

/// `VmHWM` of process `pid` in KiB (Linux): its peak resident set size so far.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The naive pipeline for the benchmark object: fetch, gzip, `aws s3 cp`.
async fn naive_run(records: usize, coffer_rate: f64) -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_org(records, 40).await?;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("naive-backup");
    std::fs::create_dir_all(&dir)?;
    let csv = dir.join("records.csv");
    let gz = dir.join("records.csv.gz");

    let started = Instant::now();
    let fetched = fetch_bulk_results(&sim, &csv).await?;
    let fetch = started.elapsed();
    let t = Instant::now();
    let status = Command::new("gzip")
        .args(["-c", "-6"])
        .arg(&csv)
        .stdout(std::fs::File::create(&gz)?)
        .status()?;
    if !status.success() {
        bail!("gzip exited with {status}");
    }
    let gzip = t.elapsed();
    let t = Instant::now();
    aws_cp(&env, &gz)?;
    let upload = t.elapsed();
    let total = started.elapsed();

    let rate = records as f64 / total.as_secs_f64();
    println!();
    println!(
        "naive pipeline, {BENCH_OBJECT} only ({records} rows, {:.1} MB of CSV, {:.1} MB gzipped):",
        fetched as f64 / 1e6,
        std::fs::metadata(&gz)?.len() as f64 / 1e6,
        BENCH_OBJECT = BENCHMARK_OBJECT
    );
    println!(
        "  fetch {:.2} s + gzip {:.2} s + aws s3 cp {:.2} s = {:.2} s, {:.0} records/s",
        fetch.as_secs_f64(),
        gzip.as_secs_f64(),
        upload.as_secs_f64(),
        total.as_secs_f64(),
        rate
    );
    println!(
        "  coffer (same object, through queue, workers, bucket and catalog) is {:.2}x the naive records/s",
        coffer_rate / rate
    );
    std::fs::remove_dir_all(&dir)?;
    sim.shutdown().await;
    env.cleanup().await
}

/// Runs a Bulk API 2.0 query of every field of the benchmark object and appends every results
/// page, as received, to `path`; returns the bytes written.
async fn fetch_bulk_results(sim: &SimHandle, path: &Path) -> anyhow::Result<u64> {
    use std::io::Write as _;
    let sf = SalesforceClient::connect(OrgConnection {
        login_url: sim.base_url(),
        client_id: sim.client_id().to_owned(),
        client_secret: secrecy::SecretString::from(sim.client_secret().to_owned()),
        api_version: "62.0".to_owned(),
    })
    .await?;
    let describe = sf
        .describe_sobject(&coffer_core::SObjectName::new(BENCHMARK_OBJECT)?)
        .await?;
    let (_, soql) =
        coffer_worker::backup::extract::full_query(&describe).context("no queryable field")?;
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{}/services/oauth2/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sim.client_id()),
            ("client_secret", sim.client_secret()),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let instance = token["instance_url"].as_str().context("instance_url")?;
    let bearer = format!(
        "Bearer {}",
        token["access_token"].as_str().context("token")?
    );
    let jobs = format!("{instance}/services/data/v62.0/jobs/query");
    let job: serde_json::Value = http
        .post(&jobs)
        .header("Authorization", &bearer)
        .json(&serde_json::json!({"operation": "query", "query": soql}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = job["id"].as_str().context("job id")?.to_owned();
    loop {
        let state: serde_json::Value = http
            .get(format!("{jobs}/{id}"))
            .header("Authorization", &bearer)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        match state["state"].as_str() {
            Some("JobComplete") => break,
            Some("Failed" | "Aborted") => bail!("bulk job {id}: {state}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut written = 0u64;
    let mut locator: Option<String> = None;
    loop {
        let mut url = format!("{jobs}/{id}/results?maxRecords=50000");
        if let Some(l) = &locator {
            url.push_str(&format!("&locator={l}"));
        }
        let resp = http
            .get(url)
            .header("Authorization", &bearer)
            .send()
            .await?
            .error_for_status()?;
        let next = resp
            .headers()
            .get("Sforce-Locator")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.bytes().await?;
        out.write_all(&body)?;
        written += body.len() as u64;
        match next.as_deref() {
            None | Some("null") => break,
            Some(l) => locator = Some(l.to_owned()),
        }
    }
    out.flush()?;
    Ok(written)
}

/// `aws s3 cp` of `file` into the run's bucket with SSE-KMS under the run's key.
fn aws_cp(env: &TestEnv, file: &Path) -> anyhow::Result<()> {
    let keys = env.stack.admin_s3().keys.context("admin keys")?;
    let status = Command::new("aws")
        .args([
            "s3",
            "cp",
            "--only-show-errors",
            "--endpoint-url",
            &env.stack.s3_endpoint,
        ])
        .arg(file)
        .arg(format!("s3://{}/naive/records.csv.gz", env.bucket))
        .args(["--sse", "aws:kms", "--sse-kms-key-id", &env.kms_key.arn])
        .env("AWS_ACCESS_KEY_ID", &keys.access_key_id)
        .env(
            "AWS_SECRET_ACCESS_KEY",
            keys.secret_access_key.expose_secret(),
        )
        .env("AWS_DEFAULT_REGION", &env.stack.region)
        .env_remove("AWS_CA_BUNDLE")
        .status()
        .map_err(|e| anyhow::anyhow!("aws: {e} (install it with scripts/bench-tools)"))?;
    if !status.success() {
        bail!("aws s3 cp exited with {status}");
    }
    Ok(())
}
