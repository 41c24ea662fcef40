//! Restores through the real queue, bucket and catalog, into the simulated org: accounts with a
//! parent hierarchy and everything their delete took with them are deleted and purged, then
//! restored from the backup under new ids with every link pointing at the restored parent; the
//! same restore run again creates nothing; a record still in the Recycle Bin is undeleted and
//! keeps its id.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use coffer_catalog::{RecordState, RestoreAction, RestoreRow};
use coffer_core::OrgId;
use coffer_e2e::*;
use coffer_proto::v1::{RestoreMode, RestoreRequested, RestoreScope};
use coffer_sfsim::OrgSeed;
use coffer_sfsim::SimHandle;
use coffer_sfsim::schema::{RESTORE_KEY_FIELD, RESTORE_KEY_OBJECTS};
use coffer_testkit::org::{SYSTEM, createable_fields, same_value, snapshot};
use coffer_testkit::{TEST_ORG_ID, TestEnv, start_sim, start_sim_of};

const WAIT: Duration = Duration::from_secs(120);

/// The ContentDocuments whose every link points at one of `accounts`.
fn files_only_of(
    before: &HashMap<String, (String, BTreeMap<String, String>)>,
    accounts: &[&String],
) -> Vec<String> {
    let mut links: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (sobject, fields) in before.values() {
        if sobject == "ContentDocumentLink" {
            links
                .entry(fields["ContentDocumentId"].as_str())
                .or_default()
                .push(fields["LinkedEntityId"].as_str());
        }
    }
    links
        .into_iter()
        .filter(|(_, linked)| {
            linked
                .iter()
                .all(|l| accounts.iter().any(|a| a.as_str() == *l))
        })
        .map(|(document, _)| document.to_owned())
        .collect()
}

/// An account with a parent account such that the two have, between them, contacts,
/// opportunities, cases, tasks and invoices (the first such pair by id).
fn account_pair_with_every_kind_of_child(
    before: &HashMap<String, (String, BTreeMap<String, String>)>,
) -> (String, String) {
    let kinds_under = |account: &str| -> BTreeSet<&str> {
        before
            .values()
            .filter(|(_, f)| {
                ["AccountId", "WhatId", "Account__c"]
                    .iter()
                    .any(|l| f.get(*l).map(String::as_str) == Some(account))
            })
            .map(|(sobject, _)| sobject.as_str())
            .collect()
    };
    let mut accounts: Vec<&BTreeMap<String, String>> = before
        .values()
        .filter(|(sobject, _)| sobject == "Account")
        .map(|(_, f)| f)
        .collect();
    accounts.sort_by(|a, b| a["Id"].cmp(&b["Id"]));
    accounts
        .iter()
        .filter(|f| !f["ParentId"].is_empty())
        .map(|f| (f["Id"].clone(), f["ParentId"].clone()))
        .find(|(child, parent)| {
            let kinds: BTreeSet<&str> = kinds_under(child)
                .union(&kinds_under(parent))
                .copied()
                .collect();
            ["Contact", "Opportunity", "Case", "Task", "Invoice__c"]
                .iter()
                .all(|k| kinds.contains(k))
        })
        .expect("an account pair with every kind of child")
}

fn restore_request(backup_id: &str, ids: &[String], mode: RestoreMode) -> RestoreRequested {
    RestoreRequested {
        tenant_id: "acme".to_owned(),
        org_id: TEST_ORG_ID.to_owned(),
        backup_id: backup_id.to_owned(),
        as_of_unix_ms: 0,
        target_org_id: String::new(),
        scope: Some(RestoreScope {
            sobjects: Vec::new(),
            record_ids: ids.to_vec(),
            child_depth: 2,
            parent_depth: 0,
        }),
        mode: mode as i32,
    }
}

/// Whether `sobject` is left out of restores for now (and reported): Documents.
fn is_file_object(sobject: &str) -> bool {
    sobject == "Document"
}

/// A backed-up org from which an account with a parent, and all their delete took, is gone
/// for good (deleted, Recycle Bin purged).
struct Purged {
    env: TestEnv,
    sim: SimHandle,
    worker: RunningWorker,
    broker: coffer_queue::Broker,
    backup: coffer_catalog::BackupRecord,
    before: HashMap<String, (String, BTreeMap<String, String>)>,
    gone: BTreeSet<String>,
    accounts: Vec<String>,
    /// The bodies of the attachments the delete took, by id.
    bodies: HashMap<String, Vec<u8>>,
}

async fn purged_org() -> anyhow::Result<Purged> {
    purged_org_of(
        OrgSeed::new(OrgId::new(TEST_ORG_ID)?, 42, 16, 2),
        usize::MAX,
    )
    .await
}

/// [`purged_org`] of `org`, whose restores load `bulk_threshold` inserts and more of one
/// object with Bulk API 2.0 (where the org has the restore key).
async fn purged_org_of(org: OrgSeed, bulk_threshold: usize) -> anyhow::Result<Purged> {
    let env = TestEnv::new().await?;
    let sim = start_sim_of(org, 25).await?;
    env.create_tenant("acme", "coffer").await?;
    env.connect_org("acme", &sim).await?;
    let settings = coffer_worker::WorkerSettings {
        restore_progress_every: Duration::from_millis(100),
        restore_bulk_threshold: bulk_threshold,
        ..small_part_settings(&env)
    };
    let worker = start_worker(&env, settings).await?;
    let broker = env.broker().await?;
    let job = request_backup(&broker, "acme", TEST_ORG_ID).await?;
    let backup = wait_for_backup(&env, job, WAIT).await?;
    let before = snapshot(&sim);

    // An account with a parent account: both are deleted (taking their contacts,
    // opportunities, cases, tasks, invoices and files with them), and the Recycle Bin is purged.
    let (child, parent) = account_pair_with_every_kind_of_child(&before);
    let bodies: HashMap<String, Vec<u8>> = before
        .iter()
        .filter_map(|(id, (sobject, _))| {
            let field = match sobject.as_str() {
                "Attachment" => "Body",
                "ContentVersion" => "VersionData",
                _ => return None,
            };
            Some((id.clone(), sim.blob(sobject, id, field)?))
        })
        .collect();
    sim.delete("Account", &[child.as_str(), parent.as_str()])?;
    // The files shared only with those accounts are deleted too (their versions and links go
    // with them).
    let documents = files_only_of(&before, &[&child, &parent]);
    assert!(
        !documents.is_empty(),
        "no file shared only with the accounts"
    );
    let documents: Vec<&str> = documents.iter().map(String::as_str).collect();
    sim.delete("ContentDocument", &documents)?;
    let now = snapshot(&sim);
    let gone: BTreeSet<String> = before
        .keys()
        .filter(|id| !now.contains_key(*id))
        .cloned()
        .collect();
    let gone_objects: BTreeSet<&str> = gone.iter().map(|id| before[id].0.as_str()).collect();
    for expected in [
        "Account",
        "Contact",
        "Opportunity",
        "Case",
        "Task",
        "Invoice__c",
    ] {
        assert!(
            gone_objects.contains(expected),
            "the delete took no {expected}: {gone_objects:?}"
        );
    }
    assert!(sim.empty_recycle_bin() > 0);
    Ok(Purged {
        env,
        sim,
        worker,
        broker,
        backup,
        before,
        gone,
        accounts: vec![child, parent],
        bodies,
    })
}

impl Purged {
    async fn restore(&self) -> anyhow::Result<coffer_catalog::RestoreRecord> {
        let request = restore_request(
            &self.backup.backup_id.to_string(),
            &self.accounts,
            RestoreMode::Execute,
        );
        let job = request_restore(&self.broker, request).await?;
        wait_for_restore(&self.env, job, WAIT).await
    }

    /// Checks the org after `restore`: every record the delete took (files aside) is back once,
    /// under a new id, with its backed-up fields, and every lookup points at the restored
    /// parent (or at the same record as before, for parents that were never deleted).
    async fn check(&self, restore: &coffer_catalog::RestoreRecord) -> anyhow::Result<()> {
        let (before, gone) = (&self.before, &self.gone);
        let rows = self
            .env
            .catalog
            .restore_rows(&restore.restore_id, None, None)
            .await?;
        let by_source: HashMap<&str, &RestoreRow> =
            rows.iter().map(|r| (r.source_id.as_str(), r)).collect();
        for id in gone.iter().filter(|id| !is_file_object(&before[*id].0)) {
            let row = by_source
                .get(id.as_str())
                .unwrap_or_else(|| panic!("{} {id} is not in the restore", before[id].0));
            assert_eq!(row.action, RestoreAction::Insert, "{id}");
            assert!(
                matches!(row.state, RecordState::Written | RecordState::Linked),
                "{} {id} not restored: {:?}",
                row.sobject,
                row.error
            );
        }
        let new_id = |source: &str| by_source.get(source).and_then(|r| r.target_id.clone());
        let writable = createable_fields(&self.env.catalog, self.backup.backup_id).await?;
        let after = snapshot(&self.sim);
        let files_gone = gone
            .iter()
            .filter(|id| is_file_object(&before[*id].0))
            .count();
        assert_eq!(
            after.len(),
            before.len() - files_gone,
            "the org holds another number of records than before the delete"
        );
        for row in rows.iter().filter(|r| !is_file_object(&r.sobject)) {
            let target = row.target_id.as_deref().expect("target id");
            if gone.contains(&row.source_id) {
                assert_ne!(
                    target, row.source_id,
                    "a purged record comes back with a new id"
                );
            } else {
                // A record the delete did not take (a child account whose parent link was
                // cleared) is updated in place, back to its backed-up state.
                assert_eq!(target, row.source_id);
            }
            let (sobject, restored) = after
                .get(target)
                .unwrap_or_else(|| panic!("{} {target} is not in the org", row.sobject));
            assert_eq!(sobject, &row.sobject);
            let (_, original) = &before[&row.source_id];
            for (field, value) in original {
                let settable = writable.get(sobject).is_some_and(|f| f.contains(field));
                // The restore key holds the source id (checked where the org has it).
                if SYSTEM.contains(&field.as_str()) || !settable || field == RESTORE_KEY_FIELD {
                    continue;
                }
                let want = new_id(value).unwrap_or_else(|| value.clone());
                let got = restored.get(field).cloned().unwrap_or_default();
                assert!(
                    same_value(&got, &want),
                    "{sobject} {} field {field}: {got:?}, backed up {want:?}",
                    row.source_id
                );
            }
        }
        // Attachments come back with their bodies, byte for byte (so with the same MD5).
        let mut attachments = 0;
        for row in rows.iter().filter(|r| r.sobject == "Attachment") {
            let target = row.target_id.as_deref().expect("attachment restored");
            let body = self.sim.blob("Attachment", target, "Body").expect("a body");
            let want = &self.bodies[&row.source_id];
            assert!(body == *want, "attachment {} body differs", row.source_id);
            assert_eq!(
                after[target].1["BodyLength"],
                want.len().to_string(),
                "attachment {} length",
                row.source_id
            );
            attachments += 1;
        }
        assert!(attachments > 0, "no attachment restored");
        // Files come back as new documents whose version has the same bytes, so the same MD5.
        let mut files = 0;
        for row in rows
            .iter()
            .filter(|r| r.sobject == "ContentVersion" && r.action == RestoreAction::Insert)
        {
            let target = row.target_id.as_deref().expect("version restored");
            let body = self
                .sim
                .blob("ContentVersion", target, "VersionData")
                .expect("a body");
            assert!(
                body == self.bodies[&row.source_id],
                "file {} differs",
                row.source_id
            );
            let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(&body));
            assert_eq!(
                after[target].1["Checksum"], md5,
                "file {} checksum",
                row.source_id
            );
            files += 1;
        }
        assert!(files > 0, "no file restored");
        let (child, parent) = (&self.accounts[0], &self.accounts[1]);
        let restored_child = new_id(child).expect("child account restored");
        assert_eq!(
            after[&restored_child].1["ParentId"],
            new_id(parent).expect("parent account restored"),
            "the hierarchy is rebuilt under the new ids"
        );
        Ok(())
    }

    async fn finish(self) -> anyhow::Result<()> {
        self.worker.stop().await;
        self.sim.shutdown().await;
        self.env.cleanup().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_purged_accounts_come_back_with_every_link_rebuilt() -> anyhow::Result<()> {
    let org = purged_org().await?;
    let events = org.broker.watch_events("restore", "job.restore.#").await?;
    let restore = org.restore().await?;
    org.check(&restore).await?;

    // Lifecycle and progress events of the restore on the events exchange.
    let mut keys = Vec::new();
    while let Some((key, _)) = org.broker.next_event(&events).await? {
        keys.push(key);
    }
    assert_eq!(
        keys.first().map(String::as_str),
        Some("job.restore.started"),
        "{keys:?}"
    );
    assert_eq!(
        keys.last().map(String::as_str),
        Some("job.restore.completed"),
        "{keys:?}"
    );
    assert!(keys.iter().any(|k| k == "job.restore.progress"), "{keys:?}");
    let plan: serde_json::Value =
        serde_json::from_str(restore.plan_json.as_deref().expect("plan"))?;
    // Self-lookups wait for the second pass; parents come first.
    let deferred = plan["order"]["deferred"].as_array().expect("deferred");
    assert!(
        deferred.contains(&serde_json::json!({"sobject": "Account", "field": "ParentId"})),
        "{plan}"
    );
    let order: Vec<&str> = plan["order"]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|o| o.as_str())
        .collect();
    let at = |o: &str| order.iter().position(|x| *x == o).expect("object in order");
    assert!(
        at("Account") < at("Contact") && at("Contact") < at("Case"),
        "{order:?}"
    );
    assert!(
        at("Opportunity") < at("Task") && at("Case") < at("Task"),
        "{order:?}"
    );
    assert!(plan["left_out"].get("Attachment").is_none(), "{plan}");
    assert!(plan["left_out"].get("ContentVersion").is_none(), "{plan}");
    // This org lacks the restore key field: the plan says which inserts a crash could repeat,
    // and how to prevent it.
    let warnings = plan["warnings"].as_array().expect("warnings");
    assert!(
        warnings.iter().any(|w| {
            let w = w.as_str().unwrap_or_default();
            w.starts_with("Account: ") && w.contains(RESTORE_KEY_FIELD)
        }),
        "{plan}"
    );

    // The same restore again: everything is there already, nothing is created.
    let count = snapshot(&org.sim).len();
    let second = org.restore().await?;
    assert_eq!(
        snapshot(&org.sim).len(),
        count,
        "the second run created records"
    );
    let second_rows = org
        .env
        .catalog
        .restore_rows(&second.restore_id, None, None)
        .await?;
    assert!(
        second_rows.iter().all(|r| r.action == RestoreAction::Skip),
        "{:?}",
        second_rows
            .iter()
            .map(|r| (r.sobject.as_str(), r.action))
            .collect::<Vec<_>>()
    );
    org.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_interrupted_midway_ends_as_an_uninterrupted_one() -> anyhow::Result<()> {
    let org = purged_org().await?;
    // Two writes go through; the third fails (Salesforce unavailable), so the job fails
    // part-way and its retry continues from what the catalog says was written.
    org.sim.fail_collection_write_after(2);
    let restore = org.restore().await?;
    let job = org.env.catalog.job(restore.job_id).await?.expect("job");
    assert!(
        job.attempts >= 2,
        "the restore was not interrupted: {job:?}"
    );
    org.check(&restore).await?;
    org.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_restore_key_a_create_whose_answer_is_lost_is_found_not_made_twice()
-> anyhow::Result<()> {
    // Salesforce commits the restore's first create (the accounts) and the answer is lost, as
    // when the worker dies between the two: the retry finds those accounts in the org by their
    // values instead of creating them again.
    let org = purged_org().await?;
    org.sim.lose_collection_answer_after(0);
    let restore = org.restore().await?;
    let job = org.env.catalog.job(restore.job_id).await?.expect("job");
    assert!(job.attempts >= 2, "no answer was lost: {job:?}");
    org.check(&restore).await?;
    org.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_restore_key_a_lost_answer_creates_nothing_twice_and_many_inserts_go_by_bulk()
-> anyhow::Result<()> {
    // The org has the restore key field; objects with three inserts or more are loaded with
    // Bulk API 2.0. Salesforce commits the restore's first write and its answer is lost (the
    // crash window between a create and the catalog's record of it): the retry finds the
    // records by their key instead of creating them again.
    let seed = OrgSeed::new(OrgId::new(TEST_ORG_ID)?, 42, 16, 2).with_restore_key();
    let org = purged_org_of(seed, 3).await?;
    org.sim.lose_collection_answer_after(0);
    let restore = org.restore().await?;
    let job = org.env.catalog.job(restore.job_id).await?.expect("job");
    assert!(job.attempts >= 2, "no answer was lost: {job:?}");
    org.check(&restore).await?;

    // Every inserted record carries its source id in the key, once.
    let rows = org
        .env
        .catalog
        .restore_rows(&restore.restore_id, None, None)
        .await?;
    let mut keyed = 0;
    for row in rows.iter().filter(|r| r.action == RestoreAction::Insert) {
        if !RESTORE_KEY_OBJECTS.contains(&row.sobject.as_str()) {
            continue;
        }
        let target = row.target_id.as_deref().expect("restored");
        let record = org.sim.record(&row.sobject, target).expect("in the org");
        assert_eq!(
            record.get(RESTORE_KEY_FIELD),
            Some(&row.source_id),
            "{target}"
        );
        keyed += 1;
    }
    assert!(keyed > 0);
    let plan: serde_json::Value =
        serde_json::from_str(restore.plan_json.as_deref().expect("plan"))?;
    assert_eq!(plan["restore_key"]["field"], RESTORE_KEY_FIELD, "{plan}");
    assert!(
        plan["warnings"].as_array().is_some_and(|w| w
            .iter()
            .all(|w| !w.as_str().unwrap_or_default().starts_with("Contact"))),
        "{plan}"
    );
    // Contacts (four of them) went as one Bulk API upsert on the key.
    let loads = org.sim.ingest_jobs();
    assert!(
        loads.iter().any(|(object, op, state)| object == "Contact"
            && op == "upsert"
            && state == "JobComplete"),
        "{loads:?}"
    );
    org.finish().await
}

/// The record type of `record` in `org` as `Object.DeveloperName`, if it has one.
fn record_type_name(
    org: &HashMap<String, (String, BTreeMap<String, String>)>,
    record: &BTreeMap<String, String>,
) -> Option<String> {
    let id = record.get("RecordTypeId").filter(|v| !v.is_empty())?;
    let (_, kind) = org.get(id)?;
    Some(format!("{}.{}", kind["SobjectType"], kind["DeveloperName"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn into_another_org_users_and_record_types_are_mapped_and_a_missing_one_is_reported()
-> anyhow::Result<()> {
    // A sandbox with other ids for the same users (by email) and record types (by developer
    // name), and without the Case record type "Support".
    let env = TestEnv::new().await?;
    let source = start_sim(16, 2, 25).await?;
    let sandbox_id = OrgId::new("00D5g0000004TgtAAA")?;
    let sandbox = start_sim_of(
        OrgSeed::new(sandbox_id.clone(), 7, 0, 0).without_record_type("Support"),
        25,
    )
    .await?;
    env.create_tenant("acme", "coffer").await?;
    env.connect_org("acme", &source).await?;
    env.connect_org("acme", &sandbox).await?;
    let worker = start_worker(&env, small_part_settings(&env)).await?;
    let broker = env.broker().await?;
    let job = request_backup(&broker, "acme", TEST_ORG_ID).await?;
    let backup = wait_for_backup(&env, job, WAIT).await?;
    let from = snapshot(&source);

    // Accounts with cases of both types, and everything under them.
    let case_type = |case: &BTreeMap<String, String>| record_type_name(&from, case);
    let mut accounts: Vec<String> = Vec::new();
    for kind in ["Case.Support", "Case.Billing"] {
        let account = from
            .values()
            .filter(|(o, _)| o == "Case")
            .find(|(_, c)| case_type(c).as_deref() == Some(kind) && !c["AccountId"].is_empty())
            .map(|(_, c)| c["AccountId"].clone())
            .unwrap_or_else(|| panic!("no account with a {kind} case"));
        accounts.push(account);
    }
    let request = RestoreRequested {
        target_org_id: sandbox_id.to_string(),
        ..restore_request(
            &backup.backup_id.to_string(),
            &accounts,
            RestoreMode::Execute,
        )
    };
    let restore = wait_for_restore(&env, request_restore(&broker, request).await?, WAIT).await?;
    worker.stop().await;

    let plan: serde_json::Value =
        serde_json::from_str(restore.plan_json.as_deref().expect("plan"))?;
    let missing: Vec<&str> = plan["record_types"]["missing"]
        .as_object()
        .expect("missing record types")
        .values()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(missing, ["Case.Support"], "{plan}");
    assert!(
        plan["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().unwrap_or_default().contains("Case.Support"))),
        "{plan}"
    );

    // Every record written; each keeps its record type by name (none where the sandbox lacks
    // it) and its owner by email.
    let rows = env
        .catalog
        .restore_rows(&restore.restore_id, None, None)
        .await?;
    let failed: Vec<_> = rows
        .iter()
        .filter(|r| !matches!(r.state, RecordState::Written | RecordState::Linked))
        .map(|r| (&r.sobject, &r.source_id, &r.error))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    let to = snapshot(&sandbox);
    let email = |org: &HashMap<String, (String, BTreeMap<String, String>)>, user: &str| {
        org.get(user).map(|(_, u)| u["Email"].clone())
    };
    let mut typed = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| matches!(r.sobject.as_str(), "Account" | "Opportunity" | "Case"))
    {
        let (_, was) = &from[&row.source_id];
        let (_, now) = &to[row.target_id.as_deref().expect("restored")];
        let want = record_type_name(&from, was).filter(|k| k != "Case.Support");
        assert_eq!(
            record_type_name(&to, now),
            want,
            "{} {}",
            row.sobject,
            row.source_id
        );
        *typed.entry(want).or_insert(0) += 1;
        assert_eq!(
            email(&to, &now["OwnerId"]),
            email(&from, &was["OwnerId"]),
            "owner of {} {}",
            row.sobject,
            row.source_id
        );
    }
    assert!(
        typed.contains_key(&Some("Case.Billing".to_owned())),
        "{typed:?}"
    );
    assert!(
        typed.contains_key(&None),
        "no case lost its record type: {typed:?}"
    );
    source.shutdown().await;
    sandbox.shutdown().await;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_in_the_recycle_bin_is_undeleted_and_keeps_its_id() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(8, 2, 25).await?;
    env.create_tenant("acme", "coffer").await?;
    env.connect_org("acme", &sim).await?;
    let worker = start_worker(&env, small_part_settings(&env)).await?;
    let broker = env.broker().await?;
    let job = request_backup(&broker, "acme", TEST_ORG_ID).await?;
    let backup = wait_for_backup(&env, job, WAIT).await?;
    let before = snapshot(&sim);
    let account = before
        .values()
        .find(|(sobject, _)| sobject == "Account")
        .map(|(_, f)| f["Id"].clone())
        .expect("an account");
    sim.delete("Account", &[account.as_str()])?;
    assert!(!snapshot(&sim).contains_key(&account));

    // Plan first: it says undelete, and changes nothing.
    let plan_job = request_restore(
        &broker,
        restore_request(
            &backup.backup_id.to_string(),
            std::slice::from_ref(&account),
            RestoreMode::PlanOnly,
        ),
    )
    .await?;
    let planned = wait_for_restore(&env, plan_job, WAIT).await?;
    let plan: serde_json::Value =
        serde_json::from_str(planned.plan_json.as_deref().expect("plan"))?;
    assert_eq!(plan["counts"]["Account"]["undelete"], 1, "{plan}");
    assert!(
        !snapshot(&sim).contains_key(&account),
        "a plan-only restore wrote"
    );

    let job = request_restore(
        &broker,
        restore_request(
            &backup.backup_id.to_string(),
            std::slice::from_ref(&account),
            RestoreMode::Execute,
        ),
    )
    .await?;
    let restore = wait_for_restore(&env, job, WAIT).await?;
    worker.stop().await;
    let after = snapshot(&sim);
    assert_eq!(after[&account].1["Name"], before[&account].1["Name"]);
    let rows = env
        .catalog
        .restore_rows(&restore.restore_id, None, None)
        .await?;
    let row = rows
        .iter()
        .find(|r| r.source_id == account)
        .expect("account row");
    assert_eq!(row.action, RestoreAction::Undelete);
    assert_eq!(row.target_id.as_deref(), Some(account.as_str()));
    // Its contacts came back with it, with their own ids.
    for (id, (sobject, fields)) in &before {
        if sobject == "Contact" && fields["AccountId"] == account {
            assert!(after.contains_key(id), "contact {id} not back");
        }
    }
    sim.shutdown().await;
    env.cleanup().await
}

/// Salesforce gives up on a query with `QUERY_TIMEOUT` while the restore reads the org's state:
/// the read is split by id range and the restore completes (before, the job was dead-lettered:
/// one timeout lost a restore; the fault suite found it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_timeout_while_planning_is_read_in_halves_and_the_restore_completes()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(8, 2, 25).await?;
    env.create_tenant_with("acme", "coffer", coffer_catalog::Sse::S3)
        .await?;
    env.connect_org("acme", &sim).await?;
    let worker = start_worker(&env, small_part_settings(&env)).await?;
    let broker = env.broker().await?;
    let job = request_backup(&broker, "acme", TEST_ORG_ID).await?;
    let backup = wait_for_backup(&env, job, WAIT).await?;
    let before = snapshot(&sim);
    let account = before
        .values()
        .find(|(sobject, _)| sobject == "Account")
        .map(|(_, f)| f["Id"].clone())
        .expect("an account");
    sim.delete("Account", &[account.as_str()])?;
    sim.empty_recycle_bin();
    sim.query_timeout_next_job();
    let job = request_restore(
        &broker,
        restore_request(
            &backup.backup_id.to_string(),
            std::slice::from_ref(&account),
            RestoreMode::Execute,
        ),
    )
    .await?;
    let restore = wait_for_restore(&env, job, WAIT).await?;
    worker.stop().await;
    assert_eq!(restore.state, coffer_catalog::RestoreState::Complete);
    assert!(
        broker.get_dead_letter().await?.is_none(),
        "nothing dead-lettered"
    );
    let after = snapshot(&sim);
    assert_eq!(
        after.len(),
        before.len(),
        "every record of the org is back, once"
    );
    sim.shutdown().await;
    env.cleanup().await
}
