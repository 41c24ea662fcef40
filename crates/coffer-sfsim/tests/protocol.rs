//! The simulator's protocol surface beside Bulk, over raw HTTP: `Sforce-Limit-Info` and
//! `/limits/`, REST `query`/`queryAll` paging by `nextRecordsUrl`, describe `If-Modified-Since`,
//! and the injected faults in Salesforce's exact shapes (`REQUEST_LIMIT_EXCEEDED`, `503`,
//! `INVALIDENTITY`, `QUERY_TIMEOUT`, a connection cut mid-page).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use coffer_core::OrgId;
use coffer_sfsim::{OrgSeed, SimConfig, SimHandle, start};
use serde_json::Value;

const V: &str = "v62.0";

async fn sim() -> SimHandle {
    let org = OrgSeed::new(OrgId::new("00D5g000004XyZaEAK").unwrap(), 5, 12, 2);
    start(SimConfig::local(org)).await.unwrap()
}

async fn token(http: &reqwest::Client, sim: &SimHandle) -> String {
    let body: Value = http
        .post(format!("{}/services/oauth2/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sfsim-client-id"),
            ("client_secret", "sfsim-client-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn get(
    http: &reqwest::Client,
    sim: &SimHandle,
    token: &str,
    path: &str,
) -> reqwest::Response {
    http.get(format!("{}{path}", sim.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn limit_info(resp: &reqwest::Response) -> String {
    resp.headers()["Sforce-Limit-Info"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn calls_are_counted_and_limits_reported() {
    let sim = sim().await;
    let http = reqwest::Client::new();
    let token = token(&http, &sim).await;
    sim.set_api_max(50);
    let first = get(
        &http,
        &sim,
        &token,
        &format!("/services/data/{V}/sobjects/"),
    )
    .await;
    assert_eq!(limit_info(&first), "api-usage=1/50");
    let versions = get(&http, &sim, &token, "/services/data").await;
    assert!(
        versions.headers().get("Sforce-Limit-Info").is_none(),
        "the version list is free"
    );
    let limits = get(&http, &sim, &token, &format!("/services/data/{V}/limits/")).await;
    assert_eq!(limit_info(&limits), "api-usage=2/50");
    let body: Value = limits.json().await.unwrap();
    assert_eq!(body["DailyApiRequests"]["Max"], 50);
    assert_eq!(body["DailyApiRequests"]["Remaining"], 48);
    assert_eq!(body["DailyBulkV2QueryJobs"]["Max"], 10_000);

    sim.exhaust_api_limit(true);
    let refused = get(
        &http,
        &sim,
        &token,
        &format!("/services/data/{V}/sobjects/"),
    )
    .await;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "REQUEST_LIMIT_EXCEEDED");
    assert_eq!(body[0]["message"], "TotalRequests Limit exceeded.");
    sim.shutdown().await;
}

#[tokio::test]
async fn rest_query_pages_by_next_records_url() {
    let sim = sim().await;
    let http = reqwest::Client::new();
    let token = token(&http, &sim).await;
    let (_, expected) = sim.table("Contact").unwrap();
    let first: Value = http
        .get(format!("{}/services/data/{V}/query", sim.base_url()))
        .query(&[("q", "SELECT Id, LastName FROM Contact")])
        .header("Sforce-Query-Options", "batchSize=5")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["totalSize"], expected.len());
    assert_eq!(first["done"], false);
    assert_eq!(first["records"][0]["attributes"]["type"], "Contact");
    let mut ids: Vec<String> = Vec::new();
    let mut page = first;
    loop {
        for r in page["records"].as_array().unwrap() {
            ids.push(r["Id"].as_str().unwrap().to_owned());
        }
        if page["done"] == true {
            assert!(page.get("nextRecordsUrl").is_none());
            break;
        }
        let next = page["nextRecordsUrl"].as_str().unwrap().to_owned();
        assert!(
            next.starts_with(&format!("/services/data/{V}/query/01g")),
            "{next}"
        );
        page = get(&http, &sim, &token, &next).await.json().await.unwrap();
    }
    let expected_ids: Vec<String> = expected.iter().map(|r| r[0].clone()).collect();
    assert_eq!(ids, expected_ids);

    let all = get(
        &http,
        &sim,
        &token,
        &format!("/services/data/{V}/queryAll?q=SELECT+Id+FROM+Contact"),
    )
    .await;
    assert_eq!(all.status(), 200);
    let bad = get(
        &http,
        &sim,
        &token,
        &format!("/services/data/{V}/query/01gNOPE-5"),
    )
    .await;
    assert_eq!(bad.status(), 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn describe_answers_304_when_not_modified_since() {
    let sim = sim().await;
    let http = reqwest::Client::new();
    let token = token(&http, &sim).await;
    let url = format!(
        "{}/services/data/{V}/sobjects/Account/describe/",
        sim.base_url()
    );
    let fresh = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(fresh.status(), 200);
    let last_modified = fresh.headers()["Last-Modified"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(last_modified.ends_with(" GMT"), "{last_modified}");
    let same = http
        .get(&url)
        .bearer_auth(&token)
        .header("If-Modified-Since", &last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 304);
    assert!(same.bytes().await.unwrap().is_empty());
    let old = http
        .get(&url)
        .bearer_auth(&token)
        .header("If-Modified-Since", "Mon, 01 Jan 2024 00:00:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn injected_faults_take_salesforce_shapes() {
    let sim = sim().await;
    let http = reqwest::Client::new();
    let token = token(&http, &sim).await;
    let describe = format!("/services/data/{V}/sobjects/");
    sim.fail_next_requests(2);
    let a = get(&http, &sim, &token, &describe).await;
    let b = get(&http, &sim, &token, &describe).await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (503, 503));
    let bodies = [a.text().await.unwrap(), b.text().await.unwrap()];
    assert!(bodies.iter().any(|t| t.contains("<html>")));
    assert!(bodies.iter().any(|t| t.contains("SERVER_UNAVAILABLE")));
    assert_eq!(get(&http, &sim, &token, &describe).await.status(), 200);

    let create = |soql: &'static str| {
        http.post(format!("{}/services/data/{V}/jobs/query", sim.base_url()))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "operation": "query", "query": soql }))
            .send()
    };
    sim.unsupported_by_bulk("Contact");
    let refused = create("SELECT Id FROM Contact").await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "INVALIDENTITY");
    assert_eq!(
        body[0]["message"],
        "Entity 'Contact' is not supported by the Bulk API."
    );

    sim.query_timeout_next_job();
    let job: Value = create("SELECT Id FROM Account")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let info_path = format!(
        "/services/data/{V}/jobs/query/{}",
        job["id"].as_str().unwrap()
    );
    let mut info = Value::Null;
    for _ in 0..3 {
        info = get(&http, &sim, &token, &info_path)
            .await
            .json()
            .await
            .unwrap();
    }
    assert_eq!(info["state"], "Failed");
    assert_eq!(
        info["errorMessage"],
        "QUERY_TIMEOUT: Your query request was running for too long."
    );

    let job: Value = create("SELECT Id FROM Account")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        get(
            &http,
            &sim,
            &token,
            &format!("/services/data/{V}/jobs/query/{id}"),
        )
        .await;
    }
    sim.cut_next_pages(1);
    sim.slow_pages(Duration::from_millis(10));
    let results = format!("/services/data/{V}/jobs/query/{id}/results");
    let cut = get(&http, &sim, &token, &results).await;
    assert_eq!(cut.status(), 200, "headers arrive before the cut");
    assert!(cut.bytes().await.is_err(), "the body breaks off");
    let whole = get(&http, &sim, &token, &results).await;
    assert!(whole.bytes().await.is_ok());
    sim.shutdown().await;
}

#[tokio::test]
async fn describe_global_answers_304_until_the_schema_changes() {
    let sim = sim().await;
    let http = reqwest::Client::new();
    let token = token(&http, &sim).await;
    let url = format!("{}/services/data/{V}/sobjects/", sim.base_url());
    let fresh = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(fresh.status(), 200);
    let last_modified = fresh.headers()["Last-Modified"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = fresh.json().await.unwrap();
    assert!(body["sobjects"].as_array().is_some_and(|s| !s.is_empty()));
    let conditional = || {
        http.get(&url)
            .bearer_auth(&token)
            .header("If-Modified-Since", &last_modified)
            .send()
    };
    let same = conditional().await.unwrap();
    assert_eq!(same.status(), 304);
    assert!(same.bytes().await.unwrap().is_empty());
    sim.touch_schema();
    let changed = conditional().await.unwrap();
    assert_eq!(
        changed.status(),
        200,
        "the schema changed after Last-Modified"
    );
    sim.shutdown().await;
}

/// Polls a query job until it leaves the in-progress states; answers its final info.
async fn finished(http: &reqwest::Client, sim: &SimHandle, token: &str, id: &str) -> Value {
    let path = format!("/services/data/{V}/jobs/query/{id}");
    loop {
        let info: Value = get(http, sim, token, &path).await.json().await.unwrap();
        if !matches!(
            info["state"].as_str(),
            Some("UploadComplete" | "InProgress")
        ) {
            return info;
        }
    }
}

#[tokio::test]
async fn query_timeout_above_fails_only_large_jobs() {
    let sim = sim().await;
    let http = reqwest::Client::new();
    let token = token(&http, &sim).await;
    let accounts = sim.table("Account").unwrap().1.len();
    assert!(accounts > 1);
    let run = |soql: String| {
        let (http, sim, token) = (&http, &sim, &token);
        async move {
            let job: Value = http
                .post(format!("{}/services/data/{V}/jobs/query", sim.base_url()))
                .bearer_auth(token)
                .json(&serde_json::json!({ "operation": "query", "query": soql }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            finished(http, sim, token, job["id"].as_str().unwrap()).await
        }
    };
    sim.query_timeout_above(Some(accounts - 1));
    let big = run("SELECT Id FROM Account".into()).await;
    assert_eq!(big["state"], "Failed");
    assert_eq!(
        big["errorMessage"],
        "QUERY_TIMEOUT: Your query request was running for too long."
    );
    let small = run(format!("SELECT Id FROM Account LIMIT {}", accounts - 1)).await;
    assert_eq!(small["state"], "JobComplete");
    sim.query_timeout_above(None);
    let again = run("SELECT Id FROM Account".into()).await;
    assert_eq!(again["state"], "JobComplete");
    sim.shutdown().await;
}
