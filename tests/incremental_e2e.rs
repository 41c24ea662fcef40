//! Incremental backups through the real queue, bucket and catalog: after a full backup and
//! changes in the org (updates, an insert, a cascading delete, a late commit), an incremental
//! backup holds exactly the changed and deleted rows; the record index answers the state of a
//! record as of a time from the right backup of the chain.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use coffer_catalog::{BackupRecord, ObjectKind};
use coffer_core::TenantId;
use coffer_e2e::*;
use coffer_proto::v1::{BackupKind, JobEvent, job_event};
use coffer_salesforce::Cursor;
use coffer_sfsim::SimHandle;
use coffer_testkit::{TEST_ORG_ID, TestEnv, start_sim};
use coffer_worker::lookup::record_as_of;
use coffer_worker::storage::StorageClients;

const WAIT: Duration = Duration::from_secs(120);

/// Every row of `sobject` (live and deleted) keyed by id.
type Rows = BTreeMap<String, Vec<String>>;

/// Each object's live records in the org now, by id.
fn org_rows(sim: &SimHandle) -> BTreeMap<String, (Vec<String>, Rows)> {
    sim.sobjects()
        .into_iter()
        .filter_map(|name| {
            let (header, rows) = sim.table(&name)?;
            let id = header.iter().position(|h| h == "Id")?;
            let rows = rows.into_iter().map(|r| (r[id].clone(), r)).collect();
            Some((name, (header, rows)))
        })
        .collect()
}

/// The rows of each object in a backup's records parts, by id, with the header of each object.
async fn backup_rows(
    env: &TestEnv,
    backup: &BackupRecord,
) -> anyhow::Result<BTreeMap<String, (Vec<String>, Rows)>> {
    let mut out: BTreeMap<String, (Vec<String>, Rows)> = BTreeMap::new();
    for object in env.catalog.backup_objects(backup.backup_id).await? {
        if object.kind != ObjectKind::Records {
            continue;
        }
        let read = read_object(&env.s3_client, &env.bucket, &object.key).await?;
        let (header, rows) = gunzip_csv(&read.body)?;
        let id = header.iter().position(|h| h == "Id").expect("Id column");
        let entry = out
            .entry(object.sobject.clone().unwrap_or_default())
            .or_insert_with(|| (header.clone(), Rows::new()));
        for row in rows {
            assert!(
                entry.1.insert(row[id].clone(), row).is_none(),
                "a record appears twice in {}",
                object.key
            );
        }
    }
    Ok(out)
}

fn cell<'a>(header: &[String], row: &'a [String], column: &str) -> &'a str {
    let i = header
        .iter()
        .position(|h| h == column)
        .unwrap_or_else(|| panic!("no column {column}"));
    &row[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_backup_holds_exactly_the_changed_and_deleted_rows() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(30, 2, 25).await?;
    env.create_tenant("acme", "coffer").await?;
    env.connect_org("acme", &sim).await?;
    let worker = start_worker(&env, small_part_settings(&env)).await?;
    let broker = env.broker().await?;
    let tenant = TenantId::new("acme")?;

    // An incremental with nothing to continue from runs as a full backup.
    let job = request_backup_of_kind(&broker, "acme", TEST_ORG_ID, BackupKind::Incremental).await?;
    let full = wait_for_backup(&env, job, WAIT).await?;
    assert_eq!(full.kind, "full");
    assert_eq!(full.base_backup_id, None);
    let before = org_rows(&sim);

    // Every task of the full backup recorded the cursor the next incremental starts from.
    let full_tasks = env.catalog.tasks(full.backup_id).await?;
    let account_cursor: Cursor = serde_json::from_str(
        full_tasks
            .iter()
            .find(|t| t.sobject == "Account")
            .and_then(|t| t.cursor_json.as_deref())
            .expect("Account cursor"),
    )?;

    // Changes, stamped ten seconds ago so that the incremental's window (up to the server's
    // clock, whole seconds) holds them.
    sim.set_clock(time::OffsetDateTime::now_utc() - time::Duration::seconds(10));
    let (_, accounts) = &before["Account"];
    let account_ids: Vec<&String> = accounts.keys().collect();
    let (_, contacts) = &before["Contact"];
    let contact_ids: Vec<&String> = contacts.keys().collect();
    for id in &account_ids[0..3] {
        sim.update("Account", id, &[("Name", Some("Renamed by the test"))])?;
    }
    sim.update("Contact", contact_ids[0], &[("LastName", Some("Changed"))])?;
    let inserted = sim.insert(
        "Contact",
        &[
            ("LastName", Some("New")),
            ("AccountId", Some(account_ids[5])),
        ],
    )?;
    let deleted_account = account_ids[10].clone();
    sim.delete("Account", &[deleted_account.as_str()])?;
    // A late commit: a transaction that committed after the full backup read Accounts, with a
    // SystemModstamp a minute before the cursor (inside the overlap window).
    let late = account_ids[20].clone();
    sim.update_at(
        "Account",
        &late,
        &[("Name", Some("Late commit"))],
        account_cursor.system_modstamp - time::Duration::seconds(60),
    )?;

    let events = broker.watch_events("incremental", "job.backup.#").await?;
    let job = request_backup_of_kind(&broker, "acme", TEST_ORG_ID, BackupKind::Incremental).await?;
    let incremental = wait_for_backup(&env, job, WAIT).await?;
    worker.stop().await;

    // Progress events per task, then the completion, on the events exchange.
    let mut seen = Vec::new();
    while let Some((key, payload)) = broker.next_event(&events).await? {
        let event = <JobEvent as prost::Message>::decode(payload.as_slice())?;
        if event.job_id == job.to_string() {
            seen.push((key, event));
        }
    }
    let keys: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert!(keys.contains(&"job.backup.started"), "events: {keys:?}");
    assert_eq!(
        keys.last(),
        Some(&"job.backup.completed"),
        "events: {keys:?}"
    );
    let progress: Vec<u64> = seen
        .iter()
        .filter_map(|(_, e)| match &e.event {
            Some(job_event::Event::Progress(p)) => Some(p.records),
            _ => None,
        })
        .collect();
    assert!(
        progress.len() >= 2 && progress.windows(2).all(|w| w[0] <= w[1]),
        "progress events with growing record counts: {progress:?}"
    );
    assert_eq!(incremental.kind, "incremental");
    assert_eq!(incremental.base_backup_id, Some(full.backup_id));
    let manifest_key = env
        .catalog
        .backup_objects(incremental.backup_id)
        .await?
        .into_iter()
        .find(|o| o.kind == ObjectKind::Manifest)
        .expect("manifest")
        .key;
    let manifest: serde_json::Value = serde_json::from_slice(
        &read_object(&env.s3_client, &env.bucket, &manifest_key)
            .await?
            .body,
    )?;
    assert_eq!(manifest["kind"], "incremental");
    assert_eq!(manifest["base_backup_id"], full.backup_id.to_string());

    // What changed: every live row that differs or is new, and every row now in the Recycle Bin.
    let after = org_rows(&sim);
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, (_, rows)) in &after {
        let old = &before[name].1;
        let changed = rows
            .iter()
            .filter(|(id, row)| old.get(*id) != Some(row))
            .map(|(id, _)| id.clone());
        let deleted = sim.deleted_ids(name);
        let ids: BTreeSet<String> = changed.chain(deleted).collect();
        if !ids.is_empty() {
            expected.insert(name.clone(), ids);
        }
    }
    assert!(expected["Account"].contains(&late));
    assert!(expected["Account"].contains(&deleted_account));
    assert!(expected["Contact"].contains(&inserted));
    assert!(
        expected["Contact"].len() > 2,
        "the account's delete cascaded to its contacts"
    );

    // The incremental's parts hold exactly those rows: current values, deletions flagged.
    let held = backup_rows(&env, &incremental).await?;
    let held_ids: BTreeMap<String, BTreeSet<String>> = held
        .iter()
        .filter(|(_, (_, rows))| !rows.is_empty())
        .map(|(name, (_, rows))| (name.clone(), rows.keys().cloned().collect()))
        .collect();
    assert_eq!(
        held_ids, expected,
        "the incremental holds other rows than those that changed"
    );
    for (name, (header, rows)) in &held {
        for (id, row) in rows {
            let flag = header.iter().position(|h| h == "IsDeleted");
            let is_deleted = flag.is_some_and(|i| row[i] == "true");
            assert_eq!(
                is_deleted,
                sim.deleted_ids(name).contains(id),
                "{name} {id} IsDeleted"
            );
            if let Some(live) = after[name].1.get(id) {
                let want_header = &after[name].0;
                for (i, column) in want_header.iter().enumerate() {
                    assert_eq!(cell(header, row, column), live[i], "{name} {id} {column}");
                }
            }
        }
    }

    // The record index says where every held row is, and which lookups it had.
    let indexed = env
        .catalog
        .indexed_records(incremental.backup_id, None)
        .await?;
    let indexed_ids: BTreeMap<String, BTreeSet<String>> =
        indexed.iter().fold(BTreeMap::new(), |mut m, (name, r)| {
            m.entry(name.clone())
                .or_default()
                .insert(r.record_id.clone());
            m
        });
    assert_eq!(indexed_ids, expected, "record index of the incremental");
    let links = env.catalog.record_links(incremental.backup_id).await?;
    assert!(
        links.iter().any(|l| l.child_id == inserted
            && l.field == "AccountId"
            && &l.parent_id == account_ids[5]),
        "the new contact's link to its account is recorded"
    );
    assert!(
        !links.iter().any(|l| l.field == "OwnerId"),
        "lookups to users are not links"
    );

    // The state of a record as of a time comes from the right backup of the chain.
    let renamed = account_ids[0].as_str();
    let then = env
        .catalog
        .record_as_of(
            &tenant,
            sim.org_id(),
            renamed,
            full.completed_at.expect("completed"),
        )
        .await?
        .expect("in the full backup");
    assert_eq!(then.backup_id, full.backup_id);
    let now = env
        .catalog
        .record_as_of(
            &tenant,
            sim.org_id(),
            renamed,
            incremental.completed_at.expect("completed"),
        )
        .await?
        .expect("in the incremental");
    assert_eq!(now.backup_id, incremental.backup_id);
    // ... and read back from the bucket of that backup, as `coffer backups record` shows it.
    let storage = StorageClients::new(env.s3.clone(), "coffer".to_owned(), None);
    let read = record_as_of(
        &env.catalog,
        &storage,
        (&tenant, sim.org_id()),
        renamed,
        incremental.completed_at.expect("completed"),
    )
    .await?
    .expect("the record");
    assert_eq!(read.version, now);
    let field = |name: &str| {
        read.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(field("Id").as_deref(), Some(renamed));
    assert_eq!(field("Name").as_deref(), Some("Renamed by the test"));
    let unchanged = account_ids[25].as_str();
    let found = env
        .catalog
        .record_as_of(
            &tenant,
            sim.org_id(),
            unchanged,
            time::OffsetDateTime::now_utc(),
        )
        .await?
        .expect("an unchanged record");
    assert_eq!(
        found.backup_id, full.backup_id,
        "unchanged: found in the base"
    );
    let gone = env
        .catalog
        .record_as_of(
            &tenant,
            sim.org_id(),
            &deleted_account,
            time::OffsetDateTime::now_utc(),
        )
        .await?
        .expect("the deleted account");
    assert!(gone.deleted, "as of now the account is deleted");

    sim.shutdown().await;
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_object_is_read_in_id_slices_by_several_workers_and_continued_incrementally()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(30, 3, 25).await?;
    env.create_tenant("acme", "coffer").await?;
    env.connect_org("acme", &sim).await?;
    let settings = || coffer_worker::WorkerSettings {
        slice_rows: 40,
        ..small_part_settings(&env)
    };
    let workers = [
        start_worker(&env, settings()).await?,
        start_worker(&env, settings()).await?,
    ];
    let broker = env.broker().await?;

    let job = request_backup(&broker, "acme", TEST_ORG_ID).await?;
    let full = wait_for_backup(&env, job, WAIT).await?;
    let before = org_rows(&sim);

    // Contact (90 records) became three slices of its ids; Account (30) stayed one task.
    let tasks = env.catalog.tasks(full.backup_id).await?;
    let contact_slices: Vec<_> = tasks.iter().filter(|t| t.sobject == "Contact").collect();
    assert!(contact_slices.len() >= 3, "{contact_slices:?}");
    assert!(contact_slices.iter().any(|t| t.slice.id_from.is_none()));
    assert!(contact_slices.iter().any(|t| t.slice.id_to.is_none()));
    assert_eq!(tasks.iter().filter(|t| t.sobject == "Account").count(), 1);

    // The slices together hold every record once (backup_rows fails on a record seen twice),
    // equal to the org's, and their parts never share a number.
    let held = backup_rows(&env, &full).await?;
    for (name, (header, rows)) in &before {
        let (held_header, held_rows) = held
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in the backup"));
        assert_eq!(held_header, header, "{name} columns");
        assert_eq!(held_rows, rows, "{name} rows");
    }
    let parts: Vec<u32> = env
        .catalog
        .backup_objects(full.backup_id)
        .await?
        .iter()
        .filter(|o| o.sobject.as_deref() == Some("Contact"))
        .filter_map(|o| o.part)
        .collect();
    assert!(parts.iter().any(|p| *p > 10_000), "{parts:?}");
    let indexed = env
        .catalog
        .indexed_records(full.backup_id, Some("Contact"))
        .await?;
    assert_eq!(indexed.len(), before["Contact"].1.len());

    // An incremental continues from the earliest cursor of the slices: a change to a contact
    // in the first slice and one in the last are both in it, and nothing else.
    sim.set_clock(time::OffsetDateTime::now_utc() - time::Duration::seconds(10));
    let contact_ids: Vec<&String> = before["Contact"].1.keys().collect();
    let (first, last) = (contact_ids[0], contact_ids[contact_ids.len() - 1]);
    sim.update("Contact", first, &[("LastName", Some("First slice"))])?;
    sim.update("Contact", last, &[("LastName", Some("Last slice"))])?;
    let job = request_backup_of_kind(&broker, "acme", TEST_ORG_ID, BackupKind::Incremental).await?;
    let incremental = wait_for_backup(&env, job, WAIT).await?;
    for worker in workers {
        worker.stop().await;
    }
    assert_eq!(incremental.base_backup_id, Some(full.backup_id));
    let held = backup_rows(&env, &incremental).await?;
    let changed: BTreeSet<String> = held
        .get("Contact")
        .map(|(_, rows)| rows.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(changed, BTreeSet::from([first.clone(), last.clone()]));
    let others: usize = held
        .iter()
        .filter(|(name, _)| name.as_str() != "Contact")
        .map(|(_, (_, rows))| rows.len())
        .sum();
    assert_eq!(others, 0, "the incremental holds unchanged records");
    sim.shutdown().await;
    env.cleanup().await
}
