//! The client's write side against the org simulator over real HTTP: Bulk API 2.0 ingest and
//! sObject Collections writes read back through Bulk query, `#N/A` clearing a field while an
//! empty cell leaves one unchanged, a row failing validation reported in the failed results, and
//! delete then SOAP undelete (refused once the Recycle Bin is emptied).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use coffer_core::OrgId;
use coffer_core::secret::SecretString;
use coffer_salesforce::{
    ClientOptions, IngestOperation, IngestOutcome, IngestSpec, IngestValue, OrgConnection,
    RecordOutcome, SObjectRecord, SalesforceClient,
};
use coffer_sfsim::{OrgSeed, SimConfig, SimHandle};
use serde_json::Value;

const SECRET: &str = "sfsim-client-secret";

async fn sim() -> (SimHandle, SalesforceClient) {
    let org = OrgSeed::new(OrgId::new("00D5g000004XyZaEAK").unwrap(), 4321, 3, 2);
    let mut config = SimConfig::local(org);
    config.client_secret = SECRET.to_owned();
    let sim = coffer_sfsim::start(config).await.unwrap();
    let conn = OrgConnection {
        login_url: sim.base_url(),
        client_id: "sfsim-client-id".to_owned(),
        client_secret: SecretString::from(SECRET.to_owned()),
        api_version: "62.0".to_owned(),
    };
    let options = ClientOptions {
        poll_initial: Duration::from_millis(5),
        poll_max: Duration::from_millis(20),
        ..ClientOptions::default()
    };
    let client = SalesforceClient::connect_with(conn, options).await.unwrap();
    (sim, client)
}

/// Every row of `soql` by `Id`, as (field -> cell).
async fn query_by_id(
    client: &SalesforceClient,
    soql: &str,
) -> HashMap<String, HashMap<String, String>> {
    let mut results = client.bulk_query(soql).await.unwrap();
    let mut rows = HashMap::new();
    while let Some(page) = results.next_page().await.unwrap() {
        for record in &page.records {
            let row: HashMap<String, String> = page
                .headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect();
            rows.insert(row["Id"].clone(), row);
        }
    }
    rows
}

fn v(s: &str) -> IngestValue {
    IngestValue::from(s)
}

#[tokio::test]
async fn ingest_inserts_and_updates_with_null_and_unchanged_cells_and_reports_failed_rows() {
    let (_sim, client) = sim().await;
    let columns = ["LastName", "FirstName", "Email", "Phone", "Title"];
    let rows = vec![
        vec![
            v("Lovelace"),
            v("Ada"),
            v("ada@example.com"),
            v("555-0101"),
            v("Countess"),
        ],
        vec![
            v("Hopper"),
            v("Grace"),
            v("grace@example.com"),
            v("555-0102"),
            v("Admiral"),
        ],
        // LastName is required: this row fails validation.
        vec![
            IngestValue::Unchanged,
            v("Nobody"),
            v("nobody@example.com"),
            v("555-0103"),
            v("None"),
        ],
    ];
    let spec = IngestSpec::new("Contact", IngestOperation::Insert).with_max_upload_bytes(150);
    let jobs = client.ingest(&spec, &columns, rows).await.unwrap();
    assert!(
        jobs.len() >= 2,
        "150 bytes hold two of these rows at most: {} jobs",
        jobs.len()
    );

    let mut by_email = HashMap::new();
    for job in &jobs {
        assert_eq!(job.unaccounted_rows(), Some(0), "job {}", job.job_id);
        for (email, outcome) in job.by_column("Email").unwrap() {
            by_email.insert(email, outcome);
        }
    }
    let Some(IngestOutcome::Failed(failed)) = by_email.get("nobody@example.com") else {
        panic!("{by_email:?}")
    };
    assert_eq!(failed.code, "REQUIRED_FIELD_MISSING", "{failed:?}");
    let id = |email: &str| match by_email.get(email) {
        Some(IngestOutcome::Succeeded(s)) => {
            assert!(s.created);
            s.id.clone()
        }
        other => panic!("{email}: {other:?}"),
    };
    let (ada, grace) = (id("ada@example.com"), id("grace@example.com"));

    let rows = query_by_id(
        &client,
        "SELECT Id, LastName, Email, Phone, Title FROM Contact",
    )
    .await;
    assert_eq!(rows[&ada]["LastName"], "Lovelace");
    assert_eq!(rows[&grace]["Phone"], "555-0102");
    assert!(
        !rows.values().any(|r| r["Email"] == "nobody@example.com"),
        "the failed row was not written"
    );

    // Update: `#N/A` clears Phone, an empty cell leaves Title as it is.
    let update = vec![
        vec![v(&ada), IngestValue::Null, IngestValue::Unchanged],
        vec![v(&grace), v("555-0199"), v("Rear Admiral")],
    ];
    let spec = IngestSpec::new("Contact", IngestOperation::Update);
    let jobs = client
        .ingest(&spec, &["Id", "Phone", "Title"], update)
        .await
        .unwrap();
    assert_eq!(jobs[0].successful.len(), 2, "{:?}", jobs[0].failed);
    assert!(jobs[0].successful.iter().all(|s| !s.created));

    let rows = query_by_id(&client, "SELECT Id, Phone, Title FROM Contact").await;
    assert_eq!(rows[&ada]["Phone"], "", "#N/A set Phone to null");
    assert_eq!(
        rows[&ada]["Title"], "Countess",
        "an empty cell left Title unchanged"
    );
    assert_eq!(rows[&grace]["Phone"], "555-0199");
    assert_eq!(rows[&grace]["Title"], "Rear Admiral");
}

#[tokio::test]
async fn collections_write_and_soap_undelete_restores_until_the_bin_is_emptied() {
    let (sim, client) = sim().await;
    let records = vec![
        SObjectRecord::new("Account")
            .field("Name", "Restored Corp")
            .field("Phone", "555-0200")
            .field("AnnualRevenue", 1250000.5),
        SObjectRecord::new("Account").field("Name", "Second Restored"),
        // Name is required.
        SObjectRecord::new("Account").field("Phone", "555-0300"),
    ];
    let created = client.create_records(&records, false).await.unwrap();
    assert!(created[0].is_success() && created[1].is_success());
    assert_eq!(
        created[2].errors()[0].status_code,
        "REQUIRED_FIELD_MISSING",
        "{created:?}"
    );
    let first = created[0].id().unwrap().to_owned();
    let second = created[1].id().unwrap().to_owned();

    let rows = query_by_id(
        &client,
        "SELECT Id, Name, Phone, AnnualRevenue FROM Account",
    )
    .await;
    assert_eq!(rows[&first]["Name"], "Restored Corp");
    assert_eq!(rows[&first]["Phone"], "555-0200");

    let update = [SObjectRecord::new("Account")
        .with_id(first.clone())
        .field("Phone", Value::Null)];
    let updated = client.update_records(&update, true).await.unwrap();
    assert_eq!(
        updated,
        vec![RecordOutcome::Succeeded { id: first.clone() }]
    );
    let rows = query_by_id(&client, "SELECT Id, Name, Phone FROM Account").await;
    assert_eq!(rows[&first]["Phone"], "", "JSON null cleared the field");
    assert_eq!(
        rows[&first]["Name"], "Restored Corp",
        "absent fields are unchanged"
    );

    let deleted = client
        .delete_records(&[first.as_str(), second.as_str()], false)
        .await
        .unwrap();
    assert!(deleted.iter().all(RecordOutcome::is_success), "{deleted:?}");
    let rows = query_by_id(&client, "SELECT Id FROM Account").await;
    assert!(!rows.contains_key(&first) && !rows.contains_key(&second));
    assert!(sim.deleted_ids("Account").contains(&first));

    let restored = client.undelete_records(&[first.as_str()]).await.unwrap();
    assert_eq!(
        restored,
        vec![RecordOutcome::Succeeded { id: first.clone() }]
    );
    let rows = query_by_id(&client, "SELECT Id, Name FROM Account").await;
    assert_eq!(
        rows[&first]["Name"], "Restored Corp",
        "back with its original id"
    );

    assert!(sim.empty_recycle_bin() >= 1);
    let gone = client.undelete_records(&[second.as_str()]).await.unwrap();
    assert!(!gone[0].is_success(), "{gone:?}");
    assert!(sim.record("Account", &second).is_none());
}
