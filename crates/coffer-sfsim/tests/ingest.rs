//! Bulk API 2.0 ingest jobs over HTTP: the job lifecycle (nothing runs before `UploadComplete`,
//! `InProgress` before done), insert/update/upsert/delete/hardDelete seen by `query` and
//! `queryAll`, partial success with `sf__Error` cells, empty cells versus `#N/A`, result rows not
//! in request order, one upload per job, the upload cap and unprocessed records.

#![allow(clippy::unwrap_used)]

mod support;

use coffer_sfsim::SimHandle;
use serde_json::{Value, json};
use support::{V, field, ids, sim, token, where_eq};

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn new(sim: &SimHandle) -> Self {
        let http = reqwest::Client::new();
        let token = token(&http, sim).await;
        Client {
            http,
            base: format!("{}/services/data/{V}/jobs/ingest", sim.base_url()),
            token,
        }
    }

    async fn create(&self, body: Value) -> Value {
        let resp = self
            .http
            .post(&self.base)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    async fn job(&self, object: &str, operation: &str) -> String {
        let job = self
            .create(json!({ "object": object, "operation": operation, "contentType": "CSV", "lineEnding": "LF" }))
            .await;
        assert_eq!(job["state"], "Open");
        job["id"].as_str().unwrap().to_owned()
    }

    async fn put(&self, id: &str, csv: &str) -> reqwest::Response {
        self.http
            .put(format!("{}/{id}/batches", self.base))
            .bearer_auth(&self.token)
            .header("Content-Type", "text/csv")
            .body(csv.to_owned())
            .send()
            .await
            .unwrap()
    }

    async fn patch(&self, id: &str, state: &str) -> reqwest::Response {
        self.http
            .patch(format!("{}/{id}", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "state": state }))
            .send()
            .await
            .unwrap()
    }

    async fn info(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/{id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls until the job is done; asserts it passed through `InProgress`.
    async fn wait(&self, id: &str) -> Value {
        let mut seen_in_progress = false;
        for _ in 0..10 {
            let info = self.info(id).await;
            match info["state"].as_str().unwrap() {
                "InProgress" => seen_in_progress = true,
                "JobComplete" | "Failed" | "Aborted" => {
                    assert!(
                        seen_in_progress,
                        "a job is InProgress for at least one poll"
                    );
                    return info;
                }
                _ => {}
            }
        }
        panic!("job {id} never finished");
    }

    /// Uploads `csv`, closes the job and waits for it.
    async fn run(&self, id: &str, csv: &str) -> Value {
        assert_eq!(self.put(id, csv).await.status(), 201);
        assert_eq!(self.patch(id, "UploadComplete").await.status(), 200);
        self.wait(id).await
    }

    async fn results_raw(&self, id: &str, kind: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/{id}/{kind}/", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    /// A results CSV: header and rows.
    async fn results(&self, id: &str, kind: &str) -> (Vec<String>, Vec<Vec<String>>) {
        let resp = self.results_raw(id, kind).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/csv");
        let body = resp.text().await.unwrap();
        assert!(body.starts_with('"'), "every cell quoted: {body}");
        let mut reader = csv::Reader::from_reader(body.as_bytes());
        let header = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        let rows = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect();
        (header, rows)
    }
}

#[tokio::test]
async fn insert_runs_only_after_upload_complete_and_fails_records_one_by_one() {
    let sim = sim().await;
    let c = Client::new(&sim).await;
    let account = where_eq(&sim, "Account", "IsDeleted", "false")[0].clone();
    let id = c.job("Contact", "insert").await;
    let csv = format!(
        "LastName,FirstName,AccountId\nAlpha,Ann,{account}\n,NoLast,{account}\nGamma,,{account}\nDelta,Dee,{account}\n"
    );
    assert_eq!(c.put(&id, &csv).await.status(), 201);
    for _ in 0..3 {
        assert_eq!(
            c.info(&id).await["state"],
            "Open",
            "nothing runs before close"
        );
    }
    assert_eq!(where_eq(&sim, "Contact", "LastName", "Alpha").len(), 0);
    assert_eq!(c.results_raw(&id, "successfulResults").await.status(), 400);
    assert_eq!(c.patch(&id, "UploadComplete").await.status(), 200);
    let info = c.wait(&id).await;
    assert_eq!(info["state"], "JobComplete");
    assert_eq!(info["numberRecordsProcessed"], 4);
    assert_eq!(info["numberRecordsFailed"], 1);
    assert_eq!(info["jobType"], "V2Ingest");

    let (header, ok) = c.results(&id, "successfulResults").await;
    assert_eq!(
        header,
        [
            "sf__Id",
            "sf__Created",
            "LastName",
            "FirstName",
            "AccountId"
        ]
    );
    let names: Vec<&str> = ok.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(names.len(), 3);
    assert_ne!(
        names,
        ["Alpha", "Gamma", "Delta"],
        "result order is not request order"
    );
    for row in &ok {
        assert_eq!(row[1], "true");
        assert_eq!(field(&sim, "Contact", &row[0], "LastName"), row[2]);
        assert_eq!(field(&sim, "Contact", &row[0], "AccountId"), account);
    }
    let gamma = ok.iter().find(|r| r[2] == "Gamma").unwrap();
    assert_eq!(
        field(&sim, "Contact", &gamma[0], "FirstName"),
        "",
        "empty is null on insert"
    );

    let (header, failed) = c.results(&id, "failedResults").await;
    assert_eq!(
        header,
        ["sf__Id", "sf__Error", "LastName", "FirstName", "AccountId"]
    );
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0][0], "");
    assert_eq!(
        failed[0][1],
        "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"
    );
    assert_eq!(failed[0][3], "NoLast");
    let (_, unprocessed) = c.results(&id, "unprocessedrecords").await;
    assert!(unprocessed.is_empty());
}

#[tokio::test]
async fn update_leaves_empty_cells_alone_and_nulls_na_cells() {
    let sim = sim().await;
    let c = Client::new(&sim).await;
    let contact = support::column(&sim, "Contact", "Title")
        .into_iter()
        .map(|(id, _)| id)
        .find(|id| !field(&sim, "Contact", id, "FirstName").is_empty())
        .unwrap();
    let first = field(&sim, "Contact", &contact, "FirstName");
    let before = sim.record("Contact", &contact).unwrap();
    let id = c.job("Contact", "update").await;
    let csv =
        format!("Id,FirstName,Title,Phone\n{contact},,#N/A,+1 555 0100\n0035g000000ZZZZAAA,x,,\n");
    let info = c.run(&id, &csv).await;
    assert_eq!(info["numberRecordsFailed"], 1);
    let after = sim.record("Contact", &contact).unwrap();
    assert_eq!(after["FirstName"], first, "empty cell: unchanged");
    assert_eq!(after["Title"], "", "#N/A: null");
    assert_eq!(after["Phone"], "+1 555 0100");
    assert_ne!(after["SystemModstamp"], before["SystemModstamp"]);
    let (_, ok) = c.results(&id, "successfulResults").await;
    assert_eq!(
        ok,
        vec![vec![
            contact.clone(),
            "false".into(),
            contact,
            String::new(),
            "#N/A".into(),
            "+1 555 0100".into()
        ]]
    );
    let (_, failed) = c.results(&id, "failedResults").await;
    assert!(
        failed[0][1].starts_with("INVALID_CROSS_REFERENCE_KEY:"),
        "{}",
        failed[0][1]
    );
    assert_eq!(failed[0][0], "0035g000000ZZZZAAA");
}

#[tokio::test]
async fn delete_goes_to_the_recycle_bin_and_hard_delete_does_not() {
    let sim = sim().await;
    let c = Client::new(&sim).await;
    let http = reqwest::Client::new();
    let opportunities = where_eq(&sim, "Opportunity", "IsDeleted", "false");
    let id = c.job("Opportunity", "delete").await;
    let info = c
        .run(
            &id,
            &format!("Id\n{}\n{}\n", opportunities[0], opportunities[1]),
        )
        .await;
    assert_eq!(info["numberRecordsProcessed"], 2);
    let hard = c.job("Opportunity", "hardDelete").await;
    c.run(&hard, &format!("Id\n{}\n", opportunities[2])).await;

    let soql = "SELECT Id FROM Opportunity WHERE IsDeleted = true";
    let binned = ids(&http, &sim, &c.token, "queryAll", soql).await;
    assert_eq!(
        binned,
        vec![opportunities[0].clone(), opportunities[1].clone()]
    );
    let all = ids(
        &http,
        &sim,
        &c.token,
        "queryAll",
        "SELECT Id FROM Opportunity",
    )
    .await;
    assert!(
        !all.contains(&opportunities[2]),
        "hard-deleted rows are gone"
    );
    let live = ids(&http, &sim, &c.token, "query", "SELECT Id FROM Opportunity").await;
    assert_eq!(live.len(), opportunities.len() - 3);

    let again = c.job("Opportunity", "delete").await;
    c.run(&again, &format!("Id\n{}\n", opportunities[0])).await;
    let (_, failed) = c.results(&again, "failedResults").await;
    assert!(failed[0][1].starts_with("ENTITY_IS_DELETED:entity is deleted"));
}

#[tokio::test]
async fn upsert_matches_on_the_external_id_and_inserts_the_rest() {
    let sim = sim().await;
    let c = Client::new(&sim).await;
    let (existing, ext) = support::column(&sim, "Invoice__c", "External_Id__c")[0].clone();
    let account = where_eq(&sim, "Account", "IsDeleted", "false")[2].clone();
    let job = c
        .create(json!({ "object": "Invoice__c", "operation": "upsert", "externalIdFieldName": "External_Id__c" }))
        .await;
    assert_eq!(job["externalIdFieldName"], "External_Id__c");
    let id = job["id"].as_str().unwrap();
    let csv = format!("External_Id__c,Amount__c,Account__c\n{ext},99.50,\nNEW-1,10,{account}\n");
    let info = c.run(id, &csv).await;
    assert_eq!(info["numberRecordsFailed"], 0);
    let (_, ok) = c.results(id, "successfulResults").await;
    let updated = ok.iter().find(|r| r[2] == ext).unwrap();
    assert_eq!(
        (updated[0].as_str(), updated[1].as_str()),
        (existing.as_str(), "false")
    );
    assert_eq!(field(&sim, "Invoice__c", &existing, "Amount__c"), "99.50");
    let created = ok.iter().find(|r| r[2] == "NEW-1").unwrap();
    assert_eq!(created[1], "true");
    assert_eq!(
        field(&sim, "Invoice__c", &created[0], "Account__c"),
        account
    );

    let bad = c
        .http
        .post(&c.base)
        .bearer_auth(&c.token)
        .json(&json!({ "object": "Invoice__c", "operation": "upsert", "externalIdFieldName": "Notes__c" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_job_takes_one_upload_of_at_most_the_cap() {
    let sim = sim().await;
    let c = Client::new(&sim).await;
    let id = c.job("Account", "insert").await;
    assert_eq!(c.put(&id, "Name\nOne\n").await.status(), 201);
    let second = c.put(&id, "Name\nTwo\n").await;
    assert_eq!(second.status(), 400);
    let body: Value = second.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "INVALIDJOB");
    let message = body[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Found multipe contents for job: <"),
        "{message}"
    );
    let info = c.run_closed(&id).await;
    assert_eq!(info["numberRecordsProcessed"], 1, "the first upload stands");

    let large = c.job("Account", "insert").await;
    let rows = format!("{}\n", "y".repeat(200)).repeat(20_000);
    let csv = format!("Description\n{rows}");
    assert!(csv.len() > 3 * 1024 * 1024);
    assert_eq!(
        c.put(&large, &csv).await.status(),
        201,
        "uploads beyond axum's 2 MB default"
    );

    sim.set_ingest_upload_limit(64);
    let big = c.job("Account", "insert").await;
    let csv = format!("Name\n{}\n", "x".repeat(100));
    let refused = c.put(&big, &csv).await;
    assert_eq!(refused.status(), 400);
    assert_eq!(c.put(&big, "Name\nSmall\n").await.status(), 201);
}

impl Client {
    async fn run_closed(&self, id: &str) -> Value {
        assert_eq!(self.patch(id, "UploadComplete").await.status(), 200);
        self.wait(id).await
    }
}

#[tokio::test]
async fn aborted_and_failed_jobs_leave_their_records_unprocessed() {
    let sim = sim().await;
    let c = Client::new(&sim).await;
    let csv = "Name,Phone\n\"Comma, Inc\",1\nPlain,2\n";
    let aborted = c.job("Account", "insert").await;
    assert_eq!(c.put(&aborted, csv).await.status(), 201);
    let resp: Value = c.patch(&aborted, "Aborted").await.json().await.unwrap();
    assert_eq!(resp["state"], "Aborted");
    assert_eq!(c.patch(&aborted, "UploadComplete").await.status(), 400);
    let (header, rows) = c.results(&aborted, "unprocessedrecords").await;
    assert_eq!(header, ["Name", "Phone"]);
    assert_eq!(rows, vec![vec!["Comma, Inc", "1"], vec!["Plain", "2"]]);
    assert!(where_eq(&sim, "Account", "Name", "Plain").is_empty());

    let failed = c.job("Account", "insert").await;
    let info = c.run(&failed, "Name,Nope__c\nA,1\n").await;
    assert_eq!(info["state"], "Failed");
    assert_eq!(
        info["errorMessage"],
        "InvalidBatch : Field name not found : Nope__c"
    );
    let (_, rows) = c.results(&failed, "unprocessedrecords").await;
    assert_eq!(rows, vec![vec!["A", "1"]]);

    let crlf = c.job("Account", "insert").await;
    let info = c.run(&crlf, "Name\r\nWindows\r\n").await;
    assert_eq!(info["state"], "Failed");
    assert!(
        info["errorMessage"]
            .as_str()
            .unwrap()
            .contains("LineEnding is invalid")
    );

    let del = c
        .http
        .delete(format!("{}/{failed}", c.base))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(c.info(&failed).await[0]["errorCode"], "NOT_FOUND");
}
