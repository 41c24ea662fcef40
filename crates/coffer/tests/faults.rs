//! The fault suite: several `coffer worker` processes back up, restore and sweep one org while
//! faults are injected, then every job is checked to have completed exactly once.
//!
//! Faults: workers and the janitor killed with SIGKILL at random points; RabbitMQ restarted and
//! MariaDB crashed and restarted mid-run (the suite's own instances, so no other test is
//! disturbed); S3 requests broken by a proxy between the workers and the store (`503
//! SlowDown`, `500`, resets, latency, a body cut mid-part); Salesforce faults from the simulator
//! (`503`s, pages cut, sessions expired, `QUERY_TIMEOUT`). At the end `coffer verify` must be
//! clean, and the suite prints a table: faults injected, jobs, lost, duplicated.
//!
//! - Short form (in CI, with `cargo test`): `short_form`, two workers, about a minute or two.
//! - Long form (locally): `cargo test -p coffer --test faults -- --ignored long_form
//!   --nocapture`: three workers, more backups, 50 faults at least.
//!
//! The seed of the random choices is printed (`COFFER_FAULT_SEED=...` replays a run).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use coffer_catalog::{BackupState, ObjectKind, RestoreState, Sse};
use coffer_core::{JobId, TenantId};
use coffer_sfsim::{OrgSeed, SimHandle};
use coffer_testkit::faults::{FaultRates, PrivateMariadb, PrivateRabbit, S3FaultProxy};
use coffer_testkit::{Stack, TEST_ORG_ID, TestEnv, start_sim_of};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use common::{Reaped, coffer};

/// How much of everything.
#[derive(Debug, Clone, Copy)]
struct Form {
    name: &'static str,
    workers: usize,
    backups: usize,
    /// Faults other than the proxy's, at most, per phase.
    faults_per_phase: usize,
    /// Broker and database restarts, at most, over the run.
    restarts: usize,
    /// Faults in all the run must reach this.
    min_faults: u64,
}

const SHORT: Form = Form {
    name: "short",
    workers: 2,
    backups: 2,
    faults_per_phase: 4,
    restarts: 1,
    min_faults: 10,
};

const LONG: Form = Form {
    name: "long",
    workers: 3,
    backups: 4,
    faults_per_phase: 12,
    restarts: 3,
    min_faults: 50,
};

/// Longest a phase may take before its unfinished jobs count as lost.
const PHASE_TIMEOUT: Duration = Duration::from_secs(420);

/// What the checks found, per job kind.
#[derive(Debug, Default)]
struct Tally {
    jobs: u64,
    completed: u64,
    lost: u64,
    duplicated: u64,
    notes: Vec<String>,
}

struct Suite {
    form: Form,
    seed: u64,
    rng: StdRng,
    rabbit: PrivateRabbit,
    db: PrivateMariadb,
    proxy: S3FaultProxy,
    env: TestEnv,
    sim: SimHandle,
    workers: Vec<Reaped>,
    logs: Vec<std::path::PathBuf>,
    spawned: usize,
    restarts: usize,
    injected: BTreeMap<&'static str, u64>,
    tally: BTreeMap<&'static str, Tally>,
}

impl Suite {
    async fn start(form: Form) -> anyhow::Result<Suite> {
        let seed: u64 = match std::env::var("COFFER_FAULT_SEED") {
            Ok(s) => s.parse()?,
            Err(_) => rand::random(),
        };
        eprintln!(
            "fault suite ({} form) seed: COFFER_FAULT_SEED={seed}",
            form.name
        );
        let rabbit = PrivateRabbit::start()?;
        let db = PrivateMariadb::start()?;
        let shared = Stack::from_env();
        let proxy = S3FaultProxy::start(&shared.s3_endpoint, FaultRates::moderate(), seed).await?;
        let stack = Stack {
            amqp_url: rabbit.amqp_url(),
            database_url: db.database_url(),
            ..shared
        };
        let env = TestEnv::with_stack(stack).await?;
        let org = OrgSeed::new(coffer_core::OrgId::new(TEST_ORG_ID)?, seed, 24, 3);
        let sim = start_sim_of(org, 15).await?;
        sim.slow_pages(Duration::from_millis(30));
        env.create_tenant_with("acme", "", Sse::S3).await?;
        env.connect_org("acme", &sim).await?;
        env.broker().await?;
        let mut suite = Suite {
            form,
            seed,
            rng: StdRng::seed_from_u64(seed),
            rabbit,
            db,
            proxy,
            env,
            sim,
            workers: Vec::new(),
            logs: Vec::new(),
            spawned: 0,
            restarts: 0,
            injected: BTreeMap::new(),
            tally: BTreeMap::new(),
        };
        for _ in 0..form.workers {
            let worker = suite.spawn_worker()?;
            suite.workers.push(worker);
        }
        Ok(suite)
    }

    /// The environment of every process the suite starts: S3 through the fault proxy, short
    /// leases and quick retries, so a run stays within minutes.
    fn process_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("COFFER_S3_ENDPOINT", self.proxy.endpoint()),
            ("COFFER_TASK_LEASE", "3s".to_owned()),
            ("COFFER_RETRY_DELAYS", "1s,2s,4s,8s,15s,30s".to_owned()),
            ("COFFER_MAX_ATTEMPTS", "7".to_owned()),
            ("COFFER_MAX_PART_BYTES", "8192".to_owned()),
            ("COFFER_DRAIN_TIMEOUT", "2s".to_owned()),
            ("COFFER_ORG_PAUSE", "2s".to_owned()),
        ]
    }

    fn spawn_worker(&mut self) -> anyhow::Result<Reaped> {
        let vars = self.process_env();
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (child, log) = common::spawn_worker(&self.env, "faults", self.spawned, &vars)?;
        self.spawned += 1;
        self.logs.push(log);
        Ok(child)
    }

    fn count(&mut self, fault: &'static str) {
        *self.injected.entry(fault).or_default() += 1;
    }

    /// Workers that exited by themselves (one started while the database was down cannot
    /// connect) are started again; that is not a fault of its own.
    fn keep_workers_running(&mut self) -> anyhow::Result<()> {
        for i in 0..self.workers.len() {
            if self.workers[i].try_wait()?.is_some() {
                self.workers[i] = self.spawn_worker()?;
            }
        }
        Ok(())
    }

    /// One fault other than the proxy's, chosen at random.
    fn inject(&mut self) -> anyhow::Result<()> {
        let restarts_left = self.restarts < self.form.restarts;
        let mut roll = self.rng.random_range(0..10);
        if (roll == 4 || roll == 5) && !restarts_left {
            roll = 0; // a kill instead of a restart the form has no more of
        }
        match roll {
            0..=3 => {
                let victim = self.rng.random_range(0..self.workers.len());
                self.workers[victim].kill()?;
                self.workers[victim].wait()?;
                self.workers[victim] = self.spawn_worker()?;
                self.count("worker SIGKILL");
            }
            4 => {
                self.rabbit.restart()?;
                self.restarts += 1;
                self.count("rabbitmq restart");
            }
            5 => {
                self.db.restart(true)?;
                self.restarts += 1;
                self.count("mariadb crash + restart");
            }
            6 => {
                self.sim.fail_next_requests(2);
                self.count("salesforce 503 (2 calls)");
            }
            7 => {
                self.sim.cut_next_pages(1);
                self.count("salesforce page cut");
            }
            8 => {
                self.sim.expire_tokens();
                self.count("salesforce session expired");
            }
            _ => {
                self.sim.query_timeout_next_job();
                self.count("salesforce QUERY_TIMEOUT");
            }
        }
        Ok(())
    }

    /// Injects faults every 1 to 3 s until `done` says the phase's jobs are finished (or the
    /// phase times out); the proxy breaks S3 requests meanwhile.
    async fn under_faults<F, Fut>(&mut self, mut done: F) -> anyhow::Result<bool>
    where
        F: FnMut(&TestEnv) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<bool>>,
    {
        let deadline = Instant::now() + PHASE_TIMEOUT;
        let mut injected = 0;
        self.proxy.set_enabled(true);
        let finished = loop {
            let wait = self.rng.random_range(1_000..3_000);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            self.keep_workers_running()?;
            if done(&self.env).await.unwrap_or(false) {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            if injected < self.form.faults_per_phase {
                self.inject()?;
                injected += 1;
            }
        };
        self.proxy.set_enabled(false);
        Ok(finished)
    }

    fn tally(&mut self, kind: &'static str) -> &mut Tally {
        self.tally.entry(kind).or_default()
    }

    /// Backups under faults; each must hold every record of the org exactly once.
    async fn backups(&mut self) -> anyhow::Result<()> {
        let jobs: Vec<JobId> = (0..self.form.backups)
            .map(|_| common::enqueue_backup(&self.env, "acme"))
            .collect::<Result<_, _>>()?;
        let watched = jobs.clone();
        let finished = self
            .under_faults(move |env| {
                let jobs = watched.clone();
                let catalog = env.catalog.clone();
                async move {
                    for job in jobs {
                        match catalog.backup_of_job(job).await? {
                            Some(b) if b.state == BackupState::Complete => {}
                            _ => return Ok(false),
                        }
                    }
                    Ok(true)
                }
            })
            .await?;
        if !finished {
            self.tally("backup").notes.push("phase timed out".into());
        }
        for job in jobs {
            self.check_backup(job).await?;
        }
        Ok(())
    }

    async fn check_backup(&mut self, job: JobId) -> anyhow::Result<()> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT backup_id, state FROM backups WHERE job_id = ?")
                .bind(job.to_string())
                .fetch_all(self.env.catalog.pool())
                .await?;
        let found = self.backup_holds_the_org(job).await?;
        let tally = self.tally("backup");
        tally.jobs += 1;
        if rows.len() > 1 {
            tally.duplicated += 1;
            tally
                .notes
                .push(format!("job {job}: {} backups", rows.len()));
        }
        match found {
            Ok(()) => tally.completed += 1,
            Err((lost, duplicated, why)) => {
                tally.lost += u64::from(lost);
                tally.duplicated += u64::from(duplicated);
                tally.notes.push(format!("job {job}: {why}"));
            }
        }
        Ok(())
    }

    /// `Ok(Ok(()))` when the backup of `job` is complete and holds each record of the org
    /// once; else whether something is missing (lost) or twice (duplicated), and what.
    async fn backup_holds_the_org(
        &self,
        job: JobId,
    ) -> anyhow::Result<Result<(), (bool, bool, String)>> {
        let env = &self.env;
        let Some(backup) = env.catalog.backup_of_job(job).await? else {
            return Ok(Err((true, false, "no backup".into())));
        };
        if backup.state != BackupState::Complete {
            let state = backup.state.as_str();
            return Ok(Err((true, false, format!("backup {state}"))));
        }
        let mut held: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for object in env.catalog.backup_objects(backup.backup_id).await? {
            if object.kind != ObjectKind::Records {
                continue;
            }
            let (header, rows) = common::read_part(env, &object.key).await?;
            let id = header.iter().position(|h| h == "Id").context("Id column")?;
            held.entry(object.sobject.clone().unwrap_or_default())
                .or_default()
                .extend(rows.into_iter().map(|r| r[id].clone()));
        }
        let (mut lost, mut duplicated, mut why) = (false, false, Vec::new());
        for name in self.sim.sobjects() {
            let (header, rows) = self.sim.table(&name).context("sim table")?;
            let id = header.iter().position(|h| h == "Id").context("Id")?;
            let want: BTreeSet<String> = rows.into_iter().map(|r| r[id].clone()).collect();
            let got = held.remove(&name).unwrap_or_default();
            let distinct: BTreeSet<String> = got.iter().cloned().collect();
            if distinct.len() < got.len() {
                duplicated = true;
                why.push(format!(
                    "{name}: {} rows held twice",
                    got.len() - distinct.len()
                ));
            }
            let missing = want.difference(&distinct).count();
            if missing > 0 {
                lost = true;
                why.push(format!("{name}: {missing} records missing"));
            }
        }
        Ok(match lost || duplicated {
            false => Ok(()),
            true => Err((lost, duplicated, why.join("; "))),
        })
    }

    /// A restore of deleted and purged accounts under faults: the org must have each of its
    /// records again, once.
    async fn restore(&mut self) -> anyhow::Result<()> {
        let backup = self
            .env
            .catalog
            .latest_complete_backup(&TenantId::new("acme")?, self.sim.org_id())
            .await?
            .context("a complete backup to restore from")?;
        let before = self.org_counts();
        let (header, rows) = self.sim.table("Account").context("accounts")?;
        let id = header
            .iter()
            .position(|h| h == "Id")
            .context("Account.Id")?;
        let accounts: Vec<String> = rows.iter().take(3).map(|r| r[id].clone()).collect();
        let doomed: Vec<&str> = accounts.iter().map(String::as_str).collect();
        self.sim.delete("Account", &doomed)?;
        self.sim.empty_recycle_bin();
        let job = common::start_restore(&self.env, backup.backup_id, &accounts)?;
        let finished = self
            .under_faults(move |env| {
                let catalog = env.catalog.clone();
                async move {
                    Ok(catalog.restore_of_job(job).await?.is_some_and(|r| {
                        matches!(r.state, RestoreState::Complete | RestoreState::Failed)
                    }))
                }
            })
            .await?;
        let after = self.org_counts();
        let restore = self.env.catalog.restore_of_job(job).await?;
        let tally = self.tally("restore");
        tally.jobs += 1;
        if !finished {
            tally.notes.push("phase timed out".into());
        }
        let complete = restore.is_some_and(|r| r.state == RestoreState::Complete);
        let (mut short, mut over) = (false, false);
        for (name, want) in &before {
            let got = after.get(name).copied().unwrap_or(0);
            if got != *want {
                short |= got < *want;
                over |= got > *want;
                tally
                    .notes
                    .push(format!("{name}: {got} records, {want} before the delete"));
            }
        }
        if !complete {
            tally.notes.push("restore not complete".into());
        }
        if complete && !short && !over {
            tally.completed += 1;
        } else {
            tally.lost += u64::from(short || !complete);
            tally.duplicated += u64::from(over);
        }
        Ok(())
    }

    /// Live records per object of the org.
    fn org_counts(&self) -> BTreeMap<String, usize> {
        self.sim
            .sobjects()
            .into_iter()
            .filter_map(|name| Some((name.clone(), self.sim.table(&name)?.1.len())))
            .collect()
    }

    /// Retention (keep the newest backup) swept by `coffer janitor run` processes killed at
    /// random points, until one finishes; only the newest backup may be left, and the bucket
    /// must agree with the catalog.
    async fn sweep(&mut self) -> anyhow::Result<()> {
        let mut set = coffer(&self.env);
        set.args(["retention", "set", "--tenant", "acme", "--keep-last", "1"]);
        anyhow::ensure!(set.status()?.success(), "retention set failed");
        let tenant = TenantId::new("acme")?;
        let newest = self
            .env
            .catalog
            .latest_complete_backup(&tenant, self.sim.org_id())
            .await?
            .context("newest backup")?;
        let deadline = Instant::now() + PHASE_TIMEOUT;
        self.proxy.set_enabled(true);
        let mut runs = 0;
        let finished = loop {
            runs += 1;
            let mut run = coffer(&self.env);
            run.args([
                "janitor", "run", "--tenant", "acme", "--grace", "0", "--json",
            ]);
            run.envs(self.process_env());
            run.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let mut child = Reaped(run.spawn()?);
            let cut = runs <= self.form.faults_per_phase / 2 && self.rng.random_bool(0.7);
            let after = Duration::from_millis(self.rng.random_range(200..2_500));
            tokio::time::sleep(after).await;
            if cut && child.try_wait()?.is_none() {
                child.kill()?;
                child.wait()?;
                self.count("janitor SIGKILL");
                if self.rng.random_bool(0.3) && self.restarts < self.form.restarts {
                    self.db.restart(true)?;
                    self.restarts += 1;
                    self.count("mariadb crash + restart");
                }
                continue;
            }
            let status = tokio::task::spawn_blocking(move || child.wait()).await??;
            if status.success() {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
        };
        self.proxy.set_enabled(false);
        let left: Vec<_> = self
            .env
            .catalog
            .backups_of(&tenant, self.sim.org_id())
            .await?;
        let problems = self.consistency_problems().await?;
        let tally = self.tally("retention sweep");
        tally.jobs += 1;
        let kept: Vec<_> = left.iter().map(|b| b.backup_id).collect();
        if finished && kept == [newest.backup_id] && problems.is_empty() {
            tally.completed += 1;
        } else {
            if !kept.contains(&newest.backup_id) {
                tally.lost += 1;
            }
            tally.notes.push(format!(
                "kept {kept:?} (newest {}); {problems:?}",
                newest.backup_id
            ));
        }
        Ok(())
    }

    async fn consistency_problems(&self) -> anyhow::Result<Vec<String>> {
        let tenant = self
            .env
            .catalog
            .tenant(&TenantId::new("acme")?)
            .await?
            .context("tenant")?;
        coffer_testkit::consistency::problems(
            &self.env.catalog,
            &self.env.s3_client,
            &self.env.bucket,
            &tenant.storage.settings.base_path,
            &tenant.tenant_id,
            self.sim.org_id(),
        )
        .await
    }

    /// `coffer verify` (every object read back) against the store directly.
    fn verify(&self) -> anyhow::Result<serde_json::Value> {
        let mut verify = coffer(&self.env);
        verify.args(["verify", "--tenant", "acme", "--json"]);
        let out = verify.output()?;
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| String::from_utf8_lossy(&out.stderr).into_owned())?;
        Ok(report)
    }

    /// Faults the proxy injected, under their names.
    fn all_faults(&self) -> BTreeMap<&'static str, u64> {
        let mut all = self.injected.clone();
        for (fault, n) in self.proxy.injected() {
            *all.entry(fault.name()).or_default() += n;
        }
        all
    }

    /// Every message in the dead-letter queue, as `message id: reason`.
    async fn dead_letters(&self) -> anyhow::Result<Vec<String>> {
        let broker = self.env.broker().await?;
        let mut letters = Vec::new();
        while let Some(letter) = broker.get_dead_letter().await? {
            letters.push(format!(
                "{}: {}",
                letter.message_id.unwrap_or_default(),
                letter.reason.unwrap_or_default()
            ));
        }
        Ok(letters)
    }

    fn print_table(&self, verify_problems: usize, dead_letters: &[String]) {
        let faults = self.all_faults();
        let total: u64 = faults.values().sum();
        eprintln!(
            "\nfault suite, {} form (seed {})",
            self.form.name, self.seed
        );
        eprintln!("{:<32} {:>8}", "fault", "injected");
        for (fault, n) in &faults {
            eprintln!("{fault:<32} {n:>8}");
        }
        eprintln!("{:<32} {total:>8}", "total");
        eprintln!(
            "\n{:<16} {:>5} {:>10} {:>5} {:>11}",
            "job kind", "jobs", "completed", "lost", "duplicated"
        );
        for (kind, t) in &self.tally {
            eprintln!(
                "{kind:<16} {:>5} {:>10} {:>5} {:>11}",
                t.jobs, t.completed, t.lost, t.duplicated
            );
            for note in &t.notes {
                eprintln!("    {note}");
            }
        }
        let sum = |f: fn(&Tally) -> u64| self.tally.values().map(f).sum::<u64>();
        eprintln!(
            "{:<16} {:>5} {:>10} {:>5} {:>11}",
            "all",
            sum(|t| t.jobs),
            sum(|t| t.completed),
            sum(|t| t.lost),
            sum(|t| t.duplicated)
        );
        eprintln!("dead letters: {}", dead_letters.len());
        for letter in dead_letters {
            eprintln!("    {letter}");
        }
        eprintln!("coffer verify: {verify_problems} problems");
    }

    async fn finish(mut self) -> anyhow::Result<()> {
        for worker in &mut self.workers {
            let _ = worker.kill();
            let _ = worker.wait();
        }
        self.sim.shutdown().await;
        self.env.cleanup().await
    }
}

/// Problems `coffer verify --json` reported: per org, plus objects outside every org.
fn verify_problems(report: &serde_json::Value) -> usize {
    let per_org: Option<usize> = report["orgs"].as_array().map(|orgs| {
        orgs.iter()
            .map(|o| o["problems"].as_array().map_or(usize::MAX / 4, Vec::len))
            .sum()
    });
    let stray = report["stray"].as_array().map_or(usize::MAX / 4, Vec::len);
    per_org.map_or(usize::MAX / 4, |n| n + stray)
}

async fn run(form: Form) -> anyhow::Result<()> {
    let mut suite = Suite::start(form).await?;
    suite.backups().await?;
    suite.restore().await?;
    // Backups after the restore, so the sweep has a history of them to delete.
    suite.backups().await?;
    suite.sweep().await?;
    let report = suite.verify()?;
    let problems = verify_problems(&report);
    let dead_letters = suite.dead_letters().await?;
    suite.print_table(problems, &dead_letters);
    let lost: u64 = suite.tally.values().map(|t| t.lost).sum();
    let duplicated: u64 = suite.tally.values().map(|t| t.duplicated).sum();
    let faults: u64 = suite.all_faults().values().sum();
    let logs = common::logs_of(&suite.logs);
    if lost > 0 || duplicated > 0 || problems > 0 || !dead_letters.is_empty() {
        let tail: String = logs.lines().rev().take(200).collect::<Vec<_>>().join("\n");
        bail!(
            "{lost} lost, {duplicated} duplicated, {} dead letters, verify: {report} (seed {}); last log lines (newest first):\n{tail}",
            dead_letters.len(),
            suite.seed
        );
    }
    assert!(
        faults >= form.min_faults,
        "only {faults} faults injected (seed {})",
        suite.seed
    );
    suite.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_form() -> anyhow::Result<()> {
    run(SHORT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long form: cargo test -p coffer --test faults -- --ignored long_form --nocapture"]
async fn long_form() -> anyhow::Result<()> {
    run(LONG).await
}
