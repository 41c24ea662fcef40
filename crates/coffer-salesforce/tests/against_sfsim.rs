//! The client against the org simulator over real HTTP: connect, describe, paged Bulk queries,
//! credential errors, token expiry, refused binary fields and secrets kept out of output.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use coffer_core::secret::SecretString;
use coffer_core::{Classify, ErrorClass, OrgId, SObjectName};
use coffer_salesforce::{ClientOptions, OrgConnection, SalesforceClient, SalesforceError};
use coffer_sfsim::{OrgSeed, SimConfig, SimHandle};

const SECRET: &str = "sfsim-client-secret";

async fn sim(accounts: usize, page: usize) -> SimHandle {
    let org = OrgSeed::new(OrgId::new("00D5g000004XyZaEAK").unwrap(), 1234, accounts, 3);
    let mut config = SimConfig::local(org);
    config.client_secret = SECRET.to_owned();
    config.default_page_size = page;
    coffer_sfsim::start(config).await.unwrap()
}

fn conn(sim: &SimHandle, secret: &str) -> OrgConnection {
    OrgConnection {
        login_url: sim.base_url(),
        client_id: "sfsim-client-id".to_owned(),
        client_secret: SecretString::from(secret.to_owned()),
        api_version: "62.0".to_owned(),
    }
}

fn fast(max_records: usize) -> ClientOptions {
    ClientOptions {
        max_records,
        poll_initial: Duration::from_millis(5),
        poll_max: Duration::from_millis(20),
        ..ClientOptions::default()
    }
}

async fn client(sim: &SimHandle, max_records: usize) -> SalesforceClient {
    SalesforceClient::connect_with(conn(sim, SECRET), fast(max_records))
        .await
        .unwrap()
}

/// Runs a full query of every bulk-queryable field; returns (header, rows, pages).
async fn query_all_fields(
    client: &SalesforceClient,
    object: &str,
) -> (Vec<String>, Vec<Vec<String>>, usize) {
    let describe = client
        .describe_sobject(&SObjectName::new(object).unwrap())
        .await
        .unwrap();
    let fields: Vec<&str> = describe
        .bulk_queryable_fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    let soql = format!("SELECT {} FROM {object}", fields.join(", "));
    let mut results = client.bulk_query(&soql).await.unwrap();
    assert!(results.job_id().starts_with("750"));
    let mut header = Vec::new();
    let mut rows = Vec::new();
    let mut pages = 0;
    let mut previous_next: Option<String> = None;
    while let Some(page) = results.next_page().await.unwrap() {
        assert_eq!(
            page.locator, previous_next,
            "each page is fetched with the previous page's locator"
        );
        previous_next = page.next_locator.clone();
        header = page.headers.iter().map(str::to_owned).collect();
        rows.extend(
            page.records
                .iter()
                .map(|r| r.iter().map(str::to_owned).collect::<Vec<_>>()),
        );
        pages += 1;
    }
    assert!(
        results.next_page().await.unwrap().is_none(),
        "exhausted results stay exhausted"
    );
    (header, rows, pages)
}

#[tokio::test]
async fn connect_and_describe() {
    let sim = sim(5, 100).await;
    let client = client(&sim, 100).await;
    assert_eq!(client.instance_url(), sim.base_url());
    let global = client.describe_global().await.unwrap();
    let names: Vec<String> = global.iter().map(|o| o.name.clone()).collect();
    assert_eq!(names, sim.sobjects());
    let account = global.iter().find(|o| o.name == "Account").unwrap();
    assert_eq!(account.key_prefix.as_deref(), Some("001"));
    assert!(account.queryable && account.replicateable && !account.custom);

    let describe = client
        .describe_sobject(&SObjectName::new("Account").unwrap())
        .await
        .unwrap();
    let parent = describe.field("ParentId").unwrap();
    assert_eq!(parent.reference_to, vec!["Account"]);
    assert_eq!(parent.relationship_name.as_deref(), Some("Parent"));
    let bulk: Vec<&str> = describe
        .bulk_queryable_fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert!(
        !bulk.contains(&"BillingAddress"),
        "compound fields are excluded"
    );
    assert!(
        bulk.contains(&"BillingCity"),
        "components of compound fields are kept"
    );
    assert!(
        describe
            .child_relationships
            .iter()
            .any(|c| c.child_sobject == "Contact" && c.field == "AccountId")
    );

    let attachment = client
        .describe_sobject(&SObjectName::new("Attachment").unwrap())
        .await
        .unwrap();
    assert!(
        !attachment
            .bulk_queryable_fields()
            .iter()
            .any(|f| f.name == "Body"),
        "base64 fields are excluded"
    );
    assert_eq!(
        attachment.field("ParentId").unwrap().reference_to,
        vec!["Account", "Contact"]
    );

    let snapshot = serde_json::to_string(&describe).unwrap();
    let back: coffer_salesforce::SObjectDescribe = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(back, describe, "describe round-trips as a schema snapshot");

    let missing = client
        .describe_sobject(&SObjectName::new("Nope__c").unwrap())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Some("NOT_FOUND"));
    assert_eq!(missing.class(), ErrorClass::Permanent);
    sim.shutdown().await;
}

#[tokio::test]
async fn bulk_query_returns_exactly_the_table_across_pages() {
    let sim = sim(40, 1000).await;
    let client = client(&sim, 17).await;
    for object in ["Account", "Contact", "Attachment"] {
        let (expected_header, expected_rows) = sim.table(object).unwrap();
        let (header, rows, pages) = query_all_fields(&client, object).await;
        assert_eq!(header, expected_header, "{object}");
        assert_eq!(rows, expected_rows, "{object}");
        assert_eq!(pages, expected_rows.len().div_ceil(17).max(1), "{object}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn results_can_resume_from_a_locator() {
    let sim = sim(30, 1000).await;
    let client = client(&sim, 8).await;
    let mut results = client
        .bulk_query("SELECT Id, Name FROM Account")
        .await
        .unwrap();
    let first = results.next_page().await.unwrap().unwrap();
    let mut resumed = client.bulk_query_results(
        results.job_id(),
        results.api_version(),
        first.next_locator.clone(),
    );
    let mut rest = 0;
    while let Some(page) = resumed.next_page().await.unwrap() {
        rest += page.records.len();
    }
    assert_eq!(first.records.len() + rest, 30);
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_secret_is_a_permanent_error_with_a_helpful_message() {
    let sim = sim(1, 100).await;
    let err = SalesforceClient::connect_with(conn(&sim, "not-the-secret"), fast(10))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SalesforceError::AuthRejected { .. }),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(err.code(), Some("invalid_client"));
    let message = err.to_string();
    assert!(message.contains("client id and client secret"), "{message}");
    assert!(message.contains("pre-authorized"), "{message}");
    assert!(!message.contains("not-the-secret") && !format!("{err:?}").contains("not-the-secret"));

    let mut bad_id = conn(&sim, SECRET);
    bad_id.client_id = "someone-else".to_owned();
    let err = SalesforceClient::connect_with(bad_id, fast(10))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    sim.shutdown().await;
}

#[tokio::test]
async fn expired_tokens_are_renewed_once_transparently() {
    let sim = sim(12, 1000).await;
    let client = client(&sim, 5).await;
    sim.expire_tokens();
    assert!(!client.describe_global().await.unwrap().is_empty());
    let mut results = client.bulk_query("SELECT Id FROM Contact").await.unwrap();
    let first = results.next_page().await.unwrap().unwrap();
    sim.expire_tokens();
    let mut total = first.records.len();
    while let Some(page) = results.next_page().await.unwrap() {
        total += page.records.len();
    }
    assert_eq!(total, 36);
    // Clones share the session: one renewal serves both.
    let clone = client.clone();
    sim.expire_tokens();
    let (a, b) = tokio::join!(client.describe_global(), clone.describe_global());
    assert!(a.is_ok() && b.is_ok());
    sim.shutdown().await;
}

#[tokio::test]
async fn binary_fields_and_bad_queries_are_refused_permanently() {
    let sim = sim(4, 100).await;
    let client = client(&sim, 100).await;
    let err = client
        .bulk_query("SELECT Id, Body FROM Attachment")
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(
        err.to_string().contains("Binary field not supported"),
        "{err}"
    );
    let err = client
        .bulk_query("SELECT Id, BillingAddress FROM Account")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("compound data not supported"),
        "{err}"
    );
    let err = client
        .bulk_query("SELECT Id, Nope FROM Account")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("INVALID_FIELD"));
    assert_eq!(err.class(), ErrorClass::Permanent);
    sim.shutdown().await;
}

#[tokio::test]
async fn failed_jobs_surface_their_error_message() {
    let sim = sim(4, 100).await;
    let client = client(&sim, 100).await;
    sim.fail_next_job("InternalServerError : retried 15 times and then failed");
    let err = client
        .bulk_query("SELECT Id FROM Account")
        .await
        .unwrap_err();
    assert!(matches!(err, SalesforceError::JobFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("retried 15 times"), "{err}");
    sim.shutdown().await;
}

#[tokio::test]
async fn unreachable_salesforce_is_retryable() {
    let sim = sim(1, 100).await;
    let dead = conn(&sim, SECRET);
    sim.shutdown().await;
    let err = SalesforceClient::connect_with(dead, fast(10))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "{err:?}");
}

#[tokio::test]
async fn debug_output_never_contains_the_token_or_the_secret() {
    let sim = sim(2, 100).await;
    let client = client(&sim, 100).await;
    let tokens = sim.active_tokens();
    assert_eq!(tokens.len(), 1);
    let mut shown = vec![format!("{client:?}"), format!("{:?}", conn(&sim, SECRET))];
    let err = client
        .bulk_query("SELECT Nope FROM Account")
        .await
        .unwrap_err();
    shown.push(format!("{err:?}"));
    shown.push(err.to_string());
    sim.expire_tokens();
    let mut results = client.bulk_query("SELECT Id FROM Account").await.unwrap();
    shown.push(format!("{results:?}"));
    shown.push(format!("{:?}", results.next_page().await.unwrap()));
    for token in tokens.iter().chain(sim.active_tokens().iter()) {
        for text in &shown {
            assert!(!text.contains(token.as_str()), "token leaked: {text}");
        }
    }
    for text in &shown {
        assert!(!text.contains(SECRET), "secret leaked: {text}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn an_object_read_in_id_slices_is_read_whole_and_once() {
    use coffer_salesforce::QueryOperation;
    use coffer_salesforce::slices::{id_slices, slice_count};
    let sim = sim(50, 1000).await;
    let client = client(&sim, 1000).await;
    let counts = client
        .record_counts(&["Account", "Contact", "NoSuchObject"])
        .await
        .unwrap();
    let (_, contacts) = sim.table("Contact").unwrap();
    assert_eq!(counts.get("Contact").copied(), Some(contacts.len() as u64));
    assert_eq!(counts.get("Account").copied(), Some(50));
    assert!(!counts.contains_key("NoSuchObject"));

    let mut ids: Vec<String> = contacts.iter().map(|r| r[0].clone()).collect();
    ids.sort();
    let (lowest, highest) = client
        .id_bounds("Contact", QueryOperation::Query, &Default::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&lowest, &highest), (&ids[0], &ids[ids.len() - 1]));

    let slices = slice_count(contacts.len() as u64, 40, 16);
    let ranges = id_slices(&lowest, &highest, slices);
    assert!(ranges.len() > 2, "{ranges:?}");
    let mut read = Vec::new();
    for range in &ranges {
        let soql = range.restrict("SELECT Id FROM Contact");
        let mut results = client.bulk_query(&soql).await.unwrap();
        let mut in_slice = 0;
        while let Some(page) = results.next_page().await.unwrap() {
            in_slice += page.records.len();
            read.extend(page.records.iter().map(|r| r[0].to_owned()));
        }
        assert!(in_slice > 0, "empty slice {range:?}");
    }
    read.sort();
    assert_eq!(
        read, ids,
        "the slices together are the object, each record once"
    );
    sim.shutdown().await;
}
