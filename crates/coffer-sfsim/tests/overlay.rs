//! The write overlay seen through queries: inserts, updates and deletes made with
//! [`SimHandle`] helpers show in REST `query`/`queryAll`, Bulk jobs and [`SimHandle::table`];
//! deletes cascade, restrict and clear lookups as the schema says; purges remove rows for good; a
//! Bulk job keeps the snapshot it was created on; writes are validated with Salesforce's codes.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{V, column, field, ids, rest_query, sim, token, where_eq};

#[tokio::test]
async fn writes_show_in_query_and_deletes_only_in_query_all() {
    let sim = sim().await;
    let http = reqwest::Client::new();
    let token = token(&http, &sim).await;
    let before = where_eq(&sim, "Account", "IsDeleted", "false");
    let new_id = sim
        .insert("Account", &[("Name", Some("Brand New, Inc."))])
        .unwrap();
    assert!(new_id.starts_with("0015g") && new_id.len() == 18);
    sim.update("Account", &before[3], &[("Name", Some("Renamed"))])
        .unwrap();
    let childless = sim.insert("Account", &[("Name", Some("Doomed"))]).unwrap();
    sim.delete("Account", &[&childless]).unwrap();

    let soql = "SELECT Id, Name, IsDeleted FROM Account";
    let live = rest_query(&http, &sim, &token, "query", soql).await;
    let live_ids: Vec<&str> = live.iter().map(|r| r["Id"].as_str().unwrap()).collect();
    assert_eq!(live.len(), before.len() + 1);
    assert_eq!(
        live_ids.last(),
        Some(&new_id.as_str()),
        "inserted rows come last"
    );
    assert!(!live_ids.contains(&childless.as_str()));
    assert_eq!(live[3]["Name"], "Renamed");
    assert_eq!(live.last().unwrap()["IsDeleted"], false);

    let all = rest_query(&http, &sim, &token, "queryAll", soql).await;
    let gone: Vec<&Value> = all.iter().filter(|r| r["IsDeleted"] == true).collect();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0]["Id"], childless.as_str());
    assert_eq!(sim.deleted_ids("Account"), vec![childless.clone()]);

    let (_, table) = sim.table("Account").unwrap();
    assert_eq!(table.len(), live.len());
    assert_eq!(table.last().unwrap()[0], new_id);
    assert_eq!(field(&sim, "Account", &new_id, "Name"), "Brand New, Inc.");
    assert!(sim.record("Account", &childless).is_none());
    assert!(sim.record("Contact", &new_id).is_none(), "wrong object");
}

/// An Account with a Case that names one of its Contacts.
fn account_with_case(sim: &coffer_sfsim::SimHandle) -> (String, String, String) {
    let accounts = column(sim, "Case", "AccountId");
    let contacts = column(sim, "Case", "ContactId");
    let (case, contact) = contacts.first().unwrap().clone();
    let account = accounts.iter().find(|(c, _)| *c == case).unwrap().1.clone();
    (account, contact, case)
}

#[tokio::test]
async fn deleting_an_account_cascades_and_clears_other_lookups() {
    let sim = sim().await;
    let (account, _, case) = account_with_case(&sim);
    let contacts = where_eq(&sim, "Contact", "AccountId", &account);
    let opportunities = where_eq(&sim, "Opportunity", "AccountId", &account);
    let invoices = where_eq(&sim, "Invoice__c", "Account__c", &account);
    assert!(!contacts.is_empty() && !opportunities.is_empty() && !invoices.is_empty());
    let child = sim
        .insert(
            "Account",
            &[("Name", Some("Subsidiary")), ("ParentId", Some(&account))],
        )
        .unwrap();
    let task = sim
        .insert(
            "Task",
            &[
                ("WhatId", Some(&opportunities[0])),
                ("Status", Some("Not Started")),
                ("Priority", Some("High")),
            ],
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

    sim.delete("Account", &[&account]).unwrap();

    for (sobject, id) in [("Account", &account), ("Case", &case), ("Task", &task)]
        .into_iter()
        .chain(contacts.iter().map(|c| ("Contact", c)))
        .chain(opportunities.iter().map(|o| ("Opportunity", o)))
        .chain(invoices.iter().map(|i| ("Invoice__c", i)))
    {
        assert!(sim.record(sobject, id).is_none(), "{sobject} {id} deleted");
        assert!(
            sim.deleted_ids(sobject).contains(id),
            "{sobject} {id} in bin"
        );
    }
    assert_eq!(field(&sim, "Account", &child, "ParentId"), "", "SetNull");
    assert_eq!(field(&sim, "Invoice__c", &invoice, "Contact__c"), "");
    assert_eq!(field(&sim, "Invoice__c", &invoice, "Account__c"), other);
}

#[tokio::test]
async fn a_restricting_child_blocks_the_delete_and_nothing_changes() {
    let sim = sim().await;
    let (_, contact, case) = account_with_case(&sim);
    let before = sim.table("Contact").unwrap();
    let err = sim.delete("Contact", &[&contact]).unwrap_err();
    assert_eq!(err.code, "DELETE_FAILED");
    assert!(err.message.contains(&case), "{}", err.message);
    assert_eq!(sim.table("Contact").unwrap(), before);
    assert!(sim.deleted_ids("Contact").is_empty());
    sim.update("Case", &case, &[("ContactId", None)]).unwrap();
    sim.delete("Contact", &[&contact]).unwrap();
    assert!(sim.record("Contact", &contact).is_none());
}

#[tokio::test]
async fn purged_records_are_gone_from_query_all() {
    let sim = sim().await;
    let http = reqwest::Client::new();
    let token = token(&http, &sim).await;
    let (account, _, _) = account_with_case(&sim);
    sim.delete("Account", &[&account]).unwrap();
    let soql = "SELECT Id FROM Contact WHERE IsDeleted = true";
    let binned = ids(&http, &sim, &token, "queryAll", soql).await;
    assert!(!binned.is_empty());
    assert_eq!(binned, sim.deleted_ids("Contact"));
    let purged = sim.empty_recycle_bin();
    assert!(purged > binned.len());
    assert!(ids(&http, &sim, &token, "queryAll", soql).await.is_empty());
    let everything = ids(&http, &sim, &token, "queryAll", "SELECT Id FROM Account").await;
    assert!(!everything.contains(&account));
    assert!(sim.deleted_ids("Account").is_empty());
}

async fn bulk_rows(http: &reqwest::Client, base: &str, token: &str, id: &str) -> Vec<String> {
    for _ in 0..5 {
        let info: Value = http
            .get(format!("{base}/services/data/{V}/jobs/query/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if info["state"] == "JobComplete" {
            break;
        }
    }
    let body = http
        .get(format!("{base}/services/data/{V}/jobs/query/{id}/results"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines().skip(1).map(str::to_owned).collect()
}

#[tokio::test]
async fn a_query_job_keeps_the_snapshot_it_was_created_on() {
    let sim = sim().await;
    let http = reqwest::Client::new();
    let token = token(&http, &sim).await;
    let create = |soql: &'static str| {
        http.post(format!("{}/services/data/{V}/jobs/query", sim.base_url()))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "operation": "query", "query": soql }))
            .send()
    };
    let job: Value = create("SELECT Id, Name FROM Account")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let accounts = where_eq(&sim, "Account", "IsDeleted", "false");
    sim.delete("Account", &[&accounts[0]]).unwrap();
    sim.update("Account", &accounts[1], &[("Name", Some("Later"))])
        .unwrap();
    sim.insert("Account", &[("Name", Some("Newcomer"))])
        .unwrap();

    let old = bulk_rows(&http, &sim.base_url(), &token, job["id"].as_str().unwrap()).await;
    assert_eq!(old.len(), accounts.len());
    assert!(old[0].starts_with(&format!("\"{}\"", accounts[0])));
    assert!(
        !old.iter()
            .any(|r| r.contains("Later") || r.contains("Newcomer"))
    );

    let job: Value = create("SELECT Id, Name FROM Account")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new = bulk_rows(&http, &sim.base_url(), &token, job["id"].as_str().unwrap()).await;
    assert_eq!(new.len(), accounts.len());
    assert!(new[0].contains("Later"));
    assert!(new.last().unwrap().contains("Newcomer"));
}

#[tokio::test]
async fn writes_are_validated_with_salesforce_status_codes() {
    let sim = sim().await;
    let code = |r: Result<String, coffer_sfsim::dml::RecordError>| r.unwrap_err().code;
    let missing = sim
        .insert("Contact", &[("FirstName", Some("Ada"))])
        .unwrap_err();
    assert_eq!(missing.code, "REQUIRED_FIELD_MISSING");
    assert_eq!(missing.fields, vec!["LastName"]);
    assert_eq!(missing.message, "Required fields are missing: [LastName]");
    let system = sim.insert(
        "Account",
        &[("Name", Some("x")), ("IsDeleted", Some("true"))],
    );
    assert_eq!(code(system), "INVALID_FIELD_FOR_INSERT_UPDATE");
    let long = "x".repeat(256);
    assert_eq!(
        code(sim.insert("Account", &[("Name", Some(long.as_str()))])),
        "STRING_TOO_LONG"
    );
    let opp = |close: &str, amount: &str| {
        sim.insert(
            "Opportunity",
            &[
                ("Name", Some("Deal")),
                ("StageName", Some("Prospecting")),
                ("CloseDate", Some(close)),
                ("Amount", Some(amount)),
            ],
        )
    };
    assert_eq!(
        code(opp("2024-13-01", "1")),
        "INVALID_TYPE_ON_FIELD_IN_RECORD"
    );
    assert_eq!(
        code(opp("2024-12-01", "lots")),
        "INVALID_TYPE_ON_FIELD_IN_RECORD"
    );
    assert!(opp("2024-12-01", "12.50").is_ok());

    let contacts = where_eq(&sim, "Contact", "IsDeleted", "false");
    let accounts = where_eq(&sim, "Account", "IsDeleted", "false");
    let contact = |account: &str| {
        sim.insert(
            "Contact",
            &[("LastName", Some("Doe")), ("AccountId", Some(account))],
        )
    };
    assert_eq!(code(contact("not-an-id")), "MALFORMED_ID");
    assert_eq!(code(contact(&contacts[0])), "FIELD_INTEGRITY_EXCEPTION");
    assert_eq!(
        code(contact("0015g000000ZZZZAAA")),
        "INVALID_CROSS_REFERENCE_KEY"
    );
    let fifteen = &accounts[1][..15];
    let made = contact(fifteen).unwrap();
    assert_eq!(field(&sim, "Contact", &made, "AccountId"), accounts[1]);
    let gone = sim.insert("Account", &[("Name", Some("Gone"))]).unwrap();
    sim.delete("Account", &[&gone]).unwrap();
    assert_eq!(code(contact(&gone)), "ENTITY_IS_DELETED");

    let update = sim
        .update("Account", &gone, &[("Name", Some("x"))])
        .unwrap_err();
    assert_eq!(update.code, "ENTITY_IS_DELETED");
    let created = sim.update(
        "Account",
        &accounts[1],
        &[("CreatedDate", Some("2020-01-01T00:00:00Z"))],
    );
    assert_eq!(created.unwrap_err().code, "INVALID_FIELD_FOR_INSERT_UPDATE");
    let required = sim.update("Account", &accounts[1], &[("Name", None)]);
    assert_eq!(required.unwrap_err().code, "REQUIRED_FIELD_MISSING");
    assert_eq!(
        sim.delete("User", &[&where_eq(&sim, "User", "IsActive", "true")[0]])
            .unwrap_err()
            .code,
        "INVALID_TYPE_FOR_OPERATION"
    );
}

#[tokio::test]
async fn writes_are_stamped_with_the_clock_and_late_commits_with_their_own_time() {
    let sim = sim().await;
    let at = time::macros::datetime!(2030-01-02 03:04:05 UTC);
    sim.set_clock(at);
    let audited = sim
        .insert(
            "Account",
            &[
                ("Name", Some("Old")),
                ("CreatedDate", Some("2019-05-01T10:00:00.000+0000")),
            ],
        )
        .unwrap();
    let record = sim.record("Account", &audited).unwrap();
    assert_eq!(record["CreatedDate"], "2019-05-01T10:00:00.000+0000");
    assert_eq!(record["SystemModstamp"], "2030-01-02T03:04:05.000+0000");
    sim.advance_clock(Duration::from_secs(60));
    sim.update("Account", &audited, &[("Phone", Some("123"))])
        .unwrap();
    assert_eq!(
        field(&sim, "Account", &audited, "LastModifiedDate"),
        "2030-01-02T03:05:05.000+0000"
    );
    let past = at - time::Duration::hours(1);
    sim.update_at("Account", &audited, &[("Phone", Some("456"))], past)
        .unwrap();
    let record = sim.record("Account", &audited).unwrap();
    assert_eq!(record["Phone"], "456");
    assert_eq!(record["SystemModstamp"], "2030-01-02T02:04:05.000+0000");
}
