//! The client against the simulator's fault knobs, one test per knob: 5xx answers, cut and slow
//! pages, exhausted API limits, `QUERY_TIMEOUT`, Bulk-unsupported objects (REST fallback), API
//! usage accounting and budget, request rate, `If-Modified-Since` describes and streamed blobs.

#![allow(clippy::unwrap_used)]

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use coffer_core::secret::SecretString;
use coffer_core::{Classify, ErrorClass, OrgId, SObjectName};
use coffer_salesforce::{
    ApiUsage, ClientOptions, CsvPage, OrgConnection, QueryOperation, SalesforceClient,
    SalesforceError,
};
use coffer_sfsim::{OrgSeed, SimConfig, SimHandle};
use futures::StreamExt;
use md5::{Digest, Md5};

async fn sim(accounts: usize) -> SimHandle {
    let org = OrgSeed::new(OrgId::new("00D5g000004XyZaEAK").unwrap(), 99, accounts, 3);
    coffer_sfsim::start(SimConfig::local(org)).await.unwrap()
}

fn options(max_records: usize) -> ClientOptions {
    ClientOptions {
        max_records,
        poll_initial: Duration::from_millis(5),
        poll_max: Duration::from_millis(20),
        retry_initial: Duration::from_millis(5),
        retry_max: Duration::from_millis(20),
        max_requests_per_second: None,
        ..ClientOptions::default()
    }
}

async fn client_with(sim: &SimHandle, options: ClientOptions) -> SalesforceClient {
    let conn = OrgConnection {
        login_url: sim.base_url(),
        client_id: "sfsim-client-id".to_owned(),
        client_secret: SecretString::from("sfsim-client-secret".to_owned()),
        api_version: "62.0".to_owned(),
    };
    SalesforceClient::connect_with(conn, options).await.unwrap()
}

async fn client(sim: &SimHandle, max_records: usize) -> SalesforceClient {
    client_with(sim, options(max_records)).await
}

/// `SELECT <every bulk-queryable field> FROM object`.
async fn full_soql(client: &SalesforceClient, object: &str) -> String {
    let describe = client
        .describe_sobject(&SObjectName::new(object).unwrap())
        .await
        .unwrap();
    let fields: Vec<&str> = describe
        .bulk_queryable_fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    format!("SELECT {} FROM {object}", fields.join(", "))
}

fn rows_of(page: &CsvPage) -> Vec<Vec<String>> {
    page.records
        .iter()
        .map(|r| r.iter().map(str::to_owned).collect())
        .collect()
}

/// Reads every page; returns (header, rows, pages).
async fn read_all(
    results: &mut coffer_salesforce::BulkQueryResults,
) -> (Vec<String>, Vec<Vec<String>>, usize) {
    read_rest(results, None).await
}

/// Reads the pages after the one whose next locator is `previous_next`.
async fn read_rest(
    results: &mut coffer_salesforce::BulkQueryResults,
    mut previous_next: Option<String>,
) -> (Vec<String>, Vec<Vec<String>>, usize) {
    let (mut header, mut rows, mut pages) = (Vec::new(), Vec::new(), 0);
    while let Some(page) = results.next_page().await.unwrap() {
        assert_eq!(page.locator, previous_next, "pages follow their locators");
        previous_next = page.next_locator.clone();
        header = page.headers.iter().map(str::to_owned).collect();
        rows.extend(rows_of(&page));
        pages += 1;
    }
    (header, rows, pages)
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let sim = sim(20).await;
    let client = client(&sim, 9).await;
    sim.fail_next_requests(2);
    assert!(!client.describe_global().await.unwrap().is_empty());

    let soql = full_soql(&client, "Account").await;
    let mut results = client.bulk_query(&soql).await.unwrap();
    let first = results.next_page().await.unwrap().unwrap();
    sim.fail_next_requests(3);
    let (_, rest, _) = read_rest(&mut results, first.next_locator.clone()).await;
    let mut rows = rows_of(&first);
    rows.extend(rest);
    assert_eq!(rows, sim.table("Account").unwrap().1);

    sim.fail_next_requests(50);
    let err = client.describe_global().await.unwrap_err();
    assert!(
        matches!(err, SalesforceError::Api { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Retryable);
    sim.shutdown().await;
}

#[tokio::test]
async fn cut_pages_are_refetched_by_their_locator() {
    let sim = sim(25).await;
    let client = client(&sim, 7).await;
    let soql = full_soql(&client, "Contact").await;
    let mut results = client.bulk_query(&soql).await.unwrap();
    sim.cut_next_pages(3);
    let (header, rows, pages) = read_all(&mut results).await;
    let (expected_header, expected_rows) = sim.table("Contact").unwrap();
    assert_eq!(header, expected_header);
    assert_eq!(rows, expected_rows, "no row lost or repeated");
    assert_eq!(pages, expected_rows.len().div_ceil(7));

    let mut options = options(7);
    options.retry_attempts = 2;
    let impatient = client_with(&sim, options).await;
    let mut results = impatient.bulk_query(&soql).await.unwrap();
    sim.cut_next_pages(5);
    let err = results.next_page().await.unwrap_err();
    assert!(matches!(err, SalesforceError::Transport { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_pages_arrive_or_time_out_retryably() {
    let sim = sim(6).await;
    let client = client(&sim, 5).await;
    sim.slow_pages(Duration::from_millis(60));
    let started = Instant::now();
    let mut results = client.bulk_query("SELECT Id FROM Account").await.unwrap();
    let (_, rows, pages) = read_all(&mut results).await;
    assert_eq!((rows.len(), pages), (6, 2));
    assert!(started.elapsed() >= Duration::from_millis(120));

    let mut options = options(5);
    options.request_timeout = Duration::from_millis(20);
    options.retry_attempts = 2;
    let hasty = client_with(&sim, options).await;
    let mut results = hasty.bulk_query("SELECT Id FROM Account").await.unwrap();
    let err = results.next_page().await.unwrap_err();
    assert!(matches!(err, SalesforceError::Transport { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    sim.shutdown().await;
}

#[tokio::test]
async fn exhausted_api_limit_is_a_distinct_error_that_pauses_the_org() {
    let sim = sim(2).await;
    let client = client(&sim, 100).await;
    sim.exhaust_api_limit(true);
    let before = sim.api_calls();
    let err = client.describe_global().await.unwrap_err();
    assert!(
        matches!(err, SalesforceError::LimitExceeded { .. }),
        "{err:?}"
    );
    assert_eq!(sim.api_calls() - before, 1, "no retry storm");
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert!(err.pauses_org());
    assert!(err.to_string().contains("TotalRequests"), "{err}");
    let err = client
        .bulk_query("SELECT Id FROM Account")
        .await
        .unwrap_err();
    assert!(err.pauses_org(), "{err:?}");
    sim.exhaust_api_limit(false);
    assert!(client.describe_global().await.is_ok());
    sim.shutdown().await;
}

#[tokio::test]
async fn query_timeout_is_classified_for_splitting() {
    let sim = sim(3).await;
    let client = client(&sim, 100).await;
    sim.query_timeout_next_job();
    let err = client
        .bulk_query("SELECT Id FROM Account")
        .await
        .unwrap_err();
    assert!(
        matches!(err, SalesforceError::QueryTimeout { .. }),
        "{err:?}"
    );
    assert!(err.needs_split());
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains("split"), "{err}");
    assert!(client.bulk_query("SELECT Id FROM Account").await.is_ok());
    sim.shutdown().await;
}

#[tokio::test]
async fn bulk_unsupported_objects_are_read_through_rest_query() {
    let sim = sim(90).await;
    let client = client(&sim, 200).await;
    sim.unsupported_by_bulk("Contact");
    let soql = full_soql(&client, "Contact").await;
    let jobs = sim.jobs_created();
    let mut results = client.bulk_query(&soql).await.unwrap();
    assert!(results.is_rest_fallback());
    let (header, rows, pages) = read_all(&mut results).await;
    let (expected_header, expected_rows) = sim.table("Contact").unwrap();
    assert_eq!(header, expected_header);
    assert_eq!(rows, expected_rows);
    assert_eq!(pages, expected_rows.len().div_ceil(200));
    assert_eq!(sim.jobs_created(), jobs, "no bulk job was created");

    let mut all = client
        .bulk_query_with(&soql, QueryOperation::QueryAll)
        .await
        .unwrap();
    let (_, all_rows, _) = read_all(&mut all).await;
    assert!(all_rows.len() >= rows.len());
    let mut ordered = client
        .bulk_query("SELECT LastName, id FROM Contact")
        .await
        .unwrap();
    let page = ordered.next_page().await.unwrap().unwrap();
    assert_eq!(
        page.headers.iter().collect::<Vec<_>>(),
        vec!["LastName", "Id"]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn api_usage_is_recorded_and_the_budget_enforced() {
    let sim = sim(2).await;
    sim.set_api_max(20);
    let mut options = options(100);
    options.max_api_share = Some(0.5);
    let client = client_with(&sim, options).await;
    assert_eq!(client.api_usage(), None);
    let limits = client.limits().await.unwrap();
    let daily = limits.daily_api_requests().unwrap();
    assert_eq!(daily.max, 20);
    assert!(limits.daily_bulk_v2_query_jobs().is_some());
    assert_eq!(client.api_usage(), Some(ApiUsage { used: 1, max: 20 }));
    let mut err = None;
    for _ in 0..20 {
        if let Err(e) = client.describe_global().await {
            err = Some(e);
            break;
        }
    }
    let err = err.unwrap();
    assert!(
        matches!(
            err,
            SalesforceError::ApiBudgetExhausted {
                used: 10,
                max: 20,
                budget: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.pauses_org() && err.class() == ErrorClass::Retryable);
    assert_eq!(sim.api_calls(), 10, "the refused call was not sent");
    assert_eq!(
        ApiUsage::parse("api-usage=18/5000, api-bursts=1/750"),
        Some(ApiUsage {
            used: 18,
            max: 5000
        })
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn requests_are_rate_limited() {
    let sim = sim(1).await;
    let mut options = options(100);
    options.max_requests_per_second = NonZeroU32::new(5);
    let client = client_with(&sim, options).await;
    let started = Instant::now();
    for _ in 0..10 {
        client.describe_global().await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn describe_if_modified_since_skips_unchanged_schemas() {
    let sim = sim(1).await;
    let client = client(&sim, 100).await;
    let account = SObjectName::new("Account").unwrap();
    let since = sim.schema_modified();
    assert!(
        client
            .describe_sobject_if_modified_since(&account, since)
            .await
            .unwrap()
            .is_none()
    );
    let earlier = since - Duration::from_secs(3600);
    let describe = client
        .describe_sobject_if_modified_since(&account, earlier)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(describe.name, "Account");
    sim.touch_schema();
    assert!(
        client
            .describe_sobject_if_modified_since(&account, since)
            .await
            .unwrap()
            .is_some()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn blobs_stream_with_their_md5_checked() {
    let sim = sim(3).await;
    let client = client(&sim, 100).await;
    let (header, rows) = sim.table("Attachment").unwrap();
    let id_col = header.iter().position(|h| h == "Id").unwrap();
    let id = rows[0][id_col].clone();
    let expected = sim.blob("Attachment", &id, "Body").unwrap();
    let md5 = hex::encode(Md5::digest(&expected));
    let attachment = SObjectName::new("Attachment").unwrap();

    let mut stream = client
        .download_blob(&attachment, &id, "Body", Some(&md5.to_uppercase()))
        .await
        .unwrap();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(body, expected);
    assert_eq!(stream.md5_hex(), md5);
    assert_eq!(stream.bytes(), expected.len() as u64);

    let mut stream = client
        .download_blob(
            &attachment,
            &id,
            "Body",
            Some("0123456789abcdef0123456789abcdef"),
        )
        .await
        .unwrap();
    let mut last = None;
    while let Some(item) = stream.next().await {
        last = Some(item);
    }
    let err = last.unwrap().unwrap_err();
    assert!(
        matches!(err, SalesforceError::ChecksumMismatch { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&md5), "{err}");

    let mut versions = client
        .bulk_query("SELECT Id, Checksum FROM ContentVersion")
        .await
        .unwrap();
    let page = versions.next_page().await.unwrap().unwrap();
    let version = &page.records[0];
    let mut stream = client
        .download_blob(
            &SObjectName::new("ContentVersion").unwrap(),
            &version[0],
            "VersionData",
            Some(&version[1]),
        )
        .await
        .unwrap();
    let mut received = 0;
    while let Some(chunk) = stream.next().await {
        received += chunk.unwrap().len();
    }
    assert!(received > 0);
    assert_eq!(stream.md5_hex(), version[1].to_ascii_lowercase());

    let err = client
        .download_blob(&attachment, "00P000000000000AAA", "Body", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("NOT_FOUND"));
    sim.shutdown().await;
}

/// Reads a blob to its end; returns the body and the stream's last error, if any.
async fn read_blob(
    client: &SalesforceClient,
    sobject: &str,
    id: &str,
    field: &str,
    md5: Option<&str>,
) -> (Vec<u8>, Option<SalesforceError>, u32) {
    let name = SObjectName::new(sobject).unwrap();
    let mut stream = client.download_blob(&name, id, field, md5).await.unwrap();
    let mut body = Vec::new();
    let mut failed = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(e) => failed = Some(e),
        }
    }
    if failed.is_none() {
        assert_eq!(stream.md5_hex(), hex::encode(Md5::digest(&body)));
    }
    (body, failed, stream.resumes())
}

#[tokio::test]
async fn a_cut_blob_transfer_resumes_from_the_last_byte_received() {
    let sim = sim(3).await;
    let client = client(&sim, 100).await;
    let (header, rows) = sim.table("ContentVersion").unwrap();
    let id = rows[0][header.iter().position(|h| h == "Id").unwrap()].clone();
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    sim.set_blob("ContentVersion", &id, "VersionData", &body)
        .unwrap();
    let md5 = hex::encode(Md5::digest(&body));

    for honour_ranges in [true, false] {
        sim.honour_blob_ranges(honour_ranges);
        let before = sim.blob_downloads();
        sim.cut_next_blobs(2);
        let (got, failed, resumes) =
            read_blob(&client, "ContentVersion", &id, "VersionData", Some(&md5)).await;
        assert!(failed.is_none(), "ranges {honour_ranges}: {failed:?}");
        assert_eq!(got.len(), body.len(), "ranges {honour_ranges}");
        assert!(
            got == body,
            "ranges {honour_ranges}: the resumed body differs"
        );
        assert_eq!(resumes, 2, "ranges {honour_ranges}");
        assert_eq!(
            sim.blob_downloads() - before,
            3,
            "one request and two resumes"
        );
    }

    // More cuts than the client resumes: the error reaches the caller, classified retryable.
    sim.honour_blob_ranges(true);
    sim.cut_next_blobs(coffer_salesforce::blob::MAX_RESUMES + 1);
    let (got, failed, _) =
        read_blob(&client, "ContentVersion", &id, "VersionData", Some(&md5)).await;
    let err = failed.expect("the last cut is handed on");
    assert!(matches!(err, SalesforceError::Transport { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert!(got.len() < body.len());
    sim.shutdown().await;
}
