//! End-to-end restore throughput and worker memory.
//!
//! A generated org of related records (`BENCH_RESTORE_ACCOUNTS` Accounts, default 9,000, with
//! their parent hierarchy, Contacts, Opportunities, Cases, Tasks, Invoices, attachments and
//! files: about 100,000 records) is backed up through the real queue, simulator, bucket and
//! catalog; then a fresh `coffer worker` process restores all of it from the backup into an
//! empty org (a new sandbox: every record is inserted under a new id) with
//! `coffer restore start --object Account --children 2 --target-org ... --execute --wait`:
//! plan, inserts with every lookup remapped, file bodies read back from the bucket, second pass
//! of self-lookups, report. It does so twice: into an org without the restore key field
//! (sObject Collections, 200 records a call) and into one with it (Bulk API 2.0 upsert jobs for
//! objects with 2,000 inserts or more). Each row prints the records restored, seconds from
//! request to completion, records/s, and the restoring worker's peak resident memory
//! (`VmHWM`).
//!
//! The client keeps an org under 25 API calls/s (its share of the org's allowance) and writes
//! 200 records a call, so about 5,000 records/s is the ceiling the API budget sets.
//!
//! Run with `cargo bench -p coffer --bench restore` (the stack must be up: `scripts/stack up`).
//! Under `cargo test --all-targets` it runs a 20-account smoke pass.

#![allow(clippy::print_stdout)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use coffer_core::JobId;
use coffer_sfsim::{OrgSeed, SimConfig, SimHandle};
use coffer_testkit::{TEST_ORG_ID, TestEnv};

fn main() -> anyhow::Result<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let accounts = match full {
        true => std::env::var("BENCH_RESTORE_ACCOUNTS")
            .ok()
            .map(|s| s.parse().context("BENCH_RESTORE_ACCOUNTS: a number"))
            .transpose()?
            .unwrap_or(9_000),
        false => 20,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(restore_run(accounts))
}

/// `coffer` with the run's database, broker, queue prefix and endpoint.
fn coffer(env: &TestEnv) -> Command {
    env.command(env!("CARGO_BIN_EXE_coffer"))
}

fn start_worker(env: &TestEnv, name: &str) -> anyhow::Result<Child> {
    let log = std::env::temp_dir().join(format!("coffer-bench-{}-{name}.log", env.id));
    Ok(coffer(env)
        .arg("worker")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()?)
}

fn stop(mut worker: Child) -> anyhow::Result<()> {
    Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()?;
    worker.wait()?;
    Ok(())
}

/// Runs `command` and parses its stdout as JSON.
fn run_json(mut command: Command) -> anyhow::Result<serde_json::Value> {
    let out = command.output()?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            command,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The empty org restored into (same pod, so the same users).
const TARGET_ORG_ID: &str = "00D5g0000004TgtAAA";

async fn start_org(org_id: &str, accounts: usize, keyed: bool) -> anyhow::Result<SimHandle> {
    let mut org = OrgSeed::new(coffer_core::OrgId::new(org_id)?, 11, accounts, 5);
    if keyed {
        org = org.with_restore_key();
    }
    let config = SimConfig {
        default_page_size: 50_000,
        ..SimConfig::local(org)
    };
    Ok(coffer_sfsim::start(config).await?)
}

/// Every live record of the org, by object.
fn records(sim: &SimHandle) -> usize {
    sim.sobjects()
        .iter()
        .filter_map(|o| sim.table(o))
        .map(|(_, rows)| rows.len())
        .sum()
}

/// How a run writes: the org restored into, and whether it has the restore key field.
struct Mode {
    name: &'static str,
    target: &'static str,
    keyed: bool,
}

/// Both ways a restore writes: sObject Collections (no restore key in the target) and, into an
/// org with the key, Bulk API 2.0 upserts for every object with 2,000 inserts or more.
const MODES: &[Mode] = &[
    Mode {
        name: "collections",
        target: TARGET_ORG_ID,
        keyed: false,
    },
    Mode {
        name: "bulk+key",
        target: KEYED_TARGET_ORG_ID,
        keyed: true,
    },
];

/// The empty org with the restore key field restored into by the keyed run.
const KEYED_TARGET_ORG_ID: &str = "00D5g0000004TgkAAA";

async fn restore_run(accounts: usize) -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_org(TEST_ORG_ID, accounts, false).await?;
    env.create_tenant("bench", "").await?;
    env.connect_org("bench", &sim).await?;
    env.broker().await?;

    let backup_worker = start_worker(&env, "backup")?;
    let mut enqueue = coffer(&env);
    enqueue.args([
        "enqueue",
        "backup",
        "--tenant",
        "bench",
        "--org",
        TEST_ORG_ID,
        "--json",
    ]);
    let job: JobId = run_json(enqueue)?["jobs"][0]["job_id"]
        .as_str()
        .context("job id")?
        .parse()?;
    let backup = env.wait_for_backup(job, Duration::from_secs(3_600)).await?;
    stop(backup_worker)?;
    let before = records(&sim);

    println!(
        "{:>12} {:>9} {:>12} {:>10} {:>8} {:>9} {:>10} {:>13}",
        "mode",
        "accounts",
        "org records",
        "restored",
        "failed",
        "seconds",
        "records/s",
        "peak RSS MiB"
    );
    let mut notes = Vec::new();
    for mode in MODES {
        let target = start_org(mode.target, 0, mode.keyed).await?;
        env.connect_org("bench", &target).await?;
        let left = records(&target);
        let run = restore_into(&env, &backup.backup_id.to_string(), mode).await?;
        let after = records(&target);
        println!(
            "{:>12} {:>9} {:>12} {:>10} {:>8} {:>9.2} {:>10.0} {:>13}",
            mode.name,
            accounts,
            before,
            run.restored,
            run.failed.values().sum::<usize>(),
            run.seconds,
            run.restored as f64 / run.seconds,
            run.peak_kib
                .map_or_else(|| "n/a".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
        );
        for (reason, n) in &run.failed {
            notes.push(format!("{}: failed x{n}: {reason}", mode.name));
        }
        notes.push(format!(
            "{}: {left} records in the target org before, {after} after",
            mode.name
        ));
        target.shutdown().await;
    }
    println!("records: {before} in the org backed up");
    for note in notes {
        println!("{note}");
    }
    sim.shutdown().await;
    env.cleanup().await
}

/// What one restore run measured.
struct Run {
    restored: u64,
    failed: std::collections::BTreeMap<String, usize>,
    seconds: f64,
    peak_kib: Option<u64>,
}

/// Restores every Account of the backup with two levels of children into `mode`'s org, with a
/// fresh worker, and measures it.
async fn restore_into(env: &TestEnv, backup_id: &str, mode: &Mode) -> anyhow::Result<Run> {
    let worker = start_worker(env, mode.name)?;
    let started = Instant::now();
    let mut restore = coffer(env);
    restore.args([
        "restore",
        "start",
        "--tenant",
        "bench",
        "--org",
        TEST_ORG_ID,
        "--backup",
        backup_id,
        "--object",
        "Account",
        "--children",
        "2",
        "--target-org",
        mode.target,
        "--execute",
        "--wait",
        "--json",
    ]);
    let report = run_json(restore)?;
    let seconds = started.elapsed().as_secs_f64();
    let peak_kib = peak_rss_kib(worker.id());
    stop(worker)?;
    if report["state"] != "complete" {
        bail!("restore did not complete: {report}");
    }
    let restored: u64 = report["counts"]
        .as_object()
        .context("counts")?
        .values()
        .filter_map(|o| o.as_object())
        .flat_map(|o| o.iter())
        .filter(|(k, _)| k.ends_with(":written") || k.ends_with(":linked"))
        .filter_map(|(_, v)| v.as_u64())
        .sum();
    let mut failed: std::collections::BTreeMap<String, usize> = Default::default();
    for failure in report["failed"].as_array().into_iter().flatten() {
        let key = format!(
            "{}: {}",
            failure["sobject"].as_str().unwrap_or_default(),
            failure["error"].as_str().unwrap_or_default()
        );
        *failed.entry(key).or_default() += 1;
    }
    Ok(Run {
        restored,
        failed,
        seconds,
        peak_kib,
    })
}

/// `VmHWM` of process `pid` in KiB (Linux): its peak resident set size so far.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
