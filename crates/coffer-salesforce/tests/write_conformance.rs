//! Conformance of the write side of `coffer-salesforce` (Bulk API 2.0 ingest, sObject Collections,
//! SOAP undelete) with Salesforce's documented exchanges.
//!
//! A plain axum server serves the fixtures in `tests/fixtures/salesforce-docs-write/` (see its
//! README for the page each one copies) and records every request, so the tests check both what
//! the client sent (methods, paths, headers, bodies) and what it read. Where a test needs more
//! rows than a documentation example has, the server echoes the upload in the documented shape.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use coffer_core::secret::SecretString;
use coffer_core::{Classify, ErrorClass};
use coffer_salesforce::{
    ClientOptions, IngestOperation, IngestOutcome, IngestSpec, IngestValue, OrgConnection,
    RecordOutcome, SObjectRecord, SalesforceClient, SalesforceError,
};
use serde_json::{Value, json};

const TOKEN: &str = "00DE0X0A0M0PeLE!AQcAQH0dMHEXAMPLEzmpkb58urFRkgeBGsxL_QJWwYMfAbUeeG7c1EXAMPLEDUkWe6H34r1AAwOR8B8fLEz6nEXAMPLE";
const INSERT_JOB: &str = "7505fEXAMPLE4C2AAM";
const UPSERT_JOB: &str = "7476gEXAMPLE4X2ZWO";
const FAILED_JOB: &str = "7506g00000DhRA2AAN";

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// The path as sent (trailing slash kept).
    path: String,
    query: String,
    headers: HeaderMap,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// How the server plays an ingest job.
#[derive(Debug, Clone, Copy, PartialEq)]
enum JobKind {
    /// The insert walkthrough's job and results.
    DocInsert,
    /// The upsert walkthrough's job and results, plus one failed row.
    DocUpsert,
    /// Echoes every uploaded row as a success.
    Echo,
    /// Ends `Failed`.
    Failing,
    /// Refuses the upload with a 500.
    BrokenUpload,
}

#[derive(Default)]
struct Org {
    base_url: Mutex<String>,
    seen: Mutex<Vec<Seen>>,
    jobs: Mutex<HashMap<String, JobKind>>,
    uploads: Mutex<HashMap<String, String>>,
    polls: Mutex<HashMap<String, u32>>,
    /// Undelete calls still to answer with `INVALID_SESSION_ID`.
    expired_soap_calls: Mutex<u32>,
    /// Another fault code to answer undelete calls with.
    soap_fault: Mutex<Option<String>>,
    next_id: Mutex<u64>,
}

impl Org {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn calls(&self, method: &str, path_part: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == method && s.path.contains(path_part))
            .collect()
    }

    fn synthetic_id(&self, prefix: &str) -> String {
        let mut n = self.next_id.lock().unwrap();
        *n += 1;
        format!("{prefix}SYN{:012}", *n)
    }
}

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/salesforce-docs-write")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap()
}

fn json_ok(body: String) -> Response {
    respond(StatusCode::OK, "application/json;charset=UTF-8", body)
}

fn csv_ok(body: String) -> Response {
    respond(StatusCode::OK, "text/csv; charset=UTF-8", body)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!([{ "errorCode": code, "message": message }]).to_string();
    respond(status, "application/json", body)
}

async fn serve(State(org): State<Arc<Org>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    org.seen.lock().unwrap().push(seen.clone());
    let path = seen.path.trim_end_matches('/');
    if seen.method == "POST" && path == "/services/oauth2/token" {
        let base = org.base_url.lock().unwrap().clone();
        return json_ok(fixture("token.json").replace("{{instance_url}}", &base));
    }
    if seen.method == "POST" && path.starts_with("/services/Soap/u/") {
        return soap(&org, &seen);
    }
    let Some(rest) = data_path(path) else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        );
    };
    let segments: Vec<&str> = rest.split('/').collect();
    match (seen.method.as_str(), segments.as_slice()) {
        ("POST", ["jobs", "ingest"]) => create_job(&org, &seen),
        ("PUT", ["jobs", "ingest", id, "batches"]) => upload(&org, id, &seen),
        ("PATCH", ["jobs", "ingest", id]) => set_state(id, &seen),
        ("GET", ["jobs", "ingest", id]) => job_info(&org, id),
        ("GET", ["jobs", "ingest", id, kind]) => results(&org, id, kind),
        (_, ["composite", "sobjects"]) => collections(&org, &seen),
        _ => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        ),
    }
}

/// `/services/data/v60.0/jobs/ingest` or `/services/data/66.0/…` -> `jobs/ingest`.
fn data_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/services/data/")?;
    let (_version, rest) = rest.split_once('/')?;
    Some(rest)
}

fn create_job(org: &Org, seen: &Seen) -> Response {
    let body = seen.json();
    let object = body["object"].as_str().unwrap_or_default();
    let operation = body["operation"].as_str().unwrap_or_default();
    let (kind, id) = match (object, operation) {
        ("CreateFails__c", _) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVER_UNAVAILABLE",
                "try later",
            );
        }
        ("Account", "insert") => (JobKind::DocInsert, INSERT_JOB.to_owned()),
        ("Account", "upsert") => (JobKind::DocUpsert, UPSERT_JOB.to_owned()),
        ("Broken__c", _) => (JobKind::Failing, FAILED_JOB.to_owned()),
        ("UploadFails__c", _) => (JobKind::BrokenUpload, org.synthetic_id("750")),
        _ => (JobKind::Echo, org.synthetic_id("750")),
    };
    org.jobs.lock().unwrap().insert(id.clone(), kind);
    let created = match kind {
        JobKind::DocUpsert => fixture("ingest-upsert-job-created.json"),
        _ => fixture("ingest-job-created.json").replace(INSERT_JOB, &id),
    };
    json_ok(created)
}

fn kind_of(org: &Org, id: &str) -> Option<JobKind> {
    org.jobs.lock().unwrap().get(id).copied()
}

fn upload(org: &Org, id: &str, seen: &Seen) -> Response {
    let Some(kind) = kind_of(org, id) else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        );
    };
    if kind == JobKind::BrokenUpload {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred.",
        );
    }
    let mut uploads = org.uploads.lock().unwrap();
    if uploads.contains_key(id) {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            &format!("Found multiple contents for job: {id}"),
        );
    }
    uploads.insert(id.to_owned(), seen.body.clone());
    respond(StatusCode::CREATED, "text/plain", String::new())
}

fn set_state(id: &str, seen: &Seen) -> Response {
    let state = seen.json()["state"].as_str().unwrap_or_default().to_owned();
    let info = fixture("ingest-job-upload-complete.json")
        .replace(INSERT_JOB, id)
        .replace("UploadComplete", &state);
    json_ok(info)
}

fn job_info(org: &Org, id: &str) -> Response {
    let Some(kind) = kind_of(org, id) else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        );
    };
    let first = {
        let mut polls = org.polls.lock().unwrap();
        let n = polls.entry(id.to_owned()).or_default();
        *n += 1;
        *n == 1
    };
    if first {
        return json_ok(fixture("ingest-job-upload-complete.json").replace(INSERT_JOB, id));
    }
    match kind {
        JobKind::Failing => json_ok(fixture("ingest-job-failed.json")),
        _ => json_ok(fixture("ingest-job-complete.json").replace(INSERT_JOB, id)),
    }
}

fn results(org: &Org, id: &str, file: &str) -> Response {
    let Some(kind) = kind_of(org, id) else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        );
    };
    let name = match (kind, file) {
        (JobKind::DocInsert | JobKind::Failing, "successfulResults") => {
            "ingest-successful-results.csv"
        }
        (JobKind::DocInsert | JobKind::Failing, "failedResults") => {
            "ingest-failed-results-none.csv"
        }
        (JobKind::DocInsert | JobKind::Failing, "unprocessedrecords") => {
            "ingest-unprocessed-records-none.csv"
        }
        (JobKind::DocUpsert, "successfulResults") => "ingest-upsert-successful-results.csv",
        (JobKind::DocUpsert, "failedResults") => "ingest-upsert-failed-results.csv",
        (JobKind::DocUpsert, "unprocessedrecords") => "ingest-upsert-unprocessed-records.csv",
        (_, "successfulResults" | "failedResults" | "unprocessedrecords") => {
            let upload = org
                .uploads
                .lock()
                .unwrap()
                .get(id)
                .cloned()
                .unwrap_or_default();
            return csv_ok(echo_results(org, &upload, file));
        }
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
            );
        }
    };
    if kind == JobKind::Failing && file == "successfulResults" {
        return csv_ok(
            fixture("ingest-failed-results-none.csv").replace("sf__Error", "sf__Created"),
        );
    }
    csv_ok(fixture(name))
}

/// Results in the documented shape for an uploaded CSV: every row a success.
fn echo_results(org: &Org, upload: &str, file: &str) -> String {
    let mut reader = csv::Reader::from_reader(upload.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(Vec::new());
    let sf: &[&str] = match file {
        "successfulResults" => &["sf__Id", "sf__Created"],
        "failedResults" => &["sf__Id", "sf__Error"],
        _ => &[],
    };
    let header: Vec<&str> = sf
        .iter()
        .copied()
        .chain(headers.iter().map(String::as_str))
        .collect();
    writer.write_record(&header).unwrap();
    if file == "successfulResults" {
        for record in reader.records() {
            let record = record.unwrap();
            let id = org.synthetic_id("003");
            let row: Vec<&str> = [id.as_str(), "false"]
                .into_iter()
                .chain(record.iter())
                .collect();
            writer.write_record(&row).unwrap();
        }
    }
    String::from_utf8(writer.into_inner().unwrap()).unwrap()
}

fn collections(org: &Org, seen: &Seen) -> Response {
    let doc = |name: &str| json_ok(fixture(name));
    match seen.method.as_str() {
        "POST" => {
            let body = seen.json();
            let records = body["records"].as_array().cloned().unwrap_or_default();
            let all_or_none = body["allOrNone"].as_bool().unwrap_or(false);
            match records.first().and_then(|r| r["Name"].as_str()) {
                Some("example.com") if all_or_none => {
                    doc("collections-create-response-all-or-none.json")
                }
                Some("example.com") => doc("collections-create-response.json"),
                Some("Duplicate Co") => doc("collections-create-response-partial.json"),
                _ => synthetic_results(org, records.len(), None),
            }
        }
        "PATCH" => {
            let body = seen.json();
            let records = body["records"].as_array().cloned().unwrap_or_default();
            let all_or_none = body["allOrNone"].as_bool().unwrap_or(false);
            let second = records.get(1).and_then(|r| r["id"].as_str());
            match second {
                Some(_) if all_or_none => doc("collections-update-response-all-or-none.json"),
                Some("003xx000004TmiQAAS") => doc("collections-update-response.json"),
                Some("001xx000003DGb2999") => doc("collections-update-response-partial.json"),
                _ => synthetic_results(org, records.len(), None),
            }
        }
        "DELETE" => {
            let ids: Vec<String> = seen
                .query
                .split('&')
                .find_map(|kv| kv.strip_prefix("ids="))
                .map(|ids| ids.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            if ids == ["001xx000003DGb2AAG", "003xx000004TmiQAAS"] {
                return doc("collections-delete-response.json");
            }
            if ids.iter().any(|id| id == "001RM000003oLrB000") {
                return doc("collections-delete-response-partial.json");
            }
            synthetic_results(org, ids.len(), Some(&ids))
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "no"),
    }
}

fn synthetic_results(org: &Org, n: usize, ids: Option<&[String]>) -> Response {
    let results: Vec<Value> = (0..n)
        .map(|i| {
            let id = ids.map_or_else(|| org.synthetic_id("001"), |ids| ids[i].clone());
            json!({ "id": id, "success": true, "errors": [] })
        })
        .collect();
    json_ok(Value::Array(results).to_string())
}

/// The ids of an undelete envelope, in order.
fn envelope_ids(body: &str) -> Vec<String> {
    body.split("<urn:ids>")
        .skip(1)
        .filter_map(|part| part.split_once("</urn:ids>").map(|(id, _)| id.to_owned()))
        .collect()
}

fn soap(org: &Org, seen: &Seen) -> Response {
    let xml = |status, body: String| respond(status, "text/xml; charset=utf-8", body);
    {
        let mut expired = org.expired_soap_calls.lock().unwrap();
        if *expired > 0 {
            *expired -= 1;
            return xml(
                StatusCode::INTERNAL_SERVER_ERROR,
                fixture("soap-fault-invalid-session.xml"),
            );
        }
    }
    if let Some(code) = org.soap_fault.lock().unwrap().clone() {
        let fault = fixture("soap-fault-invalid-session.xml")
            .replace("INVALID_SESSION_ID", &code)
            .replace(
                "Invalid Session ID found in SessionHeader: Illegal Session",
                "refused",
            );
        return xml(StatusCode::INTERNAL_SERVER_ERROR, fault);
    }
    let ids = envelope_ids(&seen.body);
    if ids == ["001D000000HRzKDIA1", "001D000000HTK3aIAH"] {
        return xml(StatusCode::OK, fixture("undelete-response.xml"));
    }
    let results: String = ids
        .iter()
        .map(|id| format!("<result><id>{id}</id><success>true</success></result>"))
        .collect();
    xml(
        StatusCode::OK,
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com"><soapenv:Body><undeleteResponse>{results}</undeleteResponse></soapenv:Body></soapenv:Envelope>"#
        ),
    )
}

async fn start() -> (Arc<Org>, SalesforceClient) {
    let org = Arc::new(Org::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    *org.base_url.lock().unwrap() = base.clone();
    let app = axum::Router::new().fallback(serve).with_state(org.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let conn = OrgConnection {
        login_url: base,
        client_id: "3MVG9EXAMPLEconsumerkey".to_owned(),
        client_secret: SecretString::from("EXAMPLE-consumer-secret".to_owned()),
        // The jobs report apiVersion 66.0; the connection uses another version on purpose.
        api_version: "60.0".to_owned(),
    };
    let options = ClientOptions {
        poll_initial: Duration::from_millis(10),
        poll_max: Duration::from_millis(20),
        retry_initial: Duration::from_millis(1),
        retry_max: Duration::from_millis(5),
        ..ClientOptions::default()
    };
    let sf = SalesforceClient::connect_with(conn, options).await.unwrap();
    (org, sf)
}

/// A documentation CSV as (columns, rows of values).
fn doc_csv(name: &str) -> (Vec<String>, Vec<Vec<IngestValue>>) {
    let text = fixture(name);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let columns = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(IngestValue::from).collect())
        .collect();
    (columns, rows)
}

fn parse_csv(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

fn index_of(seen: &[Seen], method: &str, path_part: &str) -> usize {
    seen.iter()
        .position(|s| s.method == method && s.path.contains(path_part))
        .unwrap_or_else(|| panic!("no {method} {path_part}"))
}

#[tokio::test]
async fn ingest_insert_sends_the_documented_requests_and_reads_the_documented_results() {
    let (org, sf) = start().await;
    let (columns, rows) = doc_csv("ingest-insert.csv");
    let spec = IngestSpec::new("Account", IngestOperation::Insert);
    let jobs = sf.ingest(&spec, &columns, rows.clone()).await.unwrap();

    assert_eq!(jobs.len(), 1, "seven short rows fit in one upload");
    let job = &jobs[0];
    assert_eq!(
        (job.job_id.as_str(), job.api_version.as_str()),
        (INSERT_JOB, "66.0")
    );
    assert_eq!(job.successful.len(), 7);
    assert!(job.failed.is_empty() && job.unprocessed.is_empty());
    assert_eq!(job.unaccounted_rows(), Some(0));
    assert_eq!(job.records_processed, Some(7));
    let first = &job.successful[0];
    assert_eq!(first.id, "0018c00002FInboAAD");
    assert!(first.created);
    assert_eq!(first.row.get("Name"), Some("Lorem Ipsum"));
    assert_eq!(
        first.row.get("shippingcity"),
        Some("Milano"),
        "field names are case-insensitive"
    );
    assert_eq!(
        first.row.get("AnnualRevenue"),
        Some("9.12260031E8"),
        "echoed as Salesforce renders it"
    );
    assert_eq!(
        first.row.get("sf__Id"),
        None,
        "sf__ columns are not echoed columns"
    );
    let by_name = job.by_column("Name").unwrap();
    assert_eq!(by_name.len(), 7);
    let Some(IngestOutcome::Succeeded(amazon)) = by_name.get("Amazon") else {
        panic!("Amazon: {:?}", by_name.get("Amazon"))
    };
    assert_eq!(amazon.id, "0018c00002FInbuAAD");

    let seen = org.seen();
    let create = &seen[index_of(&seen, "POST", "/jobs/ingest")];
    assert_eq!(create.path, "/services/data/v60.0/jobs/ingest");
    assert_eq!(
        create.json(),
        json!({"object": "Account", "operation": "insert", "contentType": "CSV",
               "columnDelimiter": "COMMA", "lineEnding": "CRLF"})
    );
    assert_eq!(
        create.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(create.header("content-type"), Some("application/json"));

    let puts = org.calls("PUT", "/batches");
    assert_eq!(puts.len(), 1, "one upload per job");
    let put = &puts[0];
    assert_eq!(
        put.path, "/services/data/66.0/jobs/ingest/7505fEXAMPLE4C2AAM/batches",
        "the upload goes to the contentUrl Salesforce returned"
    );
    assert_eq!(put.header("content-type"), Some("text/csv"));
    assert_eq!(
        put.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(
        put.body.starts_with(
            "Name,ShippingCity,NumberOfEmployees,AnnualRevenue,Website,Description\r\n"
        )
    );
    assert!(
        put.body.matches('\n').count() == put.body.matches("\r\n").count(),
        "lineEnding CRLF: every row ends with CRLF"
    );
    assert_eq!(
        parse_csv(&put.body),
        parse_csv(&fixture("ingest-insert.csv")),
        "the documented rows"
    );

    let patch = &seen[index_of(&seen, "PATCH", "/jobs/ingest/")];
    assert_eq!(
        patch.path,
        format!("/services/data/v60.0/jobs/ingest/{INSERT_JOB}")
    );
    assert_eq!(patch.json(), json!({"state": "UploadComplete"}));
    assert!(
        org.calls("GET", &format!("/jobs/ingest/{INSERT_JOB}"))
            .len()
            >= 4,
        "polled past UploadComplete"
    );
    for file in [
        "successfulResults/",
        "failedResults/",
        "unprocessedrecords/",
    ] {
        let get = &seen[index_of(&seen, "GET", file)];
        assert_eq!(
            get.path,
            format!("/services/data/v66.0/jobs/ingest/{INSERT_JOB}/{file}"),
            "results are read with the job's api version"
        );
        assert_eq!(get.header("accept"), Some("text/csv"));
    }
    assert!(index_of(&seen, "POST", "/jobs/ingest") < index_of(&seen, "PUT", "/batches"));
    assert!(index_of(&seen, "PUT", "/batches") < index_of(&seen, "PATCH", "/jobs/ingest/"));
    assert!(
        index_of(&seen, "PATCH", "/jobs/ingest/") < index_of(&seen, "GET", "successfulResults")
    );
}

#[tokio::test]
async fn ingest_splits_input_over_the_byte_limit_into_jobs_of_one_upload_each() {
    let (org, sf) = start().await;
    let columns = ["Id", "Phone", "Fax", "Name"];
    let rows: Vec<Vec<IngestValue>> = (0..10)
        .map(|i| {
            let phone = if i % 2 == 0 {
                IngestValue::Null
            } else {
                IngestValue::from("555-0100")
            };
            vec![
                IngestValue::from(format!("003xx00000{i:08}")),
                phone,
                IngestValue::Unchanged,
                IngestValue::from(format!("Acme {i}")),
            ]
        })
        .collect();
    let limit = 100;
    let spec = IngestSpec::new("Contact", IngestOperation::Update).with_max_upload_bytes(limit);
    let jobs = sf.ingest(&spec, &columns, rows).await.unwrap();

    let puts = org.calls("PUT", "/batches");
    assert!(jobs.len() >= 3, "{} jobs", jobs.len());
    assert_eq!(puts.len(), jobs.len(), "exactly one upload per job");
    let mut job_paths: Vec<&str> = puts.iter().map(|p| p.path.as_str()).collect();
    job_paths.dedup();
    assert_eq!(job_paths.len(), puts.len(), "no job got two uploads");
    let header = "Id,Phone,Fax,Name\r\n";
    let mut lines = Vec::new();
    for put in &puts {
        assert!(
            put.body.len() <= limit,
            "upload of {} bytes",
            put.body.len()
        );
        let data = put
            .body
            .strip_prefix(header)
            .expect("every upload starts with the header");
        assert!(data.ends_with("\r\n"), "rows are never cut");
        lines.extend(data.lines().map(str::to_owned));
    }
    let expected: Vec<String> = (0..10)
        .map(|i| {
            let phone = if i % 2 == 0 { "#N/A" } else { "555-0100" };
            format!("003xx00000{i:08},{phone},,Acme {i}")
        })
        .collect();
    assert_eq!(
        lines, expected,
        "every row once, in order; #N/A clears, an empty cell leaves unchanged"
    );

    let closes = org.calls("PATCH", "/jobs/ingest/");
    assert_eq!(closes.len(), jobs.len());
    assert!(
        closes
            .iter()
            .all(|c| c.json() == json!({"state": "UploadComplete"}))
    );
    for create in org.calls("POST", "/jobs/ingest") {
        assert_eq!(create.json()["operation"], "update");
        assert_eq!(create.json().get("externalIdFieldName"), None);
    }
    let written: usize = jobs.iter().map(|j| j.successful.len()).sum();
    assert_eq!(written, 10);
    assert_eq!(jobs[0].successful[0].row.get("Phone"), Some("#N/A"));
    assert!(!jobs[0].successful[0].created);
}

#[tokio::test]
async fn ingest_upsert_names_the_external_id_and_correlates_results_by_it() {
    let (org, sf) = start().await;
    let (mut columns, mut rows) = doc_csv("ingest-upsert.csv");
    // A helper column that is not a field of Account: Salesforce does not echo it.
    columns.push("RowNumber".to_owned());
    for (i, row) in rows.iter_mut().enumerate() {
        row.push(IngestValue::from(i.to_string()));
    }
    rows.push(vec![
        IngestValue::from("3001"),
        IngestValue::Unchanged,
        IngestValue::from("12"),
        IngestValue::from("12"),
    ]);
    let spec = IngestSpec::new(
        "Account",
        IngestOperation::Upsert {
            external_id_field: "customExtIdField__c".to_owned(),
        },
    );
    let jobs = sf.ingest(&spec, &columns, rows).await.unwrap();
    let job = &jobs[0];

    let create = &org.calls("POST", "/jobs/ingest")[0];
    assert_eq!(
        create.json(),
        json!({"object": "Account", "operation": "upsert", "externalIdFieldName": "customExtIdField__c",
               "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "CRLF"})
    );
    let put = &org.calls("PUT", "/batches")[0];
    assert!(
        put.body
            .contains("\r\n234,\"United Oil & Gas, UK\",1467,1\r\n"),
        "{}",
        put.body
    );
    assert!(put.body.ends_with("\r\n3001,,12,12\r\n"));

    let by_ext = job.by_column("customExtIdField__c").unwrap();
    assert_eq!(by_ext.len(), 13);
    let Some(IngestOutcome::Succeeded(uk)) = by_ext.get("234") else {
        panic!("234")
    };
    assert_eq!(
        (uk.id.as_str(), uk.row.get("name")),
        ("0018c00002DJIpKAAX", Some("United Oil & Gas, UK"))
    );
    let Some(IngestOutcome::Failed(bad)) = by_ext.get("3001") else {
        panic!("3001")
    };
    assert_eq!(bad.code, "REQUIRED_FIELD_MISSING");
    assert!(
        bad.message
            .starts_with("Required fields are missing: [Name]"),
        "{}",
        bad.message
    );
    assert_eq!(bad.id, None);
    assert_eq!(job.unaccounted_rows(), Some(0));

    let err = job.by_column("RowNumber").unwrap_err();
    assert!(
        matches!(err, SalesforceError::NotCorrelatable { .. }),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains("real fields"), "{err}");
}

#[tokio::test]
async fn a_failed_ingest_job_is_a_classified_error_naming_the_job() {
    let (org, sf) = start().await;
    let spec = IngestSpec::new("Broken__c", IngestOperation::Insert);
    let err = sf
        .ingest(&spec, &["Name"], vec![vec![IngestValue::from("x")]])
        .await
        .unwrap_err();
    let SalesforceError::IngestJobFailed {
        job_id,
        state,
        message,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((job_id.as_str(), state.as_str()), (FAILED_JOB, "Failed"));
    assert!(message.contains("InvalidBatch"), "{message}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(
        err.to_string().contains("ingest_job_results"),
        "the message names the fix: {err}"
    );
    assert!(
        org.calls("PATCH", "/jobs/ingest/")
            .iter()
            .all(|p| p.json()["state"] == "UploadComplete"),
        "a job that ran is not aborted"
    );
    let results = sf.ingest_job_results(FAILED_JOB).await.unwrap();
    assert!(results.failed.is_empty() && results.unprocessed.is_empty());
    assert_eq!(results.rows_uploaded, None);
}

#[tokio::test]
async fn an_upload_failure_aborts_the_job_and_a_create_that_may_have_landed_is_not_resent() {
    let (org, sf) = start().await;
    let spec = IngestSpec::new("UploadFails__c", IngestOperation::Insert);
    let err = sf
        .ingest(&spec, &["Name"], vec![vec![IngestValue::from("x")]])
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
    assert_eq!(
        org.calls("PUT", "/batches").len(),
        1,
        "the one upload is never resent"
    );
    let patches: Vec<Value> = org
        .calls("PATCH", "/jobs/ingest/")
        .iter()
        .map(Seen::json)
        .collect();
    assert_eq!(
        patches,
        vec![json!({"state": "Aborted"})],
        "aborted, never closed"
    );

    let spec = IngestSpec::new("CreateFails__c", IngestOperation::Insert);
    let err = sf
        .ingest(&spec, &["Name"], vec![vec![IngestValue::from("x")]])
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
    let creates = org
        .calls("POST", "/jobs/ingest")
        .into_iter()
        .filter(|c| c.json()["object"] == "CreateFails__c")
        .count();
    assert_eq!(
        creates, 1,
        "a create answered with 5xx may have created a job: not resent"
    );
}

fn doc_create_records(first_name: &str) -> Vec<SObjectRecord> {
    vec![
        SObjectRecord::new("Account")
            .field("Name", first_name)
            .field("BillingCity", "San Francisco"),
        SObjectRecord::new("Contact")
            .field("LastName", "Johnson")
            .field("FirstName", "Erica"),
    ]
}

fn failed_codes(outcome: &RecordOutcome) -> Vec<&str> {
    outcome
        .errors()
        .iter()
        .map(|e| e.status_code.as_str())
        .collect()
}

#[tokio::test]
async fn collections_create_update_delete_match_the_documented_exchanges() {
    let (org, sf) = start().await;

    let created = sf
        .create_records(&doc_create_records("example.com"), false)
        .await
        .unwrap();
    assert_eq!(
        created,
        vec![
            RecordOutcome::Succeeded {
                id: "001RM000003oLnnYAE".into()
            },
            RecordOutcome::Succeeded {
                id: "003RM0000068xV6YAI".into()
            },
        ]
    );
    let post = &org.calls("POST", "/composite/sobjects")[0];
    assert_eq!(post.path, "/services/data/v60.0/composite/sobjects");
    let documented: Value =
        serde_json::from_str(&fixture("collections-create-request.json")).unwrap();
    assert_eq!(post.json(), documented);

    let partial = sf
        .create_records(&doc_create_records("Duplicate Co"), false)
        .await
        .unwrap();
    assert_eq!(failed_codes(&partial[0]), ["DUPLICATES_DETECTED"]);
    assert_eq!(partial[0].id(), None);
    assert_eq!(partial[1].id(), Some("003RM0000068xVCYAY"));
    let rolled = sf
        .create_records(&doc_create_records("example.com"), true)
        .await
        .unwrap();
    assert!(!rolled[0].is_rolled_back() && rolled[1].is_rolled_back());
    assert_eq!(
        org.calls("POST", "/composite/sobjects")[2].json()["allOrNone"],
        true
    );

    let update = |second: &str| {
        vec![
            SObjectRecord::new("Account")
                .with_id("001xx000003DGb2AAG")
                .field("NumberOfEmployees", 27000),
            SObjectRecord::new("Contact")
                .with_id(second)
                .field("Title", "Lead Engineer"),
        ]
    };
    let updated = sf
        .update_records(&update("003xx000004TmiQAAS"), false)
        .await
        .unwrap();
    assert_eq!(
        updated[1],
        RecordOutcome::Succeeded {
            id: "003RM0000068og4YAA".into()
        }
    );
    let patch = &org.calls("PATCH", "/composite/sobjects")[0];
    let documented: Value =
        serde_json::from_str(&fixture("collections-update-request.json")).unwrap();
    assert_eq!(patch.json(), documented, "numbers go as JSON numbers");
    let partial = sf
        .update_records(&update("001xx000003DGb2999"), false)
        .await
        .unwrap();
    assert!(partial[0].is_success());
    assert_eq!(partial[1].errors()[0].fields, ["Id"]);
    let rolled = sf
        .update_records(&update("001xx000003DGb2999"), true)
        .await
        .unwrap();
    assert_eq!(
        rolled[0].id(),
        Some("001RM000003oCprYAE"),
        "a rolled-back record keeps its id"
    );
    assert!(!rolled[0].is_success() && rolled[0].is_rolled_back());
    assert_eq!(failed_codes(&rolled[1]), ["MALFORMED_ID"]);

    let deleted = sf
        .delete_records(&["001xx000003DGb2AAG", "003xx000004TmiQAAS"], false)
        .await
        .unwrap();
    assert_eq!(deleted[1].id(), Some("001RM000003oLraYAE"));
    let delete = &org.calls("DELETE", "/composite/sobjects")[0];
    assert_eq!(
        delete.query,
        "ids=001xx000003DGb2AAG,003xx000004TmiQAAS&allOrNone=false"
    );
    assert_eq!(delete.body, "");
    let partial = sf
        .delete_records(&["001RM000003oLrfYAE", "001RM000003oLrB000"], false)
        .await
        .unwrap();
    assert!(partial[0].is_success());
    assert_eq!(
        partial[1].errors()[0].message,
        "malformed id 001RM000003oLrB000"
    );

    let nulled = SObjectRecord::new("Account")
        .with_id("001xx000003DGb2AAG")
        .field("Fax", Value::Null)
        .field("IsActive__c", false);
    sf.update_records(&[nulled], false).await.unwrap();
    let last = org.calls("PATCH", "/composite/sobjects").pop().unwrap();
    assert_eq!(last.json()["records"][0]["Fax"], Value::Null);
    assert_eq!(last.json()["records"][0]["IsActive__c"], false);
}

#[tokio::test]
async fn collections_send_at_most_200_records_a_request_and_keep_input_order() {
    let (org, sf) = start().await;
    let records: Vec<SObjectRecord> = (0..450)
        .map(|i| SObjectRecord::new("Account").field("Name", format!("Restored {i}")))
        .collect();
    let created = sf.create_records(&records, true).await.unwrap();
    let posts = org.calls("POST", "/composite/sobjects");
    let sizes: Vec<usize> = posts
        .iter()
        .map(|p| p.json()["records"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [200, 200, 50]);
    assert_eq!(posts[1].json()["records"][0]["Name"], "Restored 200");
    let ids: Vec<&str> = created.iter().map(|o| o.id().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "outcomes in input order");
    assert_eq!(ids.len(), 450);

    let owned: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    let deleted = sf.delete_records(&owned, false).await.unwrap();
    assert_eq!(org.calls("DELETE", "/composite/sobjects").len(), 3);
    assert_eq!(
        deleted.iter().map(|o| o.id().unwrap()).collect::<Vec<_>>(),
        ids
    );

    let err = sf
        .delete_records(&["001&allOrNone=true"], false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SalesforceError::InvalidWriteRequest { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn undelete_sends_a_partner_envelope_and_reads_results_in_order() {
    let (org, sf) = start().await;
    let outcomes = sf
        .undelete_records(&["001D000000HRzKDIA1", "001D000000HTK3aIAH"])
        .await
        .unwrap();
    assert_eq!(
        outcomes[0],
        RecordOutcome::Succeeded {
            id: "001D000000HRzKDIA1".into()
        }
    );
    assert_eq!(outcomes[1].id(), Some("001D000000HTK3aIAH"));
    assert_eq!(failed_codes(&outcomes[1]), ["UNDELETE_FAILED"]);
    assert_eq!(
        outcomes[1].errors()[0].message,
        "Entity is not in the recycle bin"
    );

    let call = &org.calls("POST", "/services/Soap")[0];
    assert_eq!(call.path, "/services/Soap/u/60.0");
    assert_eq!(call.header("content-type"), Some("text/xml; charset=UTF-8"));
    assert_eq!(call.header("soapaction"), Some("undelete"));
    assert_eq!(
        call.header("authorization"),
        None,
        "the session goes in the SessionHeader"
    );
    for part in [
        r#"xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/""#,
        r#"xmlns:urn="urn:partner.soap.sforce.com""#,
        &format!(
            "<soapenv:Header><urn:SessionHeader><urn:sessionId>{TOKEN}</urn:sessionId></urn:SessionHeader></soapenv:Header>"
        ),
        "<soapenv:Body><urn:undelete><urn:ids>001D000000HRzKDIA1</urn:ids><urn:ids>001D000000HTK3aIAH</urn:ids></urn:undelete></soapenv:Body>",
    ] {
        assert!(
            call.body.contains(part),
            "envelope lacks {part}: {}",
            call.body
        );
    }

    let ids: Vec<String> = (0..450).map(|i| format!("001D0000{i:010}")).collect();
    let outcomes = sf.undelete_records(&ids).await.unwrap();
    let calls = org.calls("POST", "/services/Soap");
    let sizes: Vec<usize> = calls[1..]
        .iter()
        .map(|c| envelope_ids(&c.body).len())
        .collect();
    assert_eq!(sizes, [200, 200, 50]);
    assert_eq!(
        outcomes
            .iter()
            .map(|o| o.id().unwrap().to_owned())
            .collect::<Vec<_>>(),
        ids
    );
}

#[tokio::test]
async fn an_expired_soap_session_is_renewed_once() {
    let (org, sf) = start().await;
    *org.expired_soap_calls.lock().unwrap() = 1;
    let outcomes = sf
        .undelete_records(&["001D000000HRzKDIA1", "001D000000HTK3aIAH"])
        .await
        .unwrap();
    assert!(outcomes[0].is_success());
    assert_eq!(
        org.calls("POST", "/services/oauth2/token").len(),
        2,
        "a new token was minted"
    );
    assert_eq!(
        org.calls("POST", "/services/Soap").len(),
        2,
        "and the call sent once more"
    );

    *org.expired_soap_calls.lock().unwrap() = 2;
    let err = sf
        .undelete_records(&["001D000000HRzKDIA1"])
        .await
        .unwrap_err();
    assert!(
        matches!(err, SalesforceError::SessionRejected { .. }),
        "{err:?}"
    );
    assert_eq!(
        org.calls("POST", "/services/Soap").len(),
        4,
        "renewed only once"
    );
}

#[tokio::test]
async fn other_soap_faults_are_classified_and_no_error_shows_the_token() {
    let (org, sf) = start().await;
    *org.soap_fault.lock().unwrap() = Some("INVALID_ID_FIELD".to_owned());
    let err = sf
        .undelete_records(&["001D000000HRzKDIA1"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("INVALID_ID_FIELD"));
    assert_eq!(err.class(), ErrorClass::Permanent);
    for text in [err.to_string(), format!("{err:?}"), format!("{sf:?}")] {
        assert!(
            !text.contains(TOKEN) && !text.contains("AQcAQH0dMHEXAMPLE"),
            "{text}"
        );
    }
    assert_eq!(
        org.calls("POST", "/services/Soap").len(),
        1,
        "a fault is not retried"
    );

    *org.soap_fault.lock().unwrap() = Some("REQUEST_LIMIT_EXCEEDED".to_owned());
    let err = sf
        .undelete_records(&["001D000000HRzKDIA1"])
        .await
        .unwrap_err();
    assert!(err.pauses_org(), "{err:?}");
    *org.soap_fault.lock().unwrap() = Some("SERVER_UNAVAILABLE".to_owned());
    let err = sf
        .undelete_records(&["001D000000HRzKDIA1"])
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable);
}
