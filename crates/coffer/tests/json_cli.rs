//! Commands a script drives, read back as `--json`: one JSON object on one line of stdout,
//! lists under a plural key, and the ids a next step needs (storage, hold, schedule).

mod common;

use anyhow::Context;
use coffer_testkit::{TEST_ORG_ID, TestEnv};

use common::{coffer, run_json};

fn json_of(env: &TestEnv, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut cmd = coffer(env);
    cmd.args(args).arg("--json");
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    anyhow::ensure!(
        text.trim_end().lines().count() == 1,
        "{args:?} printed more than one line: {text}"
    );
    Ok(serde_json::from_str(&text)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_by_a_script_answer_in_json() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let created = json_of(
        &env,
        &[
            "tenant",
            "create",
            "--tenant",
            "acme",
            "--bucket",
            &env.bucket,
        ],
    )?;
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["bucket"], env.bucket.as_str());
    let storage_id = created["storage_id"].as_u64().context("storage id")?;
    let tenant = env
        .catalog
        .tenant(&coffer_core::TenantId::new("acme")?)
        .await?
        .context("tenant")?;
    assert_eq!(tenant.storage.storage_id, storage_id);

    let set = json_of(
        &env,
        &["retention", "set", "--tenant", "acme", "--keep-last", "3"],
    )?;
    assert_eq!(set["policy"]["keep_last"], 3, "{set}");

    let hold = json_of(
        &env,
        &[
            "retention",
            "hold",
            "--tenant",
            "acme",
            "--reason",
            "case 41",
        ],
    )?;
    let hold_id = hold["hold_id"].as_u64().context("hold id")?.to_string();
    let released = json_of(
        &env,
        &[
            "retention",
            "release",
            "--tenant",
            "acme",
            "--hold",
            &hold_id,
        ],
    )?;
    assert_eq!(released["released"], true);
    let holds = json_of(&env, &["retention", "holds", "--tenant", "acme"])?;
    assert!(holds["holds"][0]["released_at"].is_string(), "{holds}");

    let schedule = json_of(
        &env,
        &[
            "schedule",
            "set",
            "--tenant",
            "acme",
            "--cron",
            "0 2 * * *",
            "--tz",
            "UTC",
        ],
    )?;
    let id = schedule["id"].as_u64().context("schedule id")?.to_string();
    let disabled = json_of(&env, &["schedule", "disable", "--id", &id])?;
    assert_eq!(disabled["enabled"], false);
    let enabled = json_of(&env, &["schedule", "enable", "--id", &id])?;
    assert_eq!(enabled["enabled"], true);
    let removed = json_of(&env, &["schedule", "remove", "--id", &id])?;
    assert_eq!(removed["removed"], true);
    let listed = json_of(&env, &["schedule", "list", "--tenant", "acme"])?;
    assert_eq!(listed["schedules"], serde_json::json!([]));

    common::offline_org(
        &env,
        &coffer_core::TenantId::new("acme")?,
        &TEST_ORG_ID.parse()?,
    )
    .await?;
    let resumed = json_of(
        &env,
        &[
            "tenant",
            "resume-org",
            "--tenant",
            "acme",
            "--org",
            TEST_ORG_ID,
        ],
    )?;
    assert_eq!(resumed["was_paused"], false);

    // The IAM policies: one line with --json, indented for pasting without; the same JSON.
    let policy_args = [
        "storage",
        "policy",
        "--tenant",
        "acme",
        "--vendor-principal-arn",
        "arn:aws:iam::111122223333:role/coffer-worker",
    ];
    let compact = json_of(&env, &policy_args)?;
    let mut plain = coffer(&env);
    plain.args(policy_args);
    let pretty = run_json(plain)?;
    assert_eq!(compact, pretty);
    assert!(compact["trust_policy"].is_object(), "{compact}");
    env.cleanup().await
}
