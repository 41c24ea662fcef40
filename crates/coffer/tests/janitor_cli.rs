//! `coffer retention` and `coffer janitor plan` as operators run them, over a back-dated history
//! of backups: the policy, a hold, and a plan that says for every backup whether it goes and
//! which rule decided.

mod common;

use std::collections::BTreeMap;

use coffer_core::{BackupId, JobId, OrgId, TenantId};
use coffer_testkit::TestEnv;

use common::{coffer, run_json};

const ORG: &str = "00D000000000001AAA";

/// A complete full backup of ORG, `days` old.
async fn backup(env: &TestEnv, storage_id: u64, days: u32) -> anyhow::Result<BackupId> {
    let (tenant, org) = (TenantId::new("acme")?, OrgId::new(ORG)?);
    let b = env
        .catalog
        .begin_backup(JobId::generate(), &tenant, &org, storage_id, "full")
        .await?;
    env.catalog.complete_backup(b.backup_id).await?;
    coffer_testkit::history::back_date(&env.catalog, b.backup_id, days).await?;
    Ok(b.backup_id)
}

/// `janitor plan --json` of ORG: each backup's decision and rules.
fn plan(env: &TestEnv) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let mut cmd = coffer(env);
    cmd.args(["janitor", "plan", "--tenant", "acme", "--json"]);
    let out = run_json(cmd)?;
    let orgs = out["orgs"].as_array().expect("orgs");
    assert_eq!(orgs.len(), 1, "{out}");
    assert_eq!(orgs[0]["org_id"], ORG);
    Ok(orgs[0]["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .map(|d| {
            let rules = match d["decision"].as_str() {
                Some("keep") => d["reasons"].to_string(),
                _ => d["reason"].to_string(),
            };
            let decision = d["decision"].as_str().unwrap_or_default().to_owned();
            (
                d["backup_id"].as_str().unwrap_or_default().to_owned(),
                (decision, rules),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_and_a_hold_decide_the_plan_and_the_newest_backup_stays() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let tenant = env.create_tenant("acme", "").await?;
    common::offline_org(&env, &TenantId::new("acme")?, &OrgId::new(ORG)?).await?;
    let storage_id = tenant.storage.storage_id;
    let mut ids = Vec::new();
    for days in [40, 20, 10, 3] {
        ids.push(backup(&env, storage_id, days).await?);
    }
    let id = |i: usize| ids[i].to_string();

    // Without a policy the plan deletes nothing.
    assert!(plan(&env)?.values().all(|(d, _)| d == "keep"));

    // A policy needs a rule; then 7 days keeps the 3-day-old backup only.
    let refused = coffer(&env)
        .args(["retention", "set", "--tenant", "acme"])
        .output()?;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at least one rule"));
    let set = coffer(&env)
        .args(["retention", "set", "--tenant", "acme", "--keep-days", "7"])
        .output()?;
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let decided = plan(&env)?;
    assert_eq!(decided[&id(3)].0, "keep");
    assert!(decided[&id(3)].1.contains("newest") && decided[&id(3)].1.contains("days"));
    for old in [0, 1, 2] {
        assert_eq!(decided[&id(old)].0, "delete", "{decided:?}");
        assert!(decided[&id(old)].1.contains("7 days"), "{decided:?}");
    }

    // A hold on the 20-day-old backup keeps it, for that reason.
    let mut hold = coffer(&env);
    hold.args(["retention", "hold", "--tenant", "acme", "--backup", &id(1)]);
    hold.args(["--reason", "case 41", "--json"]);
    let hold_id = run_json(hold)?["hold_id"].as_u64().expect("hold id");
    let decided = plan(&env)?;
    assert_eq!(
        decided[&id(1)],
        ("keep".to_owned(), r#"[{"rule":"hold"}]"#.to_owned())
    );
    let mut holds = coffer(&env);
    holds.args(["retention", "holds", "--tenant", "acme", "--json"]);
    let listed = run_json(holds)?;
    assert_eq!(listed["holds"][0]["hold_id"], hold_id);
    assert_eq!(listed["holds"][0]["reason"], "case 41");

    // Every backup older than the policy: the newest complete one still stays.
    let release = coffer(&env)
        .args([
            "retention",
            "release",
            "--tenant",
            "acme",
            "--hold",
            &hold_id.to_string(),
        ])
        .output()?;
    assert!(release.status.success());
    sqlx::query("DELETE FROM backups WHERE backup_id = ?")
        .bind(id(3))
        .execute(env.catalog.pool())
        .await?;
    let decided = plan(&env)?;
    assert_eq!(decided[&id(2)].0, "keep", "{decided:?}");
    assert!(decided[&id(2)].1.contains("newest"));
    assert_eq!(decided[&id(0)].0, "delete");
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janitor_run_deletes_what_the_plan_drops_and_marks_records_it() -> anyhow::Result<()> {
    use coffer_testkit::history;
    let env = TestEnv::new().await?;
    env.create_tenant("acme", "coffer").await?;
    let (tenant, org) = (TenantId::new("acme")?, OrgId::new(ORG)?);
    common::offline_org(&env, &tenant, &org).await?;
    let old = history::backup(&env, &tenant, &org, 5, 5, &[], 30).await?;
    let newest = history::backup(&env, &tenant, &org, 5, 5, &[], 1).await?;
    let set = coffer(&env)
        .args(["retention", "set", "--tenant", "acme", "--keep-last", "1"])
        .output()?;
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );

    // The default grace period (a day) marks and waits; run with `--grace 0`, the mark is due.
    let mut marked = coffer(&env);
    marked.args(["janitor", "run", "--tenant", "acme", "--json"]);
    let report = run_json(marked)?;
    assert_eq!(report["orgs"][0]["marked"][0], old.to_string(), "{report}");
    assert_eq!(
        report["orgs"][0]["expired"].as_array().map(Vec::len),
        Some(0)
    );
    let mut now = coffer(&env);
    now.args([
        "janitor", "run", "--tenant", "acme", "--grace", "0", "--json",
    ]);
    let report = run_json(now)?;
    assert_eq!(
        report["orgs"][0]["expired"][0]["backup_id"],
        old.to_string(),
        "{report}"
    );
    assert_eq!(report["orgs"][0]["expired"][0]["objects_deleted"], 5);
    assert!(env.catalog.backup(old).await?.is_none());
    assert!(env.catalog.backup(newest).await?.is_some());

    let mut marks = coffer(&env);
    marks.args(["janitor", "marks", "--tenant", "acme", "--json"]);
    let marks = run_json(marks)?;
    assert_eq!(marks["marks"][0]["backup_id"], old.to_string());
    assert_eq!(marks["marks"][0]["stage"], "deleted");
    assert_eq!(marks["marks"][0]["reason"]["rule"], "expired");

    // `coffer janitor` alone says what to do; `coffer erase` refuses what is not a record id.
    let bare = coffer(&env).arg("janitor").output()?;
    assert!(!bare.status.success());
    assert!(String::from_utf8_lossy(&bare.stderr).contains("--every"));
    let bad = coffer(&env)
        .args([
            "erase",
            "--tenant",
            "acme",
            "--org",
            ORG,
            "--record",
            "../../etc",
        ])
        .output()?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("18-character"));
    env.cleanup().await
}
