//! The HTTP surface: OAuth token endpoint (client credentials and JWT bearer), REST describe
//! (with `If-Modified-Since`), Bulk API 2.0 query jobs, blob retrieval, and the routes of
//! [`crate::rest`], behind the [`crate::faults::gate`] middleware that counts API calls; each
//! answers errors in Salesforce's JSON shapes.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::bulk::{self, CreateJob, Job, JobState};
use crate::data::{Org, format_datetime};
use crate::faults::{self, Faults, take_one};
use crate::ids::{pod_of, record_id};
use crate::{jwt, rest};

/// The HTTP date format of `If-Modified-Since` and `Last-Modified` (`EEE, dd MMM yyyy HH:mm:ss z`).
const HTTP_DATE: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// Shared server state.
#[derive(Debug)]
pub struct Sim {
    /// The generated org.
    pub org: Org,
    /// The org id.
    pub org_id: coffer_core::OrgId,
    /// Accepted client id.
    pub client_id: String,
    /// Accepted client secret.
    pub client_secret: String,
    /// Rows per results page when `maxRecords` is absent.
    pub default_page_size: usize,
    /// Login and instance URL.
    pub base_url: String,
    /// Valid access tokens.
    pub tokens: Mutex<HashSet<String>>,
    /// Query jobs by id.
    pub jobs: Mutex<HashMap<String, Job>>,
    /// Job id counter.
    pub job_counter: AtomicU64,
    /// Token counter.
    pub token_counter: AtomicU64,
    /// If set, the next created job fails with this message.
    pub fail_next_job: Mutex<Option<String>>,
    /// Fault knobs and API counters.
    pub faults: Faults,
    /// REST query cursors by id (`01g...`).
    pub cursors: Mutex<HashMap<String, rest::Cursor>>,
    /// Users pre-authorized for the JWT bearer flow: username -> RSA public key (PEM).
    pub jwt_users: Mutex<HashMap<String, String>>,
    /// What clients wrote over the generated org, and the simulator's clock.
    pub store: crate::store::Store,
    /// Bulk API 2.0 ingest jobs.
    pub ingest: crate::ingest::Jobs,
}

/// Locks a mutex, recovering the data if a handler panicked while holding it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Builds the router.
pub fn router(sim: Arc<Sim>) -> Router {
    let data = "/services/data/{version}";
    Router::new()
        .route("/services/oauth2/token", post(token))
        .route("/services/data", get(versions))
        .route("/services/data/", get(versions))
        .route(&format!("{data}/sobjects"), get(describe_global))
        .route(&format!("{data}/sobjects/"), get(describe_global))
        .route(&format!("{data}/sobjects/{{name}}/describe"), get(describe))
        .route(
            &format!("{data}/sobjects/{{name}}/describe/"),
            get(describe),
        )
        .route(
            &format!("{data}/sobjects/{{name}}/{{id}}/{{field}}"),
            get(blob),
        )
        .route(&format!("{data}/jobs/query"), post(create_job))
        .route(&format!("{data}/jobs/query/"), post(create_job))
        .route(&format!("{data}/jobs/query/{{id}}"), get(job_info))
        .route(&format!("{data}/jobs/query/{{id}}/results"), get(results))
        .route(&format!("{data}/query"), get(rest::query))
        .route(&format!("{data}/query/"), get(rest::query))
        .route(&format!("{data}/queryAll"), get(rest::query_all))
        .route(&format!("{data}/queryAll/"), get(rest::query_all))
        .route(&format!("{data}/query/{{locator}}"), get(rest::query_more))
        .route(
            &format!("{data}/queryAll/{{locator}}"),
            get(rest::query_more),
        )
        .route(&format!("{data}/limits"), get(rest::limits))
        .route(&format!("{data}/limits/"), get(rest::limits))
        .route(
            &format!("{data}/limits/recordCount"),
            get(rest::record_count),
        )
        .merge(crate::ingest::routes(data))
        .merge(crate::collections::routes(data))
        .merge(crate::soap::routes())
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            faults::gate,
        ))
        .with_state(sim)
}

/// A Salesforce REST error: `[{"errorCode": ..., "message": ...}]`.
pub fn sf_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!([{ "errorCode": code, "message": message }])),
    )
        .into_response()
}

/// An error answer not yet rendered (small, unlike a [`Response`]).
#[derive(Debug)]
pub struct SfError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl SfError {
    fn new(status: StatusCode, code: &'static str, message: &str) -> Self {
        SfError {
            status,
            code,
            message: message.to_owned(),
        }
    }
}

impl IntoResponse for SfError {
    fn into_response(self) -> Response {
        sf_error(self.status, self.code, &self.message)
    }
}

fn not_found() -> Response {
    sf_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested resource does not exist",
    )
}

fn oauth_error(code: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": code, "error_description": description })),
    )
        .into_response()
}

/// Checks the bearer token and the API version (`v47.0` or later); returns the version number.
pub fn authorize(sim: &Sim, headers: &HeaderMap, version: &str) -> Result<String, SfError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("OAuth "))
        });
    let valid = token.is_some_and(|t| lock(&sim.tokens).contains(t));
    if !valid {
        return Err(SfError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
        ));
    }
    parse_version(version).ok_or_else(|| {
        SfError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        )
    })
}

fn parse_version(segment: &str) -> Option<String> {
    let number = segment.strip_prefix('v')?;
    let (major, minor) = number.split_once('.')?;
    let ok = major.parse::<u32>().ok()? >= 47 && minor.parse::<u32>().is_ok();
    ok.then(|| number.to_owned())
}

async fn token(State(sim): State<Arc<Sim>>, Form(form): Form<HashMap<String, String>>) -> Response {
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => client_credentials(&sim, &form),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            let assertion = form
                .get("assertion")
                .map(String::as_str)
                .unwrap_or_default();
            match jwt::verify(&sim, assertion) {
                Ok(_user) => issue_token(&sim),
                Err((code, description)) => oauth_error(code, description),
            }
        }
        _ => oauth_error("unsupported_grant_type", "grant type not supported"),
    }
}

fn client_credentials(sim: &Sim, form: &HashMap<String, String>) -> Response {
    if form.get("client_id") != Some(&sim.client_id) {
        return oauth_error("invalid_client_id", "client identifier invalid");
    }
    if form.get("client_secret") != Some(&sim.client_secret) {
        return oauth_error("invalid_client", "invalid client credentials");
    }
    issue_token(sim)
}

/// Issues a new access token bound to the instance URL.
fn issue_token(sim: &Sim) -> Response {
    let n = sim.token_counter.fetch_add(1, Ordering::Relaxed);
    let access_token = format!(
        "{}!AQ{}{:x}",
        &sim.org_id.as_str()[..15],
        uuid::Uuid::new_v4().simple(),
        n
    );
    lock(&sim.tokens).insert(access_token.clone());
    tracing::debug!(org_id = %sim.org_id, "sfsim issued an access token");
    let issued_at = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).to_string();
    axum::Json(json!({
        "access_token": access_token,
        "instance_url": sim.base_url,
        "id": format!("{}/id/{}/{}", sim.base_url, sim.org_id, sim.org.user_id),
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": uuid::Uuid::new_v4().simple().to_string(),
    }))
    .into_response()
}

async fn versions() -> Response {
    axum::Json(json!([{ "label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0" }]))
        .into_response()
}

async fn describe_global(
    State(sim): State<Arc<Sim>>,
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize(&sim, &headers, &version) {
        return e.into_response();
    }
    unless_not_modified(&sim, &headers, || {
        let sobjects: Vec<Value> = sim.org.objects.iter().map(|o| o.summary()).collect();
        json!({ "encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects })
    })
}

/// A describe answer: `304 Not Modified` when the schema has not changed since the request's
/// `If-Modified-Since`, else `body()` as JSON; either way with `Last-Modified`.
fn unless_not_modified(sim: &Sim, headers: &HeaderMap, body: impl FnOnce() -> Value) -> Response {
    let modified = *lock(&sim.faults.schema_modified);
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| time::PrimitiveDateTime::parse(v.trim(), HTTP_DATE).ok())
        .map(time::PrimitiveDateTime::assume_utc);
    let last_modified = modified
        .format(HTTP_DATE)
        .ok()
        .and_then(|v| HeaderValue::from_str(&v).ok());
    let mut resp = if since.is_some_and(|since| modified <= since) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        axum::Json(body()).into_response()
    };
    if let Some(v) = last_modified {
        resp.headers_mut().insert(header::LAST_MODIFIED, v);
    }
    resp
}

async fn describe(
    State(sim): State<Arc<Sim>>,
    Path((version, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize(&sim, &headers, &version) {
        return e.into_response();
    }
    let Some(object) = sim.org.object(&name) else {
        return not_found();
    };
    unless_not_modified(&sim, &headers, || object.describe())
}

async fn blob(
    State(sim): State<Arc<Sim>>,
    Path((version, name, id, field)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize(&sim, &headers, &version) {
        return e.into_response();
    }
    let Some(mut body) = crate::blob_of(&sim, &name, &id, &field) else {
        return not_found();
    };
    sim.faults.blob_downloads.fetch_add(1, Ordering::Relaxed);
    if crate::faults::take_one(&sim.faults.corrupt_blobs)
        && let Some(first) = body.first_mut()
    {
        *first ^= 0xff;
    }
    let total = body.len();
    let from = requested_start(&headers).filter(|_| sim.faults.blob_ranges.load(Ordering::Relaxed));
    let (status, body, range) = match from {
        Some(from) if from >= total && total > 0 => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{total}"))],
            )
                .into_response();
        }
        Some(from) => (
            StatusCode::PARTIAL_CONTENT,
            body.split_off(from),
            Some(format!("bytes {from}-{}/{total}", total.saturating_sub(1))),
        ),
        None => (StatusCode::OK, body, None),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(range) = range.and_then(|r| HeaderValue::from_str(&r).ok()) {
        headers.insert(header::CONTENT_RANGE, range);
    }
    if crate::faults::take_one(&sim.faults.cut_blobs) {
        tracing::debug!(sobject = %name, id = %id, "sfsim cut a blob body mid-transfer");
        return (status, headers, crate::faults::cut_body(body)).into_response();
    }
    (status, headers, Bytes::from(body)).into_response()
}

/// The N of a `Range: bytes=N-` request header (the only form a resuming client sends).
fn requested_start(headers: &HeaderMap) -> Option<usize> {
    let value = headers.get(header::RANGE)?.to_str().ok()?;
    let (start, end) = value.strip_prefix("bytes=")?.split_once('-')?;
    end.trim().is_empty().then_some(())?;
    start.trim().parse().ok()
}

async fn create_job(
    State(sim): State<Arc<Sim>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let version = match authorize(&sim, &headers, &version) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let req: CreateJob = match serde_json::from_slice(&body) {
        Ok(req) => req,
        Err(e) => return sf_error(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", &e.to_string()),
    };
    // A filtered query scans the object once: off the async runtime.
    let planner = sim.clone();
    let planned = match tokio::task::spawn_blocking(move || {
        bulk::plan_at(&planner.org, &planner.store.snapshot(), &req)
    })
    .await
    {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return sf_error(StatusCode::BAD_REQUEST, e.code, &e.message),
        Err(e) => {
            return sf_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN_EXCEPTION",
                &e.to_string(),
            );
        }
    };
    if sim.faults.is_bulk_unsupported(planned.object) {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALIDENTITY",
            &format!(
                "Entity '{}' is not supported by the Bulk API.",
                planned.object
            ),
        );
    }
    let fail_with = lock(&sim.fail_next_job)
        .take()
        .or_else(|| sim.faults.query_timeout_for(planned.rows.len()));
    let n = sim.job_counter.fetch_add(1, Ordering::Relaxed) + 1;
    let job = Job {
        id: record_id("750", &pod_of(sim.org_id.as_str()), n),
        operation: planned.operation,
        object: planned.object.to_owned(),
        api_version: version,
        state: JobState::UploadComplete,
        created_date: format_datetime(OffsetDateTime::now_utc().unix_timestamp()),
        created_by: sim.org.user_id.clone(),
        delimiter: planned.delimiter,
        crlf: planned.crlf,
        columns: planned.columns,
        rows: Arc::new(planned.rows),
        polls: 0,
        fail_with,
    };
    let info = job.info(false);
    tracing::debug!(bulk_job_id = %job.id, object = %job.object, rows = job.rows.len(), "sfsim created a query job");
    lock(&sim.jobs).insert(job.id.clone(), job);
    axum::Json(info).into_response()
}

async fn job_info(
    State(sim): State<Arc<Sim>>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize(&sim, &headers, &version) {
        return e.into_response();
    }
    let mut jobs = lock(&sim.jobs);
    let Some(job) = jobs.get_mut(&id) else {
        return not_found();
    };
    let info = job.info(true);
    job.advance();
    match sim.faults.take_garbage(false) {
        Some(faults::Garbage::TruncatedJson) => {
            let whole = info.to_string();
            let half = whole.get(..whole.len() / 2).unwrap_or_default().to_owned();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                half,
            )
                .into_response()
        }
        Some(_) => html_page("Login | Salesforce"),
        None => axum::Json(info).into_response(),
    }
}

/// A `200 text/html` page titled `title`, as a proxy or an interstitial serves it.
fn html_page(title: &str) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
        format!(
            "<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        ),
    )
        .into_response()
}

async fn results(
    State(sim): State<Arc<Sim>>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let version = match authorize(&sim, &headers, &version) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    // Only the lookup holds the jobs lock; the page is rendered and compressed off the async
    // runtime, so concurrent readers of other jobs (or of other pages) are not held up.
    let Some(job) = lock(&sim.jobs).get(&id).cloned() else {
        return not_found();
    };
    let cell = match sim.faults.take_garbage(true) {
        None => None,
        Some(faults::Garbage::Cell { column, value }) => Some((column, value)),
        Some(faults::Garbage::JsonPage) => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"records":[],"done":true}"#,
            )
                .into_response();
        }
        Some(_) => return html_page("Scheduled Maintenance"),
    };
    let renderer = sim.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        page_of(&renderer, &job, &version, &params).map(|mut page| {
            if let Some((column, value)) = &cell {
                page.body = faults::with_cell(&page.body, column, value);
            }
            page_response(page, &headers)
        })
    })
    .await;
    let (response_headers, body) = match rendered {
        Ok(Ok(rendered)) => rendered,
        Ok(Err(e)) => return e.into_response(),
        Err(e) => {
            return sf_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN_EXCEPTION",
                &e.to_string(),
            );
        }
    };
    let delay = sim.faults.page_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if take_one(&sim.faults.cut_pages) {
        tracing::debug!(bulk_job_id = %id, "sfsim cut a results page mid-body");
        return (StatusCode::OK, response_headers, faults::cut_body(body)).into_response();
    }
    (StatusCode::OK, response_headers, body).into_response()
}

fn page_of(
    sim: &Sim,
    job: &Job,
    version: &str,
    params: &HashMap<String, String>,
) -> Result<bulk::Page, SfError> {
    if version.parse::<f64>().ok() != job.api_version.parse::<f64>().ok() {
        return Err(SfError::new(
            StatusCode::CONFLICT,
            "INVALIDJOB",
            &format!(
                "Job {} was created with API version {}; retrieve its results with the same version",
                job.id, job.api_version
            ),
        ));
    }
    if job.state != JobState::JobComplete {
        return Err(SfError::new(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            &format!(
                "Job {} is in state {}; results are available only when the job is JobComplete",
                job.id,
                job.info(false)["state"]
            ),
        ));
    }
    let max = match params.get("maxRecords") {
        None => sim.default_page_size.max(1),
        Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            SfError::new(
                StatusCode::BAD_REQUEST,
                "INVALIDREQUEST",
                "maxRecords must be a positive integer",
            )
        })?,
    };
    let offset = match params.get("locator").filter(|l| !l.is_empty()) {
        None => 0,
        Some(l) => bulk::decode_locator(l)
            .filter(|o| *o <= job.rows.len())
            .ok_or_else(|| {
                SfError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALIDREQUEST",
                    &format!("Invalid locator: {l}"),
                )
            })?,
    };
    bulk::render_page(job, offset, max).map_err(|e| {
        SfError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN_EXCEPTION",
            &e.to_string(),
        )
    })
}

fn page_response(page: bulk::Page, request: &HeaderMap) -> (HeaderMap, Vec<u8>) {
    let wants_gzip = request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|e| e.trim().split(';').next() == Some("gzip"))
        });
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
    headers.insert("Sforce-NumberOfRecords", HeaderValue::from(page.count));
    if let Ok(locator) = HeaderValue::from_str(&page.next_locator) {
        headers.insert("Sforce-Locator", locator);
    }
    let body = if wants_gzip {
        match gzip(&page.body) {
            Ok(compressed) => {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                compressed
            }
            Err(_) => page.body,
        }
    } else {
        page.body
    };
    (headers, body)
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data)?;
    encoder.finish()
}
