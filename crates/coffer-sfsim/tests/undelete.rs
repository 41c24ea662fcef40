//! SOAP `undelete` over HTTP: a deleted Account comes back with its original id and the children
//! its delete cascaded to; lookups the delete cleared come back where Salesforce documents it
//! (parent account, custom lookups) and stay blank elsewhere; ids not in the Recycle Bin fail
//! with `UNDELETE_FAILED`, in request order; a bad session is a SOAP fault; purged records
//! cannot come back.

#![allow(clippy::unwrap_used)]

mod support;

use coffer_sfsim::SimHandle;
use support::{column, field, ids, sim, token, where_eq};

async fn undelete(sim: &SimHandle, session: &str, ids: &[&str]) -> (u16, String) {
    let ids: String = ids
        .iter()
        .map(|id| format!("<urn:ids>{id}</urn:ids>"))
        .collect();
    let envelope = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com"><soapenv:Header><urn:SessionHeader><urn:sessionId>{session}</urn:sessionId></urn:SessionHeader></soapenv:Header><soapenv:Body><urn:undelete>{ids}</urn:undelete></soapenv:Body></soapenv:Envelope>"#
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/services/Soap/u/62.0", sim.base_url()))
        .header("Content-Type", "text/xml; charset=UTF-8")
        .header("SOAPAction", "undelete")
        .body(envelope)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Each `<result>` as (id, success, status code).
fn results(body: &str) -> Vec<(String, bool, String)> {
    let inner = |s: &str, tag: &str| {
        let open = format!("<{tag}>");
        let start = s.find(&open).map(|i| i + open.len())?;
        let end = s[start..].find(&format!("</{tag}>"))? + start;
        Some(s[start..end].to_owned())
    };
    body.split("<result>")
        .skip(1)
        .map(|r| {
            (
                inner(r, "id").unwrap_or_default(),
                inner(r, "success").as_deref() == Some("true"),
                inner(r, "statusCode").unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn undelete_restores_the_cascade_and_documented_lookups() {
    let sim = sim().await;
    let http = reqwest::Client::new();
    let token = token(&http, &sim).await;
    let (version, account) = column(&sim, "ContentVersion", "FirstPublishLocationId")[0].clone();
    let contacts = where_eq(&sim, "Contact", "AccountId", &account);
    let opportunities = where_eq(&sim, "Opportunity", "AccountId", &account);
    let child = sim
        .insert(
            "Account",
            &[("Name", Some("Sub")), ("ParentId", Some(&account))],
        )
        .unwrap();
    let other = where_eq(&sim, "Account", "IsDeleted", "false")
        .into_iter()
        .find(|a| *a != account)
        .unwrap();
    let invoice = sim
        .insert(
            "Invoice__c",
            &[
                ("Account__c", Some(&other)),
                ("Contact__c", Some(&contacts[0])),
            ],
        )
        .unwrap();
    let live_before = ids(&http, &sim, &token, "query", "SELECT Id FROM Contact").await;

    sim.delete("Account", &[&account]).unwrap();
    assert_eq!(
        field(&sim, "ContentVersion", &version, "FirstPublishLocationId"),
        ""
    );
    assert_eq!(field(&sim, "Account", &child, "ParentId"), "");
    assert_eq!(field(&sim, "Invoice__c", &invoice, "Contact__c"), "");

    let (status, body) = undelete(&sim, &token, &[&account]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<undeleteResponse>"), "{body}");
    assert_eq!(results(&body), vec![(account.clone(), true, String::new())]);
    assert_eq!(field(&sim, "Account", &account, "IsDeleted"), "false");
    for id in &contacts {
        assert_eq!(
            field(&sim, "Contact", id, "AccountId"),
            account,
            "original id kept"
        );
    }
    for id in &opportunities {
        assert!(sim.record("Opportunity", id).is_some());
    }
    assert!(sim.deleted_ids("Contact").is_empty() && sim.deleted_ids("Account").is_empty());
    let live_after = ids(&http, &sim, &token, "query", "SELECT Id FROM Contact").await;
    assert_eq!(live_after, live_before);
    assert_eq!(
        field(&sim, "Account", &child, "ParentId"),
        account,
        "parent account relinked"
    );
    assert_eq!(
        field(&sim, "Invoice__c", &invoice, "Contact__c"),
        contacts[0],
        "custom lookup relinked"
    );
    assert_eq!(
        field(&sim, "ContentVersion", &version, "FirstPublishLocationId"),
        "",
        "other standard lookups stay blank"
    );
}

#[tokio::test]
async fn ids_not_in_the_recycle_bin_fail_in_request_order() {
    let sim = sim().await;
    let token = token(&reqwest::Client::new(), &sim).await;
    let accounts = where_eq(&sim, "Account", "IsDeleted", "false");
    let contact = where_eq(&sim, "Contact", "AccountId", &accounts[0])[0].clone();
    sim.delete("Account", &[&accounts[0]]).unwrap();
    let (_, body) = undelete(&sim, &token, &[&contact]).await;
    assert_eq!(
        results(&body)[0].2,
        "UNDELETE_FAILED",
        "a child waits for its parent"
    );

    let (status, body) = undelete(
        &sim,
        &token,
        &[&accounts[1], &contact, &accounts[0], "0015g000000ZZZZAAA"],
    )
    .await;
    assert_eq!(status, 200);
    let got = results(&body);
    let outcome: Vec<(bool, &str)> = got
        .iter()
        .map(|(_, ok, code)| (*ok, code.as_str()))
        .collect();
    assert_eq!(
        outcome,
        [
            (false, "UNDELETE_FAILED"),
            (true, ""),
            (true, ""),
            (false, "UNDELETE_FAILED")
        ]
    );
    assert_eq!(got[1].0, contact);
    assert!(body.contains("<message>Entity is not in the recycle bin</message>"));
}

#[tokio::test]
async fn a_bad_session_is_a_soap_fault() {
    let sim = sim().await;
    let before = sim.api_calls();
    let (status, body) = undelete(&sim, "00D5g000004XyZa!AQbogus", &["001"]).await;
    assert_eq!(sim.api_calls(), before + 1, "SOAP calls count as API calls");
    assert_eq!(status, 500);
    assert!(
        body.contains("<faultcode>sf:INVALID_SESSION_ID</faultcode>"),
        "{body}"
    );
    assert!(body.contains("<sf:exceptionCode>INVALID_SESSION_ID</sf:exceptionCode>"));
    let token = token(&reqwest::Client::new(), &sim).await;
    sim.expire_tokens();
    let (status, _) = undelete(&sim, &token, &["001"]).await;
    assert_eq!(status, 500, "expired tokens are refused too");
}

#[tokio::test]
async fn purged_records_cannot_be_undeleted() {
    let sim = sim().await;
    let token = token(&reqwest::Client::new(), &sim).await;
    let accounts = where_eq(&sim, "Account", "IsDeleted", "false");
    sim.delete("Account", &[&accounts[0], &accounts[1]])
        .unwrap();
    assert_eq!(sim.purge(&[&accounts[0]]), 1);
    let (_, body) = undelete(&sim, &token, &[&accounts[0], &accounts[1]]).await;
    let got: Vec<bool> = results(&body).iter().map(|r| r.1).collect();
    assert_eq!(got, [false, true]);
    assert!(sim.record("Account", &accounts[0]).is_none());
    assert!(sim.record("Account", &accounts[1]).is_some());
    let again = sim.undelete(&[&accounts[1]]);
    assert_eq!(again[0].as_ref().unwrap_err().code, "UNDELETE_FAILED");
}
