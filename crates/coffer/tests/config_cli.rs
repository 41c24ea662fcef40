//! The configuration file as an operator uses it: `coffer --config FILE` (or `COFFER_CONFIG`)
//! with the environment overriding it, unknown keys and bad values refused by name, secrets read
//! from files and never printed, and a real command reaching the database the file names.

mod common;

use std::path::PathBuf;
use std::process::Output;

use anyhow::Context;
use coffer_core::TenantId;
use coffer_testkit::TestEnv;
use secrecy::ExposeSecret;

use common::coffer;

/// Writes `text` to a file of the test's own.
fn write(env: &TestEnv, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("coffer-config-{}-{name}", env.id));
    std::fs::write(&path, text)?;
    Ok(path)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `coffer config check --json` with `--config path`; the JSON entry of `key`.
fn entry(checked: &serde_json::Value, key: &str) -> anyhow::Result<serde_json::Value> {
    checked["keys"]
        .as_array()
        .context("keys")?
        .iter()
        .find(|k| k["key"] == key)
        .cloned()
        .with_context(|| format!("{key} in {checked}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_is_refused_with_its_name_and_the_file() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let path = write(&env, "unknown.toml", "[worker]\nconcurency = 4\n")?;
    let out = coffer(&env)
        .args(["--config", path.to_str().context("path")?, "migrate"])
        .output()?;
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("worker.concurency"), "{stderr}");
    assert!(stderr.contains(path.to_str().context("path")?), "{stderr}");
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_is_refused_with_its_key() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let path = write(&env, "bad.toml", "[worker]\ntask_lease = \"5x\"\n")?;
    let out = coffer(&env)
        .env("COFFER_CONFIG", &path)
        .args(["config", "check"])
        .output()?;
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(r#"worker.task_lease: "5x" is not a duration"#),
        "{stderr}"
    );
    // The same value from the environment is refused by the same key, naming the variable.
    let out = coffer(&env)
        .env("COFFER_SCHEDULER_TICK", "often")
        .args(["config", "check"])
        .output()?;
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("scheduler.tick") && stderr.contains("COFFER_SCHEDULER_TICK"),
        "{stderr}"
    );
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_overrides_the_file_and_flags_override_both() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let path = write(
        &env,
        "order.toml",
        "vendor = \"file-vendor\"\n[worker]\nconcurrency = 3\ntask_lease = \"2m\"\n",
    )?;
    let mut check = coffer(&env);
    check
        .env("COFFER_WORKER_CONCURRENCY", "7")
        .args(["--config", path.to_str().context("path")?])
        .args(["config", "check", "--json", "--queue-prefix", "from-flag"]);
    let checked = common::run_json(check)?;
    let concurrency = entry(&checked, "worker.concurrency")?;
    assert_eq!(
        (&concurrency["value"], &concurrency["source"]),
        (&"7".into(), &"env".into())
    );
    let lease = entry(&checked, "worker.task_lease")?;
    assert_eq!(
        (&lease["value"], &lease["source"]),
        (&"2m".into(), &"file".into())
    );
    let prefix = entry(&checked, "amqp.queue_prefix")?;
    assert_eq!(
        (&prefix["value"], &prefix["source"]),
        (&"from-flag".into(), &"flag".into())
    );
    let tick = entry(&checked, "scheduler.tick")?;
    assert_eq!(
        (&tick["value"], &tick["source"]),
        (&"10s".into(), &"default".into())
    );
    env.cleanup().await
}

/// The database URL only in a secret file the configuration file names (the environment has
/// none): `config check` hides it, and `coffer tenant create` writes into that database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_from_a_file_is_used_and_never_printed() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let url = env.database_url.expose_secret().to_owned();
    let secret = write(&env, "database-url", &format!("{url}\n"))?;
    let path = write(
        &env,
        "secret.toml",
        &format!(
            "[database]\nurl_file = \"{}\"\n[s3]\nregion = \"eu-west-3\"\n",
            secret.display()
        ),
    )?;
    let config = path.to_str().context("path")?;

    for json in [false, true] {
        let mut cmd = coffer(&env);
        cmd.env_remove("COFFER_DATABASE_URL")
            .args(["--config", config, "config", "check"]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output()?;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        assert!(
            !stdout.contains(&url) && !stderr.contains(&url),
            "the database URL was printed"
        );
        assert!(!stdout.contains("coffer:coffer"), "{stdout}");
        if json {
            let checked: serde_json::Value = serde_json::from_str(&stdout)?;
            let db = entry(&checked, "database.url")?;
            assert_eq!(db["value"], "[redacted]");
            assert_eq!(db["source"], "file");
            assert_eq!(db["via"], "database.url_file");
        } else {
            assert!(stdout.contains("[redacted]"), "{stdout}");
        }
    }

    let out = coffer(&env)
        .env_remove("COFFER_DATABASE_URL")
        .env_remove("AWS_REGION")
        .args([
            "--config", config, "tenant", "create", "--tenant", "cfg-file",
        ])
        .args(["--bucket", "cfg-file-bucket"])
        .output()?;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains(&url) && !stderr.contains(&url));
    let tenant = env
        .catalog
        .tenant(&TenantId::new("cfg-file")?)
        .await?
        .context("the tenant is in the database the file names")?;
    assert_eq!(tenant.storage.settings.region, "eu-west-3");
    env.cleanup().await
}
