//! Late commits against the simulator: a change committed after an incremental read, stamped
//! with a `SystemModstamp` earlier than that read's high-water mark (a long transaction), is
//! caught by the next read's overlap window, and would be missed without one.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use coffer_core::secret::SecretString;
use coffer_core::{OrgId, SObjectName};
use coffer_salesforce::{
    ClientOptions, Cursor, IncrementalOptions, OrgConnection, RowMeta, SObjectDescribe,
    SalesforceClient,
};
use coffer_sfsim::{OrgSeed, SimConfig, SimHandle};
use time::OffsetDateTime;

async fn client(sim: &SimHandle) -> SalesforceClient {
    let conn = OrgConnection {
        login_url: sim.base_url(),
        client_id: sim.client_id().to_owned(),
        client_secret: SecretString::from(sim.client_secret().to_owned()),
        api_version: "62.0".to_owned(),
    };
    let options = ClientOptions {
        poll_initial: Duration::from_millis(2),
        poll_max: Duration::from_millis(10),
        max_requests_per_second: None,
        ..ClientOptions::default()
    };
    SalesforceClient::connect_with(conn, options).await.unwrap()
}

/// A changed row: its classification and its `Name`.
type Changed = BTreeMap<String, (RowMeta, String)>;

/// Every change since `since` with `overlap`, and the next cursor.
async fn changes(
    client: &SalesforceClient,
    describe: &SObjectDescribe,
    since: Option<Cursor>,
    overlap: Duration,
) -> (Changed, Cursor) {
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
        let name = page.page.headers.iter().position(|h| h == "Name").unwrap();
        for (meta, record) in page.rows.into_iter().zip(&page.page.records) {
            rows.insert(meta.key.id.clone(), (meta, record[name].to_owned()));
        }
    }
    (rows, reader.next_cursor().cloned().unwrap())
}

#[tokio::test]
async fn the_overlap_catches_a_change_committed_below_the_high_water_mark() {
    let org = OrgSeed::new(OrgId::new("00D5g000004XyZaEAK").unwrap(), 21, 12, 1);
    let sim = coffer_sfsim::start(SimConfig::local(org)).await.unwrap();
    let client = client(&sim).await;
    let describe = client
        .describe_sobject(&SObjectName::new("Account").unwrap())
        .await
        .unwrap();
    let (all, first) = changes(&client, &describe, None, Duration::ZERO).await;
    let mut ids = all.keys().cloned();
    let (recent, late) = (ids.next().unwrap(), ids.next().unwrap());

    // A change visible now, stamped half an hour ago: the next read's high-water mark.
    let half_hour_ago = OffsetDateTime::now_utc() - Duration::from_secs(1800);
    sim.update_at(
        "Account",
        &recent,
        &[("Name", Some("recent"))],
        half_hour_ago,
    )
    .unwrap();
    let (read, cursor) = changes(&client, &describe, Some(first), Duration::ZERO).await;
    assert_eq!(cursor.id, recent);
    assert!(!read[&recent].0.seen_before);

    // A long transaction commits a change stamped two minutes before that mark.
    let stamp = cursor.system_modstamp - Duration::from_secs(120);
    sim.update_at("Account", &late, &[("Name", Some("late commit"))], stamp)
        .unwrap();

    let (missed, _) = changes(&client, &describe, Some(cursor.clone()), Duration::ZERO).await;
    assert!(
        !missed.contains_key(&late),
        "without overlap the late commit is missed"
    );

    let overlap = Duration::from_secs(300);
    let (caught, next) = changes(&client, &describe, Some(cursor.clone()), overlap).await;
    let (meta, name) = &caught[&late];
    assert_eq!(name, "late commit");
    assert_eq!(meta.key.system_modstamp, stamp);
    assert!(
        meta.seen_before,
        "below the cursor: the caller dedupes by (Id, SystemModstamp) and finds it new"
    );
    assert_eq!(next, cursor, "the late commit does not move the cursor");
    sim.shutdown().await;
}
