//! sObject Collections and sObject Rows over HTTP: results in request order, partial success,
//! `allOrNone` rollback, JSON `null` setting null, deletes with their cascade, whole-request
//! refusals (more than 200 records, unknown fields) and single-record reads.

#![allow(clippy::unwrap_used)]

mod support;

use coffer_sfsim::SimHandle;
use serde_json::{Value, json};
use support::{V, field, ids, sim, token, where_eq};

async fn send(
    sim: &SimHandle,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let http = reqwest::Client::new();
    let url = format!("{}/services/data/{V}{path}", sim.base_url());
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn codes(results: &Value) -> Vec<String> {
    results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match r["success"].as_bool().unwrap() {
            true => "ok".to_owned(),
            false => r["errors"][0]["statusCode"].as_str().unwrap().to_owned(),
        })
        .collect()
}

#[tokio::test]
async fn create_answers_in_request_order_with_partial_success() {
    let sim = sim().await;
    let token = token(&reqwest::Client::new(), &sim).await;
    let account = where_eq(&sim, "Account", "IsDeleted", "false")[0].clone();
    let body = json!({ "allOrNone": false, "records": [
        { "attributes": { "type": "Contact" }, "LastName": "First", "AccountId": account },
        { "attributes": { "type": "Account" }, "Name": "Second", "AnnualRevenue": 1000 },
        { "attributes": { "type": "Contact" }, "FirstName": "NoLastName" },
        { "attributes": { "type": "Contact" }, "LastName": "Fourth", "Email": null },
    ]});
    let (status, results) = send(
        &sim,
        &token,
        reqwest::Method::POST,
        "/composite/sobjects",
        Some(body),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        codes(&results),
        ["ok", "ok", "REQUIRED_FIELD_MISSING", "ok"]
    );
    assert_eq!(results[2]["errors"][0]["fields"], json!(["LastName"]));
    assert!(results[2].get("id").is_none());
    let first = results[0]["id"].as_str().unwrap();
    assert!(first.starts_with("003"));
    assert_eq!(field(&sim, "Contact", first, "LastName"), "First");
    let second = results[1]["id"].as_str().unwrap();
    assert_eq!(field(&sim, "Account", second, "AnnualRevenue"), "1000");
    let fourth = results[3]["id"].as_str().unwrap();
    assert_eq!(field(&sim, "Contact", fourth, "LastName"), "Fourth");
    let http = reqwest::Client::new();
    let live = ids(&http, &sim, &token, "query", "SELECT Id FROM Contact").await;
    assert_eq!(
        &live[live.len() - 2..],
        [first.to_owned(), fourth.to_owned()]
    );
}

#[tokio::test]
async fn all_or_none_rolls_everything_back() {
    let sim = sim().await;
    let token = token(&reqwest::Client::new(), &sim).await;
    let before = sim.table("Account").unwrap();
    let body = json!({ "allOrNone": true, "records": [
        { "attributes": { "type": "Account" }, "Name": "Kept?" },
        { "attributes": { "type": "Account" }, "Name": "x".repeat(300) },
        { "attributes": { "type": "Account" }, "Name": "Kept too?" },
    ]});
    let (status, results) = send(
        &sim,
        &token,
        reqwest::Method::POST,
        "/composite/sobjects",
        Some(body),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        codes(&results),
        [
            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            "STRING_TOO_LONG",
            "ALL_OR_NONE_OPERATION_ROLLED_BACK"
        ]
    );
    assert_eq!(sim.table("Account").unwrap(), before, "nothing was written");
}

#[tokio::test]
async fn update_sets_json_null_to_null_and_reports_unknown_ids() {
    let sim = sim().await;
    let token = token(&reqwest::Client::new(), &sim).await;
    let (contact, title) = support::column(&sim, "Contact", "Title")[0].clone();
    assert!(!title.is_empty());
    let email_before = field(&sim, "Contact", &contact, "Email");
    let body = json!({ "records": [
        { "attributes": { "type": "Contact" }, "id": "0035g000000ZZZZAAA", "Title": "Ghost" },
        { "attributes": { "type": "Contact" }, "id": contact, "Title": null, "Department__x": 1 },
    ]});
    let (status, refused) = send(
        &sim,
        &token,
        reqwest::Method::PATCH,
        "/composite/sobjects",
        Some(body),
    )
    .await;
    assert_eq!(status, 400, "an unknown field refuses the whole request");
    assert_eq!(refused[0]["errorCode"], "INVALID_FIELD");
    let body = json!({ "records": [
        { "attributes": { "type": "Contact" }, "id": "0035g000000ZZZZAAA", "Title": "Ghost" },
        { "attributes": { "type": "Contact" }, "id": contact, "Title": null },
        { "attributes": { "type": "Contact" }, "id": contact, "CreatedDate": "2020-01-01T00:00:00Z" },
    ]});
    let (status, results) = send(
        &sim,
        &token,
        reqwest::Method::PATCH,
        "/composite/sobjects",
        Some(body),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        codes(&results),
        [
            "INVALID_CROSS_REFERENCE_KEY",
            "ok",
            "INVALID_FIELD_FOR_INSERT_UPDATE"
        ]
    );
    assert_eq!(results[1]["id"], contact.as_str());
    assert_eq!(field(&sim, "Contact", &contact, "Title"), "");
    assert_eq!(
        field(&sim, "Contact", &contact, "Email"),
        email_before,
        "absent: unchanged"
    );
}

#[tokio::test]
async fn delete_by_ids_cascades_and_answers_each_id() {
    let sim = sim().await;
    let token = token(&reqwest::Client::new(), &sim).await;
    let accounts = where_eq(&sim, "Account", "IsDeleted", "false");
    let contacts = where_eq(&sim, "Contact", "AccountId", &accounts[5]);
    let path = format!(
        "/composite/sobjects?ids={},{},not-an-id&allOrNone=false",
        accounts[5], accounts[5]
    );
    let (status, results) = send(&sim, &token, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(codes(&results), ["ok", "ENTITY_IS_DELETED", "MALFORMED_ID"]);
    assert_eq!(results[0]["id"], accounts[5].as_str());
    for c in &contacts {
        assert!(sim.deleted_ids("Contact").contains(c));
    }
    let path = format!(
        "/composite/sobjects?ids={},{}&allOrNone=true",
        accounts[6], accounts[5]
    );
    let (_, results) = send(&sim, &token, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(
        codes(&results),
        ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "ENTITY_IS_DELETED"]
    );
    assert!(sim.record("Account", &accounts[6]).is_some());
}

#[tokio::test]
async fn oversized_and_malformed_requests_are_refused_whole() {
    let sim = sim().await;
    let token = token(&reqwest::Client::new(), &sim).await;
    let records: Vec<Value> = (0..201)
        .map(|i| json!({ "attributes": { "type": "Account" }, "Name": format!("A{i}") }))
        .collect();
    let body = json!({ "records": records });
    let (status, body) = send(
        &sim,
        &token,
        reqwest::Method::POST,
        "/composite/sobjects",
        Some(body),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body[0]["errorCode"], "EXCEEDED_ID_LIMIT");
    let untyped = json!({ "records": [{ "Name": "No type" }] });
    let (status, body) = send(
        &sim,
        &token,
        reqwest::Method::POST,
        "/composite/sobjects",
        Some(untyped),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body[0]["errorCode"], "INVALID_TYPE");
    assert!(where_eq(&sim, "Account", "Name", "A0").is_empty());
}

#[tokio::test]
async fn single_records_read_write_and_disappear() {
    let sim = sim().await;
    let token = token(&reqwest::Client::new(), &sim).await;
    let (status, created) = send(
        &sim,
        &token,
        reqwest::Method::POST,
        "/sobjects/Account",
        Some(json!({ "Name": "Solo", "AnnualRevenue": 5 })),
    )
    .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, record) = send(
        &sim,
        &token,
        reqwest::Method::GET,
        &format!("/sobjects/Account/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(record["Name"], "Solo");
    assert_eq!(record["AnnualRevenue"], 5);
    assert_eq!(record["IsDeleted"], false);
    assert_eq!(record["attributes"]["type"], "Account");
    let (status, _) = send(
        &sim,
        &token,
        reqwest::Method::PATCH,
        &format!("/sobjects/Account/{id}"),
        Some(json!({ "Phone": "42" })),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(field(&sim, "Account", &id, "Phone"), "42");
    let (status, _) = send(
        &sim,
        &token,
        reqwest::Method::DELETE,
        &format!("/sobjects/Account/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = send(
        &sim,
        &token,
        reqwest::Method::GET,
        &format!("/sobjects/Account/{id}"),
        None,
    )
    .await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (404, Some("ENTITY_IS_DELETED"))
    );
    let (status, body) = send(
        &sim,
        &token,
        reqwest::Method::GET,
        "/sobjects/Account/0015g000000ZZZZAAA",
        None,
    )
    .await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, body) = send(
        &sim,
        &token,
        reqwest::Method::GET,
        &format!("/sobjects/Contact/{id}"),
        None,
    )
    .await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (404, Some("NOT_FOUND"))
    );
}
