//! Helpers the write tests share: a seeded simulator, a token, REST and Bulk queries over HTTP,
//! and lookups in [`SimHandle::table`].

#![allow(clippy::unwrap_used, dead_code)]

use coffer_core::OrgId;
use coffer_sfsim::{OrgSeed, SimConfig, SimHandle, start};
use serde_json::Value;

/// The API version the tests speak.
pub const V: &str = "v62.0";

/// A simulator of 37 Accounts with 3 Contacts each.
pub async fn sim() -> SimHandle {
    let org = OrgSeed::new(OrgId::new("00D5g000004XyZaEAK").unwrap(), 42, 37, 3);
    start(SimConfig::local(org)).await.unwrap()
}

/// An access token from the client-credentials flow.
pub async fn token(http: &reqwest::Client, sim: &SimHandle) -> String {
    let body: Value = http
        .post(format!("{}/services/oauth2/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sim.client_id()),
            ("client_secret", sim.client_secret()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// `GET /query` (or `/queryAll`) of `soql`, every record of every batch.
pub async fn rest_query(
    http: &reqwest::Client,
    sim: &SimHandle,
    token: &str,
    resource: &str,
    soql: &str,
) -> Vec<Value> {
    let mut body: Value = http
        .get(format!("{}/services/data/{V}/{resource}", sim.base_url()))
        .bearer_auth(token)
        .query(&[("q", soql)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut records = Vec::new();
    loop {
        records.extend(body["records"].as_array().unwrap().iter().cloned());
        let Some(next) = body["nextRecordsUrl"].as_str() else {
            return records;
        };
        body = http
            .get(format!("{}{next}", sim.base_url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    }
}

/// The ids of the records a REST query returns.
pub async fn ids(
    http: &reqwest::Client,
    sim: &SimHandle,
    token: &str,
    resource: &str,
    soql: &str,
) -> Vec<String> {
    rest_query(http, sim, token, resource, soql)
        .await
        .iter()
        .map(|r| r["Id"].as_str().unwrap().to_owned())
        .collect()
}

/// Ids of the live `sobject` rows whose `field` equals `value`, per [`SimHandle::table`].
pub fn where_eq(sim: &SimHandle, sobject: &str, field: &str, value: &str) -> Vec<String> {
    let (header, rows) = sim.table(sobject).unwrap();
    let at = header.iter().position(|h| h == field).unwrap();
    rows.iter()
        .filter(|r| r[at] == value)
        .map(|r| r[0].clone())
        .collect()
}

/// The first live `sobject` row's `field` values: (id, value) for rows where it is set.
pub fn column(sim: &SimHandle, sobject: &str, field: &str) -> Vec<(String, String)> {
    let (header, rows) = sim.table(sobject).unwrap();
    let at = header.iter().position(|h| h == field).unwrap();
    rows.iter()
        .filter(|r| !r[at].is_empty())
        .map(|r| (r[0].clone(), r[at].clone()))
        .collect()
}

/// The value of `field` of live record `id`.
pub fn field(sim: &SimHandle, sobject: &str, id: &str, field: &str) -> String {
    sim.record(sobject, id).unwrap()[field].clone()
}
