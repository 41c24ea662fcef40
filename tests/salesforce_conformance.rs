//! Conformance of `coffer-salesforce` with Salesforce's documented responses.
//!
//! A plain HTTP server serves the fixtures in `tests/fixtures/salesforce-docs/`, which reproduce
//! the documentation's example responses (see its README), and records every request. The
//! simulator is not involved: a mistake the client and the simulator share cannot hide here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use coffer_core::SObjectName;
use coffer_salesforce::{ClientOptions, OrgConnection, SalesforceClient};
use secrecy::SecretString;

const JOB: &str = "7986gEXAMPLE4X2OPT";
const TOKEN: &str = "00DE0X0A0M0PeLE!AQcAQH0dMHEXAMPLEzmpkb58urFRkgeBGsxL_QJWwYMfAbUeeG7c1EXAMPLEDUkWe6H34r1AAwOR8B8fLEz6nEXAMPLE";

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: HashMap<String, String>,
    authorization: Option<String>,
    body: String,
}

#[derive(Default)]
struct Fixtures {
    base_url: Mutex<String>,
    seen: Mutex<Vec<Seen>>,
    polls: Mutex<u32>,
}

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/salesforce-docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn respond(
    status: StatusCode,
    content_type: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Response {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", content_type);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(Body::from(body)).expect("response")
}

fn json(body: String) -> Response {
    respond(StatusCode::OK, "application/json;charset=UTF-8", &[], body)
}

/// Serves the documented exchange of a describe and a Bulk API 2.0 query of two result pages.
async fn serve(State(fx): State<Arc<Fixtures>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let query: HashMap<String, String> = parts.uri.query().map(url_pairs).unwrap_or_default();
    let seen = Seen {
        method: parts.method.clone(),
        path: parts.uri.path().trim_end_matches('/').to_owned(),
        query: query.clone(),
        authorization: header(&parts.headers, "authorization"),
        body,
    };
    fx.seen.lock().expect("lock").push(seen.clone());
    let Some((version, rest)) = split_version(&seen.path) else {
        return match (seen.method.as_str(), seen.path.as_str()) {
            ("POST", "/services/oauth2/token") => {
                let base = fx.base_url.lock().expect("lock").clone();
                json(fixture("token.json").replace("{{instance_url}}", &base))
            }
            _ => not_found(),
        };
    };
    match (seen.method.as_str(), rest) {
        ("GET", "/sobjects") => json(fixture("describe-global.json")),
        ("GET", "/sobjects/Account/describe") => json(fixture("describe-account.json")),
        ("POST", "/jobs/query") => json(fixture("query-job-created.json")),
        ("GET", r) if r == format!("/jobs/query/{JOB}") => {
            let mut polls = fx.polls.lock().expect("lock");
            *polls += 1;
            json(fixture(if *polls == 1 { "query-job-in-progress.json" } else { "query-job-complete.json" }))
        }
        // Documented: results must be fetched with the API version the job was created in.
        ("GET", r) if r == format!("/jobs/query/{JOB}/results") && version != "58.0" => respond(
            StatusCode::CONFLICT,
            "application/json",
            &[],
            r#"[{"errorCode":"INVALIDJOB","message":"Use the same API version to get query results that you used to create the query."}]"#.to_owned(),
        ),
        ("GET", r) if r == format!("/jobs/query/{JOB}/results") => results_page(query.get("locator").map(String::as_str)),
        _ => not_found(),
    }
}

fn not_found() -> Response {
    respond(
        StatusCode::NOT_FOUND,
        "application/json",
        &[],
        r#"[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]"#
            .to_owned(),
    )
}

/// `/services/data/v58.0/jobs/query` -> `("58.0", "/jobs/query")`.
fn split_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/services/data/v")?;
    let slash = rest.find('/')?;
    Some((&rest[..slash], &rest[slash..]))
}

fn results_page(locator: Option<&str>) -> Response {
    let (file, next, count) = match locator {
        None => ("results-page-1.csv", "MTAwMDA", "3"),
        Some("MTAwMDA") => ("results-page-2.csv", "null", "2"),
        Some(_) => {
            return respond(
                StatusCode::BAD_REQUEST,
                "application/json",
                &[],
                r#"[{"errorCode":"INVALIDLOCATOR","message":"invalid locator"}]"#.to_owned(),
            );
        }
    };
    respond(
        StatusCode::OK,
        "text/csv",
        &[("Sforce-Locator", next), ("Sforce-NumberOfRecords", count)],
        fixture(file),
    )
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn url_pairs(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

async fn start() -> anyhow::Result<(Arc<Fixtures>, String)> {
    let fx = Arc::new(Fixtures::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    *fx.base_url.lock().expect("lock") = base.clone();
    let app = axum::Router::new().fallback(serve).with_state(fx.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((fx, base))
}

async fn connect(base: &str) -> anyhow::Result<SalesforceClient> {
    let conn = OrgConnection {
        login_url: base.to_owned(),
        client_id: "3MVG9EXAMPLEconsumerkey".to_owned(),
        client_secret: SecretString::from("EXAMPLE-consumer-secret".to_owned()),
        // The job reports apiVersion 58.0; the connection uses another version on purpose.
        api_version: "60.0".to_owned(),
    };
    let options = ClientOptions {
        poll_initial: Duration::from_millis(20),
        ..ClientOptions::default()
    };
    Ok(SalesforceClient::connect_with(conn, options).await?)
}

#[tokio::test]
async fn the_client_reads_describe_responses_as_documented() -> anyhow::Result<()> {
    let (fx, base) = start().await?;
    let sf = connect(&base).await?;
    assert_eq!(
        sf.instance_url().trim_end_matches('/'),
        base,
        "API calls go to the token's instance_url"
    );

    let global = sf.describe_global().await?;
    let account = global
        .iter()
        .find(|o| o.name == "Account")
        .expect("Account listed");
    assert!(account.queryable && account.replicateable && !account.custom);
    assert_eq!(account.key_prefix.as_deref(), Some("001"));
    let aggregate = global
        .iter()
        .find(|o| o.name == "AggregateResult")
        .expect("AggregateResult listed");
    assert_eq!(
        aggregate.key_prefix, None,
        "a null keyPrefix is read as none"
    );
    assert!(!aggregate.queryable);

    let describe = sf.describe_sobject(&SObjectName::new("Account")?).await?;
    let parent = describe
        .fields
        .iter()
        .find(|f| f.name == "ParentId")
        .expect("ParentId");
    assert_eq!(parent.reference_to, vec!["Account".to_owned()]);
    assert_eq!(parent.relationship_name.as_deref(), Some("Parent"));
    let name = describe
        .fields
        .iter()
        .find(|f| f.name == "Name")
        .expect("Name");
    assert_eq!(name.relationship_name, None);
    let queryable: Vec<&str> = describe
        .bulk_queryable_fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert!(
        queryable.contains(&"BillingCity"),
        "components of a compound field are queryable"
    );
    assert!(
        !queryable.contains(&"BillingAddress"),
        "the compound field itself is not: {queryable:?}"
    );
    let contacts = describe
        .child_relationships
        .iter()
        .find(|r| r.child_sobject == "Contact")
        .expect("Contacts");
    assert!(contacts.cascade_delete);

    let seen = fx.seen.lock().expect("lock").clone();
    let token = &seen[0];
    assert_eq!(
        (token.method.as_str(), token.path.as_str()),
        ("POST", "/services/oauth2/token")
    );
    for pair in [
        "grant_type=client_credentials",
        "client_id=3MVG9EXAMPLEconsumerkey",
    ] {
        assert!(
            token.body.contains(pair),
            "token request lacks {pair}: {}",
            token.body
        );
    }
    for call in &seen[1..] {
        assert_eq!(
            call.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{} {}",
            call.method,
            call.path
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_client_runs_a_bulk_query_as_documented() -> anyhow::Result<()> {
    let (fx, base) = start().await?;
    let sf = connect(&base).await?;
    let mut results = sf.bulk_query("SELECT Id, Name FROM Account").await?;
    assert_eq!(
        results.job_id(),
        JOB,
        "Salesforce's job ids are opaque: the client takes them as given"
    );

    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut pages = 0;
    while let Some(page) = results.next_page().await? {
        pages += 1;
        assert_eq!(
            page.headers.iter().collect::<Vec<_>>(),
            vec!["Id", "Name"],
            "every page has its header row"
        );
        rows.extend(
            page.records
                .iter()
                .map(|r| r.iter().map(str::to_owned).collect()),
        );
    }
    assert_eq!(pages, 2, "the literal locator \"null\" ends the results");
    assert_eq!(rows.len(), 5);
    assert_eq!(
        rows[3][1], "Pyramid Construction Inc., \"Paris\"",
        "quotes and commas inside a value"
    );
    assert_eq!(
        rows[4][1], "Grand Hotels & Resorts Ltd\nEast Wing",
        "a newline inside a value"
    );

    let seen = fx.seen.lock().expect("lock").clone();
    let create = seen
        .iter()
        .find(|s| s.method == Method::POST && s.path.ends_with("/jobs/query"))
        .expect("job created");
    let body: serde_json::Value = serde_json::from_str(&create.body)?;
    assert_eq!(body["operation"], "query");
    assert_eq!(body["query"], "SELECT Id, Name FROM Account");
    let polls = seen.iter().filter(|s| s.path.ends_with(JOB)).count();
    assert!(
        polls >= 2,
        "the client polls until JobComplete (polled {polls} times)"
    );
    let fetches: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.ends_with("/results"))
        .collect();
    assert_eq!(
        fetches.len(),
        2,
        "one request per page, none after the last"
    );
    assert!(
        fetches
            .iter()
            .all(|f| f.path.starts_with("/services/data/v58.0/")),
        "results use the job's apiVersion 58.0"
    );
    assert!(
        create.path.starts_with("/services/data/v60.0/"),
        "the job is created with the connection's version"
    );
    assert_eq!(fetches[0].query.get("locator"), None);
    assert_eq!(
        fetches[1].query.get("locator").map(String::as_str),
        Some("MTAwMDA")
    );
    assert!(
        seen.iter().all(|s| s.path.starts_with("/services/")),
        "no request outside the API: {seen:?}"
    );
    Ok(())
}
