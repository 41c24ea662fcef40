//! Reads by `SystemModstamp` against the simulator: a full read that survives `QUERY_TIMEOUT` by
//! bisecting its range (and gives up with a permanent error when even one-second ranges time
//! out), and incremental reads since a cursor with an overlap window: ties on the cursor's
//! timestamp, deleted rows, the next cursor, and late commits.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use coffer_core::secret::SecretString;
use coffer_core::{Classify, ErrorClass, OrgId, SObjectName};
use coffer_salesforce::incremental::parse_http_date;
use coffer_salesforce::split::{DEFAULT_FLOOR, parse_datetime};
use coffer_salesforce::{
    ClientOptions, Cursor, IncrementalOptions, ModstampRange, OrgConnection, QueryOperation,
    RangeQuery, RowMeta, SObjectDescribe, SalesforceClient, SalesforceError,
};
use coffer_sfsim::{OrgSeed, SimConfig, SimHandle};

const ORG: &str = "00D5g000004XyZaEAK";

async fn sim(org: OrgSeed) -> SimHandle {
    coffer_sfsim::start(SimConfig::local(org)).await.unwrap()
}

async fn client(sim: &SimHandle) -> SalesforceClient {
    let conn = OrgConnection {
        login_url: sim.base_url(),
        client_id: sim.client_id().to_owned(),
        client_secret: SecretString::from(sim.client_secret().to_owned()),
        api_version: "62.0".to_owned(),
    };
    let options = ClientOptions {
        max_records: 500,
        poll_initial: Duration::from_millis(2),
        poll_max: Duration::from_millis(10),
        retry_initial: Duration::from_millis(5),
        retry_max: Duration::from_millis(20),
        max_requests_per_second: None,
        ..ClientOptions::default()
    };
    SalesforceClient::connect_with(conn, options).await.unwrap()
}

async fn describe(client: &SalesforceClient, object: &str) -> SObjectDescribe {
    client
        .describe_sobject(&SObjectName::new(object).unwrap())
        .await
        .unwrap()
}

/// The ids of `object` per `SimHandle::table`.
fn table_ids(sim: &SimHandle, object: &str) -> Vec<String> {
    let (header, rows) = sim.table(object).unwrap();
    let id = header.iter().position(|h| h == "Id").unwrap();
    rows.into_iter().map(|r| r[id].clone()).collect()
}

/// Every row of `object` with `queryAll`, in one unsplit job: (key, deleted) by id.
async fn oracle(client: &SalesforceClient, object: &str) -> BTreeMap<String, (Cursor, bool)> {
    let soql = format!("SELECT Id, SystemModstamp, IsDeleted FROM {object}");
    let mut results = client
        .bulk_query_with(&soql, QueryOperation::QueryAll)
        .await
        .unwrap();
    let mut all = BTreeMap::new();
    while let Some(page) = results.next_page().await.unwrap() {
        for r in &page.records {
            let key = Cursor {
                system_modstamp: parse_datetime(&r[1]).unwrap(),
                id: r[0].to_owned(),
            };
            all.insert(r[0].to_owned(), (key, &r[2] == "true"));
        }
    }
    all
}

/// The ids of every row a range reader delivers, in order, with the ranges it read.
async fn read_ids(
    client: &SalesforceClient,
    object: &str,
) -> Result<(Vec<String>, Vec<ModstampRange>), SalesforceError> {
    let query = RangeQuery::all_fields(&describe(client, object).await, QueryOperation::Query)?;
    let until = client.server_time().await?;
    let mut reader = client.read_modstamp_range(query, ModstampRange::new(DEFAULT_FLOOR, until));
    let mut ids = Vec::new();
    while let Some(page) = reader.next_page().await? {
        let id = page.page.headers.iter().position(|h| h == "Id").unwrap();
        ids.extend(page.page.records.iter().map(|r| r[id].to_owned()));
    }
    assert_eq!(reader.completed_through(), until);
    Ok((ids, reader.ranges_read().to_vec()))
}

#[tokio::test]
async fn a_timed_out_range_is_bisected_until_every_row_is_read_once() {
    let sim = sim(OrgSeed::new(OrgId::new(ORG).unwrap(), 11, 40, 1)).await;
    let client = client(&sim).await;
    let expected = table_ids(&sim, "Account");
    assert_eq!(expected.len(), 40);
    sim.query_timeout_above(Some(12));
    let jobs_before = sim.jobs_created();
    let (ids, ranges) = read_ids(&client, "Account").await.unwrap();
    assert_eq!(ids.len(), expected.len(), "no row lost or read twice");
    let set: HashSet<&String> = ids.iter().collect();
    assert_eq!(set, expected.iter().collect::<HashSet<_>>());
    assert!(ranges.len() >= 4, "at least 40/12 ranges: {ranges:?}");
    assert!(
        sim.jobs_created() - jobs_before > ranges.len() as u64,
        "failed jobs too"
    );
    for pair in ranges.windows(2) {
        assert_eq!(pair[0].to(), pair[1].from(), "ranges partition the window");
    }
    assert_eq!(ranges[0].from(), DEFAULT_FLOOR);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_range_too_narrow_to_split_is_a_permanent_error_naming_the_fix() {
    let sim = sim(OrgSeed::new(OrgId::new(ORG).unwrap(), 11, 6, 1)).await;
    let client = client(&sim).await;
    sim.query_timeout_above(Some(0));
    let err = read_ids(&client, "Account").await.unwrap_err();
    assert!(
        matches!(err, SalesforceError::SplitExhausted { .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    let text = err.to_string();
    assert!(
        text.contains("Account") && text.contains("select fewer fields"),
        "{text}"
    );
    assert!(text.contains("salesforce support"), "{text}");
    sim.shutdown().await;
}

/// Reads every change since `since`: the rows by id (a duplicate fails), and the next cursor.
async fn read_changes(
    client: &SalesforceClient,
    describe: &SObjectDescribe,
    since: Option<Cursor>,
    overlap: Duration,
) -> (BTreeMap<String, RowMeta>, Option<Cursor>) {
    let options = IncrementalOptions {
        overlap,
        ..IncrementalOptions::default()
    };
    let mut reader = client
        .read_changes(describe, since, &options)
        .await
        .unwrap();
    let mut rows = BTreeMap::new();
    while let Some(page) = reader.next_page().await.unwrap() {
        assert_eq!(page.rows.len(), page.page.records.len());
        for meta in page.rows {
            let id = meta.key.id.clone();
            assert!(rows.insert(id.clone(), meta).is_none(), "{id} read twice");
        }
    }
    (rows, reader.next_cursor().cloned())
}

/// The rows of `all` an incremental read since `since` with `overlap` must return, with
/// whether each is `seen_before`.
fn expected_changes(
    all: &BTreeMap<String, (Cursor, bool)>,
    since: &Cursor,
    overlap: Duration,
) -> BTreeMap<String, bool> {
    let from = ModstampRange::new(since.system_modstamp - overlap, since.system_modstamp).from();
    all.iter()
        .filter(|(_, (key, _))| key.system_modstamp >= from)
        .map(|(id, (key, _))| (id.clone(), key <= since))
        .collect()
}

/// The earliest group of at least two rows sharing a `SystemModstamp` after `after`.
fn a_tie(all: &BTreeMap<String, (Cursor, bool)>) -> Vec<Cursor> {
    let mut by_time: BTreeMap<_, Vec<Cursor>> = BTreeMap::new();
    for (key, _) in all.values() {
        by_time
            .entry(key.system_modstamp)
            .or_default()
            .push(key.clone());
    }
    let times: Vec<_> = by_time.keys().copied().collect();
    let middle = times[times.len() / 3];
    let mut group = by_time
        .into_iter()
        .find(|(t, g)| *t >= middle && g.len() >= 2)
        .map(|(_, g)| g)
        .expect("the generated data has tied SystemModstamps");
    group.sort();
    group
}

#[tokio::test]
async fn changes_since_a_cursor_include_ties_deleted_rows_and_the_overlap() {
    let seed = OrgSeed::new(OrgId::new(ORG).unwrap(), 3, 5, 1)
        .with_rows("Invoice__c", 30_000)
        .with_deleted("Invoice__c", 300);
    let sim = sim(seed).await;
    let client = client(&sim).await;
    let object = "Invoice__c";
    let all = oracle(&client, object).await;
    assert_eq!(all.len(), table_ids(&sim, object).len() + 300);
    let tie = a_tie(&all);
    let since = tie[0].clone();
    let overlap = Duration::from_secs(86_400 * 3);

    let describe = describe(&client, object).await;
    let (rows, next) = read_changes(&client, &describe, Some(since.clone()), overlap).await;

    let expected = expected_changes(&all, &since, overlap);
    let got: BTreeMap<String, bool> = rows
        .iter()
        .map(|(id, m)| (id.clone(), m.seen_before))
        .collect();
    assert_eq!(got, expected);
    assert!(rows[&tie[0].id].seen_before, "the cursor's own row is seen");
    for larger in &tie[1..] {
        assert!(
            !rows[&larger.id].seen_before,
            "a tie with a larger id is new"
        );
    }
    assert!(
        got.values().filter(|seen| **seen).count() > tie.len() - 1,
        "the overlap re-reads"
    );
    for (id, meta) in &rows {
        assert_eq!(meta.deleted, all[id].1, "{id}");
        assert_eq!(meta.key, all[id].0);
    }
    assert!(
        rows.values().any(|m| m.deleted && !m.seen_before),
        "deleted rows come back"
    );
    let max = all.values().map(|(k, _)| k).max().cloned();
    assert_eq!(next, max);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_incremental_read_splits_on_query_timeout_and_keeps_its_cursor_when_idle() {
    let seed = OrgSeed::new(OrgId::new(ORG).unwrap(), 8, 60, 1).with_deleted("Account", 10);
    let sim = sim(seed).await;
    let client = client(&sim).await;
    let all = oracle(&client, "Account").await;
    let mut keys: Vec<&Cursor> = all.values().map(|(k, _)| k).collect();
    keys.sort();
    let since = keys[keys.len() / 2].clone();
    let overlap = Duration::from_secs(86_400 * 30);
    let describe = describe(&client, "Account").await;
    let (plain, next) = read_changes(&client, &describe, Some(since.clone()), overlap).await;

    sim.query_timeout_above(Some(5));
    let jobs = sim.jobs_created();
    let (split, split_next) = read_changes(&client, &describe, Some(since.clone()), overlap).await;
    assert!(sim.jobs_created() - jobs > 2, "the window was split");
    assert_eq!(split, plain);
    assert_eq!(split_next, next);
    let expected = expected_changes(&all, &since, overlap);
    assert_eq!(split.len(), expected.len());
    assert!(
        split.values().any(|m| m.deleted),
        "queryAll brings deleted rows"
    );

    sim.query_timeout_above(None);
    let (again, idle) = read_changes(&client, &describe, next.clone(), Duration::ZERO).await;
    assert!(
        again.contains_key(&next.as_ref().unwrap().id),
        "the cursor's own second"
    );
    assert!(
        again.values().all(|m| m.seen_before),
        "nothing new: {again:?}"
    );
    assert_eq!(idle, next, "nothing changed: the cursor stays");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_window_ends_at_the_servers_clock() {
    let sim = sim(OrgSeed::new(OrgId::new(ORG).unwrap(), 1, 2, 1)).await;
    let client = client(&sim).await;
    let server = client.server_time().await.unwrap();
    let local = time::OffsetDateTime::now_utc();
    assert!((local - server).abs() < time::Duration::seconds(5));
    assert!(parse_http_date("Wed, 25 Nov 2026 05:52:13 GMT").is_some());
    sim.shutdown().await;
}
