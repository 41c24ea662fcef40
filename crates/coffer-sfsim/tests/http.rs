//! Real HTTP against a started simulator: auth errors, describe, paging, CSV fidelity, gzip,
//! API-version conflicts and determinism.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::Read;

use coffer_core::OrgId;
use coffer_sfsim::{OrgSeed, SimConfig, SimHandle, start};
use serde_json::Value;

const V: &str = "v62.0";

fn seed(seed: u64) -> OrgSeed {
    OrgSeed::new(OrgId::new("00D5g000004XyZaEAK").unwrap(), seed, 37, 3)
}

async fn sim(page: usize) -> SimHandle {
    let mut config = SimConfig::local(seed(42));
    config.default_page_size = page;
    start(config).await.unwrap()
}

async fn token(http: &reqwest::Client, sim: &SimHandle) -> String {
    let resp = http
        .post(format!("{}/services/oauth2/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sfsim-client-id"),
            ("client_secret", "sfsim-client-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["instance_url"], sim.base_url());
    assert_eq!(body["token_type"], "Bearer");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn create_job(
    http: &reqwest::Client,
    sim: &SimHandle,
    token: &str,
    soql: &str,
) -> reqwest::Response {
    http.post(format!("{}/services/data/{V}/jobs/query", sim.base_url()))
        .bearer_auth(token)
        .json(&serde_json::json!({ "operation": "query", "query": soql }))
        .send()
        .await
        .unwrap()
}

async fn run_job(http: &reqwest::Client, sim: &SimHandle, token: &str, soql: &str) -> String {
    let resp = create_job(http, sim, token, soql).await;
    assert_eq!(resp.status(), 200);
    let job: Value = resp.json().await.unwrap();
    assert_eq!(job["state"], "UploadComplete");
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("750") && id.len() == 18);
    for _ in 0..10 {
        let info: Value = http
            .get(format!(
                "{}/services/data/{V}/jobs/query/{id}",
                sim.base_url()
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if info["state"] == "JobComplete" {
            return id;
        }
    }
    panic!("job never completed");
}

/// Fetches every page; returns (headers per page, all rows, pages).
async fn fetch_all(
    http: &reqwest::Client,
    sim: &SimHandle,
    token: &str,
    id: &str,
    max: Option<usize>,
) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let mut locator: Option<String> = None;
    let mut headers = Vec::new();
    let mut rows = Vec::new();
    loop {
        let mut req = http
            .get(format!(
                "{}/services/data/{V}/jobs/query/{id}/results",
                sim.base_url()
            ))
            .bearer_auth(token);
        if let Some(m) = max {
            req = req.query(&[("maxRecords", m.to_string())]);
        }
        if let Some(l) = &locator {
            req = req.query(&[("locator", l)]);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/csv");
        let declared: usize = resp.headers()["sforce-numberofrecords"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let next = resp.headers()["sforce-locator"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = resp.bytes().await.unwrap();
        assert!(body.starts_with(b"\"Id\""), "header row must be quoted");
        let mut reader = csv::Reader::from_reader(body.as_ref());
        headers.push(
            reader
                .headers()
                .unwrap()
                .iter()
                .map(str::to_owned)
                .collect(),
        );
        let page: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect();
        assert_eq!(page.len(), declared);
        rows.extend(page);
        if next == "null" {
            return (headers, rows);
        }
        locator = Some(next);
    }
}

#[tokio::test]
async fn auth_errors_follow_salesforce_shapes() {
    let sim = sim(100).await;
    let http = reqwest::Client::new();
    let url = format!("{}/services/oauth2/token", sim.base_url());
    let wrong_secret = http
        .post(&url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sfsim-client-id"),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_secret.status(), 400);
    let body: Value = wrong_secret.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_description"], "invalid client credentials");

    let bad_grant = http
        .post(&url)
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_grant.status(), 400);
    let body: Value = bad_grant.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");

    let describe = format!("{}/services/data/{V}/sobjects/", sim.base_url());
    let no_token = http.get(&describe).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    let body: Value = no_token.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "INVALID_SESSION_ID");
    assert_eq!(body[0]["message"], "Session expired or invalid");

    let token = token(&http, &sim).await;
    assert_eq!(
        http.get(&describe)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    sim.expire_tokens();
    assert_eq!(
        http.get(&describe)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn describe_lists_objects_fields_and_relationships() {
    let sim = sim(100).await;
    let http = reqwest::Client::new();
    let token = token(&http, &sim).await;
    let global: Value = http
        .get(format!("{}/services/data/{V}/sobjects/", sim.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = global["sobjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, sim.sobjects());
    let account: Value = http
        .get(format!(
            "{}/services/data/{V}/sobjects/Account/describe/",
            sim.base_url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account["keyPrefix"], "001");
    let fields = account["fields"].as_array().unwrap();
    let parent = fields.iter().find(|f| f["name"] == "ParentId").unwrap();
    assert_eq!(parent["referenceTo"][0], "Account");
    assert_eq!(parent["relationshipName"], "Parent");
    let city = fields.iter().find(|f| f["name"] == "BillingCity").unwrap();
    assert_eq!(city["compoundFieldName"], "BillingAddress");
    assert!(
        account["childRelationships"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["childSObject"] == "Contact" && c["field"] == "AccountId")
    );

    let missing = http
        .get(format!(
            "{}/services/data/{V}/sobjects/Nope__c/describe/",
            sim.base_url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "NOT_FOUND");
    let old_version = http
        .get(format!("{}/services/data/v46.0/sobjects/", sim.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(old_version.status(), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn paging_covers_every_row_exactly_once_and_csv_round_trips() {
    let sim = sim(10).await;
    let http = reqwest::Client::new();
    let token = token(&http, &sim).await;
    for object in ["Account", "Contact", "Attachment"] {
        let (columns, expected) = sim.table(object).unwrap();
        let soql = format!("SELECT {} FROM {object}", columns.join(", "));
        let id = run_job(&http, &sim, &token, &soql).await;
        for max in [None, Some(7), Some(1000)] {
            let (headers, rows) = fetch_all(&http, &sim, &token, &id, max).await;
            assert!(
                headers.iter().all(|h| *h == columns),
                "every page has its own header row"
            );
            assert_eq!(rows, expected, "{object} {max:?}");
            let ids: HashSet<&String> = rows.iter().map(|r| &r[0]).collect();
            assert_eq!(ids.len(), rows.len());
        }
    }
    let (columns, rows) = sim.table("Account").unwrap();
    let desc = columns.iter().position(|c| c == "Description").unwrap();
    let all: String = rows
        .iter()
        .map(|r| r[desc].as_str())
        .collect::<Vec<_>>()
        .join("|");
    for hostile in [",", "\"", "\n", "é", "日本", "🚀"] {
        assert!(
            all.contains(hostile),
            "seed data should contain {hostile:?}"
        );
    }
    assert!(
        rows.iter().any(|r| r[desc].is_empty()),
        "some descriptions are null"
    );
    assert!(
        !columns.contains(&"BillingAddress".to_owned()),
        "compound fields are not bulk-queryable"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn columns_come_back_in_requested_order_with_where_and_gzip() {
    let sim = sim(1000).await;
    let http = reqwest::Client::builder().no_gzip().build().unwrap();
    let token = token(&http, &sim).await;
    let (_, contacts) = sim.table("Contact").unwrap();
    let pivot = &contacts[contacts.len() / 2][0];
    let id = run_job(
        &http,
        &sim,
        &token,
        &format!("select LastName, Id from Contact where Id >= '{pivot}' and IsDeleted = false"),
    )
    .await;
    let resp = http
        .get(format!(
            "{}/services/data/{V}/jobs/query/{id}/results",
            sim.base_url()
        ))
        .bearer_auth(&token)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert_eq!(resp.headers()["sforce-locator"], "null");
    let compressed = resp.bytes().await.unwrap();
    let mut csv_text = String::new();
    flate2::read::GzDecoder::new(compressed.as_ref())
        .read_to_string(&mut csv_text)
        .unwrap();
    assert!(csv_text.starts_with("\"LastName\",\"Id\"\n"));
    let rows = csv::Reader::from_reader(csv_text.as_bytes())
        .records()
        .count();
    assert_eq!(rows, contacts.iter().filter(|r| r[0] >= *pivot).count());
    sim.shutdown().await;
}

#[tokio::test]
async fn results_are_refused_before_completion_and_for_another_api_version() {
    let sim = sim(100).await;
    let http = reqwest::Client::new();
    let token = token(&http, &sim).await;
    let job: Value = create_job(&http, &sim, &token, "SELECT Id FROM Account")
        .await
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap();
    assert_eq!(job["apiVersion"], 62.0);
    let early = http
        .get(format!(
            "{}/services/data/{V}/jobs/query/{id}/results",
            sim.base_url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 400);
    let id = run_job(&http, &sim, &token, "SELECT Id FROM Account").await;
    let other_version = http
        .get(format!(
            "{}/services/data/v61.0/jobs/query/{id}/results",
            sim.base_url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(other_version.status(), 409);
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_queries_are_rejected_as_salesforce_does() {
    let sim = sim(100).await;
    let http = reqwest::Client::new();
    let token = token(&http, &sim).await;
    let cases = [
        (
            "SELECT Id, Body FROM Attachment",
            "INVALIDJOB",
            "FeatureNotEnabled : Binary field not supported",
        ),
        (
            "SELECT Id, BillingAddress FROM Account",
            "INVALIDJOB",
            "compound data not supported",
        ),
        (
            "SELECT Id, Nope FROM Account",
            "INVALID_FIELD",
            "No such column 'Nope'",
        ),
        ("SELECT Id FROM Nope__c", "INVALID_TYPE", "Nope__c"),
        ("SELECT FROM Account", "MALFORMED_QUERY", ""),
    ];
    for (soql, code, message) in cases {
        let resp = create_job(&http, &sim, &token, soql).await;
        assert_eq!(resp.status(), 400, "{soql}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body[0]["errorCode"], code, "{soql}");
        assert!(
            body[0]["message"].as_str().unwrap().contains(message),
            "{soql}: {body}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn same_seed_same_data_and_ids_are_real_shaped() {
    let a = start(SimConfig::local(seed(7))).await.unwrap();
    let b = start(SimConfig::local(seed(7))).await.unwrap();
    let c = start(SimConfig::local(seed(8))).await.unwrap();
    for object in a.sobjects() {
        assert_eq!(a.table(&object), b.table(&object));
    }
    assert_ne!(a.table("Account"), c.table("Account"));
    let (_, accounts) = a.table("Account").unwrap();
    assert_eq!(accounts.len(), 37);
    for row in &accounts {
        let id = &row[0];
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("0015g"));
        assert_eq!(&id[15..], coffer_sfsim::ids::checksum_suffix(&id[..15]));
    }
    let (_, contacts) = a.table("Contact").unwrap();
    assert_eq!(contacts.len(), 37 * 3);
    assert!(contacts.iter().all(|r| r[0].starts_with("003")));
    for s in [a, b, c] {
        s.shutdown().await;
    }
}
