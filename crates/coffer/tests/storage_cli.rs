//! `coffer storage` as a vendor's operator runs it for a customer who gives access keys: set,
//! enable (refused before a test), test, enable, a backup by a `coffer worker` process into the
//! customer's bucket, show, then reset. Every line any of these processes printed or logged, at
//! debug level, is searched for the secret key, as is the catalog.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use coffer_core::JobId;
use coffer_storage::provision;
use coffer_testkit::iam::{create_user_with_keys, emulator_permission_policy};
use coffer_testkit::{TEST_ORG_ID, TestEnv, start_sim};
use secrecy::ExposeSecret;
use sqlx::Row;

use common::{Reaped, coffer, wait_for_backup, wait_for_exit};

/// Every output of every command of the test, for the final search.
#[derive(Default)]
struct Transcript(String);

impl Transcript {
    fn run(&mut self, mut cmd: Command) -> anyhow::Result<Output> {
        let out = cmd.output()?;
        self.0.push_str(&String::from_utf8_lossy(&out.stdout));
        self.0.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(out)
    }

    fn ok(&mut self, cmd: Command) -> anyhow::Result<String> {
        let out = self.run(cmd)?;
        anyhow::ensure!(
            out.status.success(),
            "command failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| !l.contains("DEBUG"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        Ok(String::from_utf8(out.stdout)?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moves_to_its_own_bucket_with_access_keys_and_the_secret_is_never_shown()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(10, 1, 100).await?;
    env.create_tenant("acme", "").await?;
    env.connect_org("acme", &sim).await?;
    env.broker().await?;

    // The customer's bucket, and a user whose policy is what `coffer storage policy` asks for.
    let bucket = format!("customer-{}", env.id);
    provision::ensure_bucket(&env.s3_client, &bucket, &env.stack.region).await?;
    let policy = emulator_permission_policy(&bucket, "byo/acme", Some(&env.kms_key.arn));
    let user = create_user_with_keys(&env, &format!("customer-{}", env.id), &policy).await?;
    let secret = user.keys.secret_access_key.expose_secret().to_owned();

    let dir = std::env::temp_dir().join(format!("coffer-storage-{}", env.id));
    std::fs::create_dir_all(&dir)?;
    let key_file = dir.join("envelope.key");
    std::fs::write(
        &key_file,
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
    )?;
    let cli = || {
        let mut cmd = coffer(&env);
        cmd.env("COFFER_ENVELOPE_KEY_FILE", &key_file)
            .env("RUST_LOG", "debug");
        cmd
    };
    let storage = |verb: &str| {
        let mut cmd = cli();
        cmd.args(["storage", verb, "--tenant", "acme"]);
        cmd
    };
    let mut transcript = Transcript::default();

    let mut set = storage("set");
    set.args([
        "--bucket",
        &bucket,
        "--base-path",
        "byo",
        "--sse",
        "sse-kms",
    ])
    .args(["--kms-key-id", &env.kms_key.arn])
    .args(["--access-key-id", &user.keys.access_key_id])
    .env("COFFER_STORAGE_SECRET_ACCESS_KEY", &secret);
    let said = transcript.ok(set)?;
    assert!(said.contains("coffer storage test"), "{said}");

    let refused = transcript.run(storage("enable"))?;
    assert!(!refused.status.success(), "enable before any test");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("coffer storage test"),
        "the refusal says what to do"
    );

    let mut test = storage("test");
    test.arg("--json");
    let report: serde_json::Value = serde_json::from_str(&transcript.ok(test)?)?;
    assert_eq!(report["ok"], true, "{report:#}");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .context("steps")?
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(steps[0], "check_keys");
    assert!(steps.contains(&"put_probe") && steps.contains(&"delete_probe"));

    transcript.ok(storage("enable"))?;

    // A worker process backs the org up into the customer's bucket with the customer's keys.
    let log_path = dir.join("worker.log");
    let mut worker = Reaped(
        cli()
            .arg("worker")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()?,
    );
    let mut enqueue = cli();
    enqueue.args(["enqueue", "backup", "--tenant", "acme", "--json"]);
    let enqueued: serde_json::Value = serde_json::from_str(&transcript.ok(enqueue)?)?;
    let job: JobId = enqueued["jobs"][0]["job_id"]
        .as_str()
        .context("job id")?
        .parse()?;
    let backup = wait_for_backup(&env, job, &log_path).await?;
    let own = env
        .catalog
        .tenant(&"acme".parse()?)
        .await?
        .context("tenant")?;
    assert_eq!(
        backup.storage_id, own.storage.storage_id,
        "written to own storage"
    );
    let keys = coffer_storage::list::list_keys(&env.s3_client, &bucket, "byo/acme/").await?;
    assert!(
        keys.iter().any(|k| k.ends_with("manifest.json")),
        "the backup is in the customer's bucket: {keys:?}"
    );
    let in_vendor = coffer_storage::list::list_keys(&env.s3_client, &env.bucket, "acme/").await?;
    assert!(in_vendor.is_empty(), "nothing went to the vendor's bucket");

    let mut show = storage("show");
    show.arg("--json");
    let shown: serde_json::Value = serde_json::from_str(&transcript.ok(show)?)?;
    assert_eq!(shown["new_backups_go_to"], "own");
    assert_eq!(shown["own"]["access"]["secret_access_key"], "(sealed)");
    assert_eq!(shown["own"]["last_test"]["ok"], true);
    assert_eq!(
        shown["external_ids"][0],
        format!("coffer-org-{TEST_ORG_ID}")
    );

    transcript.ok(storage("reset"))?;
    let mut list = cli();
    list.args([
        "backups",
        "list",
        "--tenant",
        "acme",
        "--org",
        TEST_ORG_ID,
        "--json",
    ]);
    let listed: serde_json::Value = serde_json::from_str(&transcript.ok(list)?)?;
    assert_eq!(
        listed["backups"][0]["backup_id"],
        backup.backup_id.to_string(),
        "a backup in the old storage is still listed after reset"
    );

    assert!(
        Command::new("kill")
            .args(["-TERM", &worker.id().to_string()])
            .status()?
            .success()
    );
    wait_for_exit(&mut worker, Duration::from_secs(30))?;
    let worker_log = std::fs::read_to_string(&log_path)?;
    assert!(
        worker_log.contains("DEBUG")
            || worker_log.contains("\"debug\"")
            || worker_log.len() > 10_000,
        "debug logging was on, so the search covers the SDK's own lines"
    );
    let everything = format!("{}{worker_log}", transcript.0);
    assert!(
        everything.contains(&user.keys.access_key_id),
        "the key id is not secret and shows"
    );
    assert!(
        !everything.contains(&secret),
        "the secret key was printed or logged"
    );

    let row = sqlx::query("SELECT secret_sealed FROM storages WHERE access = 'access_keys'")
        .fetch_one(env.catalog.pool())
        .await?;
    let sealed: String = row.try_get("secret_sealed")?;
    assert!(sealed.starts_with("v1.") && !sealed.contains(&secret));

    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
    env.cleanup().await
}
