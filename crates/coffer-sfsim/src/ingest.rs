//! Bulk API 2.0 ingest jobs: create (`Open`), one CSV upload, close (`UploadComplete`) or abort,
//! processing observed by polling (`InProgress` on the first poll, the records written and
//! `JobComplete` or `Failed` on the next), then successful, failed and unprocessed records as
//! CSV.
//!
//! As Salesforce does: only one upload per job (a second `PUT` answers `400 INVALIDJOB` "Found
//! multipe contents for job", the documented typo included) and at most 150 MB of it; nothing is
//! processed until the job is closed; an empty cell leaves a field unchanged (null on insert) and
//! `#N/A` sets it to null; records fail one by one (partial success) with `sf__Error` cells like
//! `REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --`; a header naming
//! an unknown field or line endings other than the job's fail the whole job. Result rows are
//! not in request order (the simulator reverses them) so clients correlate by their own columns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::data::format_datetime;
use crate::dml::{Changes, RecordError, Writer};
use crate::ids::{pod_of, record_id};
use crate::schema::{FieldDef, ObjectDef};
use crate::server::{Sim, authorize, lock, sf_error};

/// Salesforce's cap on one upload: 150 MB (of base64; about 100 MB of CSV).
pub const MAX_UPLOAD_BYTES: usize = 150 * 1024 * 1024;

/// Ingest job ids count from here, apart from query job ids.
const FIRST_JOB: u64 = 1 << 30;

/// The ingest jobs of one simulator.
#[derive(Debug)]
pub struct Jobs {
    jobs: Mutex<HashMap<String, IngestJob>>,
    counter: AtomicU64,
    /// The largest upload accepted, in bytes.
    pub upload_limit: AtomicUsize,
}

impl Jobs {
    /// (object, operation, state) of every ingest job created, in no particular order.
    pub fn summary(&self) -> Vec<(String, String, String)> {
        lock(&self.jobs)
            .values()
            .map(|j| {
                let op = j.operation.as_str().to_owned();
                (j.object.to_owned(), op, j.state.as_str().to_owned())
            })
            .collect()
    }
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            jobs: Mutex::default(),
            counter: AtomicU64::new(FIRST_JOB),
            upload_limit: AtomicUsize::new(MAX_UPLOAD_BYTES),
        }
    }
}

/// The operations an ingest job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Create records.
    Insert,
    /// Update records by `Id`.
    Update,
    /// Update or create by an external id field.
    Upsert,
    /// Delete to the Recycle Bin.
    Delete,
    /// Delete for good.
    HardDelete,
}

impl Operation {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "insert" => Operation::Insert,
            "update" => Operation::Update,
            "upsert" => Operation::Upsert,
            "delete" => Operation::Delete,
            "hardDelete" => Operation::HardDelete,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Upsert => "upsert",
            Operation::Delete => "delete",
            Operation::HardDelete => "hardDelete",
        }
    }
}

/// Lifecycle states of an ingest job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestState {
    /// Accepting its upload.
    Open,
    /// Closed by the client, waiting to run.
    UploadComplete,
    /// Running.
    InProgress,
    /// Done; results available.
    JobComplete,
    /// Failed as a whole; see the error message.
    Failed,
    /// Aborted by the client.
    Aborted,
}

impl IngestState {
    fn as_str(self) -> &'static str {
        match self {
            IngestState::Open => "Open",
            IngestState::UploadComplete => "UploadComplete",
            IngestState::InProgress => "InProgress",
            IngestState::JobComplete => "JobComplete",
            IngestState::Failed => "Failed",
            IngestState::Aborted => "Aborted",
        }
    }

    fn is_terminal(self) -> bool {
        matches!(
            self,
            IngestState::JobComplete | IngestState::Failed | IngestState::Aborted
        )
    }
}

/// What processing produced: records as sent (cells of the uploaded header), by outcome.
#[derive(Debug, Default)]
pub struct Outcome {
    header: Vec<String>,
    /// (id, created, cells).
    successes: Vec<(String, bool, Vec<String>)>,
    /// (id or empty, error, cells).
    failures: Vec<(String, String, Vec<String>)>,
    unprocessed: Vec<Vec<String>>,
}

/// One ingest job.
#[derive(Debug)]
pub struct IngestJob {
    id: String,
    object: &'static str,
    operation: Operation,
    external_id: Option<&'static str>,
    api_version: String,
    delimiter: (&'static str, u8),
    crlf: bool,
    state: IngestState,
    created_date: String,
    created_by: String,
    data: Option<Bytes>,
    processing: bool,
    polls: u32,
    outcome: Outcome,
    error_message: Option<String>,
}

impl IngestJob {
    fn info(&self, with_progress: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "operation": self.operation.as_str(),
            "object": self.object,
            "createdById": self.created_by,
            "createdDate": self.created_date,
            "systemModstamp": self.created_date,
            "state": self.state.as_str(),
            "externalIdFieldName": self.external_id,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": self.api_version.parse::<f64>().unwrap_or(0.0),
            "contentUrl": format!("services/data/v{}/jobs/ingest/{}/batches", self.api_version, self.id),
            "lineEnding": if self.crlf { "CRLF" } else { "LF" },
            "columnDelimiter": self.delimiter.0,
        });
        if let (true, Value::Object(map)) = (with_progress, &mut v) {
            let failed = self.outcome.failures.len();
            map.insert("jobType".into(), json!("V2Ingest"));
            map.insert(
                "numberRecordsProcessed".into(),
                json!(self.outcome.successes.len() + failed),
            );
            map.insert("numberRecordsFailed".into(), json!(failed));
            map.insert("retries".into(), json!(0));
            map.insert("totalProcessingTime".into(), json!(self.polls * 10));
            map.insert("apiActiveProcessingTime".into(), json!(self.polls * 5));
            map.insert("apexProcessingTime".into(), json!(0));
            if let Some(msg) = &self.error_message {
                map.insert("errorMessage".into(), json!(msg));
            }
        }
        v
    }
}

/// The body of `POST /jobs/ingest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateIngest {
    /// Object API name.
    pub object: Option<String>,
    /// `insert`, `update`, `upsert`, `delete` or `hardDelete`.
    pub operation: Option<String>,
    /// The external id field of an upsert.
    pub external_id_field_name: Option<String>,
    /// Only `CSV`.
    pub content_type: Option<String>,
    /// `COMMA`, `TAB`, `PIPE`, `SEMICOLON`, `CARET`, `BACKQUOTE`.
    pub column_delimiter: Option<String>,
    /// `LF` or `CRLF`.
    pub line_ending: Option<String>,
}

/// The ingest routes under `data` (`/services/data/{version}`).
pub fn routes(data: &str) -> Router<Arc<Sim>> {
    let jobs = format!("{data}/jobs/ingest");
    let job = format!("{jobs}/{{id}}");
    let upload = put(upload).layer(DefaultBodyLimit::max(2 * MAX_UPLOAD_BYTES));
    let mut router = Router::new()
        .route(&jobs, post(create).get(list))
        .route(&format!("{jobs}/"), post(create).get(list))
        .route(&job, get(info).patch(patch).delete(delete));
    for (suffix, handler) in [
        ("successfulResults", get(successful)),
        ("failedResults", get(failed)),
        ("unprocessedrecords", get(unprocessed_records)),
        ("batches", upload),
    ] {
        router = router
            .route(&format!("{job}/{suffix}"), handler.clone())
            .route(&format!("{job}/{suffix}/"), handler);
    }
    router
}

fn invalid_job(message: impl AsRef<str>) -> Response {
    sf_error(StatusCode::BAD_REQUEST, "INVALIDJOB", message.as_ref())
}

fn not_found() -> Response {
    sf_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested resource does not exist",
    )
}

fn delimiter(name: Option<&str>) -> Option<(&'static str, u8)> {
    Some(match name.unwrap_or("COMMA") {
        "COMMA" => ("COMMA", b','),
        "TAB" => ("TAB", b'\t'),
        "PIPE" => ("PIPE", b'|'),
        "SEMICOLON" => ("SEMICOLON", b';'),
        "CARET" => ("CARET", b'^'),
        "BACKQUOTE" => ("BACKQUOTE", b'`'),
        _ => return None,
    })
}

/// Checks a create request; returns the job to open.
fn plan(sim: &Sim, req: &CreateIngest, version: String) -> Result<IngestJob, String> {
    let operation = req
        .operation
        .as_deref()
        .and_then(Operation::parse)
        .ok_or_else(|| String::from("InvalidJob : Invalid operation"))?;
    let name = req.object.as_deref().unwrap_or_default();
    let def = sim
        .org
        .object(name)
        .ok_or_else(|| format!("InvalidJob : Unable to find object: {name}"))?;
    let external_id = match operation {
        Operation::Upsert => Some(external_field(def, req.external_id_field_name.as_deref())?),
        _ => None,
    };
    if req.content_type.as_deref().is_some_and(|c| c != "CSV") {
        return Err(String::from("InvalidJob : Invalid content type"));
    }
    let delimiter = delimiter(req.column_delimiter.as_deref())
        .ok_or_else(|| String::from("InvalidJob : Invalid column delimiter"))?;
    let crlf = match req.line_ending.as_deref().unwrap_or("LF") {
        "LF" => false,
        "CRLF" => true,
        _ => return Err(String::from("InvalidJob : Invalid line ending")),
    };
    let n = sim.ingest.counter.fetch_add(1, Ordering::Relaxed);
    Ok(IngestJob {
        id: record_id("750", &pod_of(sim.org_id.as_str()), n),
        object: def.name,
        operation,
        external_id: external_id.map(|f| f.name),
        api_version: version,
        delimiter,
        crlf,
        state: IngestState::Open,
        created_date: format_datetime(sim.store.clock.now().unix_timestamp()),
        created_by: sim.org.user_id.clone(),
        data: None,
        processing: false,
        polls: 0,
        outcome: Outcome::default(),
        error_message: None,
    })
}

/// The upsert key: `Id` or an external id field of `def`.
fn external_field<'a>(def: &'a ObjectDef, name: Option<&str>) -> Result<&'a FieldDef, String> {
    let name = name.ok_or_else(|| {
        String::from("InvalidJob : External ID field name is required for upsert")
    })?;
    def.field(name)
        .filter(|f| f.name == "Id" || f.external_id)
        .ok_or_else(|| {
            format!(
                "InvalidJob : The field {name} is not an external id field of {}",
                def.name
            )
        })
}

/// `POST /jobs/ingest`.
pub async fn create(
    State(sim): State<Arc<Sim>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let version = match authorize(&sim, &headers, &version) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let req: CreateIngest = match serde_json::from_slice(&body) {
        Ok(req) => req,
        Err(e) => return sf_error(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", &e.to_string()),
    };
    let job = match plan(&sim, &req, version) {
        Ok(job) => job,
        Err(message) => return invalid_job(message),
    };
    let info = job.info(false);
    tracing::debug!(bulk_job_id = %job.id, object = %job.object, "sfsim created an ingest job");
    lock(&sim.ingest.jobs).insert(job.id.clone(), job);
    axum::Json(info).into_response()
}

/// `GET /jobs/ingest`: every job, in one page.
pub async fn list(
    State(sim): State<Arc<Sim>>,
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize(&sim, &headers, &version) {
        return e.into_response();
    }
    let jobs = lock(&sim.ingest.jobs);
    let mut records: Vec<Value> = jobs.values().map(|j| j.info(false)).collect();
    records.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    axum::Json(json!({ "done": true, "records": records, "nextRecordsUrl": null })).into_response()
}

/// `PUT /jobs/ingest/{id}/batches`: the job's one CSV upload.
pub async fn upload(
    State(sim): State<Arc<Sim>>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = authorize(&sim, &headers, &version) {
        return e.into_response();
    }
    let limit = sim.ingest.upload_limit.load(Ordering::Relaxed);
    let mut jobs = lock(&sim.ingest.jobs);
    let Some(job) = jobs.get_mut(&id) else {
        return not_found();
    };
    if job.data.is_some() {
        return invalid_job(format!(
            "Found multipe contents for job: <{id}>, please 'Close' / 'Abort' / 'Delete' the current Job then create a new Job and make sure you only do 'PUT' once on a given Job."
        ));
    }
    if job.state != IngestState::Open {
        return sf_error(
            StatusCode::CONFLICT,
            "INVALIDJOBSTATE",
            &format!(
                "Job {id} is {}; data can be uploaded only to an Open job",
                job.state.as_str()
            ),
        );
    }
    if body.len() > limit {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "CLIENTINPUTERROR",
            &format!(
                "Exceeded max size limit of {limit} bytes for the uploaded data ({} bytes); split it into several jobs",
                body.len()
            ),
        );
    }
    job.data = Some(body);
    StatusCode::CREATED.into_response()
}

/// The body of `PATCH /jobs/ingest/{id}`.
#[derive(Debug, Deserialize)]
pub struct Patch {
    /// `UploadComplete` or `Aborted`.
    pub state: Option<String>,
}

/// `PATCH /jobs/ingest/{id}`: close (`UploadComplete`) or abort (`Aborted`).
pub async fn patch(
    State(sim): State<Arc<Sim>>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = authorize(&sim, &headers, &version) {
        return e.into_response();
    }
    let wanted = serde_json::from_slice::<Patch>(&body)
        .ok()
        .and_then(|p| p.state)
        .unwrap_or_default();
    let mut jobs = lock(&sim.ingest.jobs);
    let Some(job) = jobs.get_mut(&id) else {
        return not_found();
    };
    let next = match (wanted.as_str(), job.state) {
        ("UploadComplete", IngestState::Open) => IngestState::UploadComplete,
        ("Aborted", IngestState::Open | IngestState::UploadComplete) => IngestState::Aborted,
        ("Aborted", IngestState::InProgress) if !job.processing => IngestState::Aborted,
        _ => {
            return sf_error(
                StatusCode::BAD_REQUEST,
                "INVALIDJOBSTATE",
                &format!(
                    "Invalid state transition from {} to {wanted}",
                    job.state.as_str()
                ),
            );
        }
    };
    job.state = next;
    if next == IngestState::Aborted {
        job.outcome = unprocessed(job);
    }
    axum::Json(job.info(false)).into_response()
}

/// `DELETE /jobs/ingest/{id}`: only jobs that are closed or done.
pub async fn delete(
    State(sim): State<Arc<Sim>>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize(&sim, &headers, &version) {
        return e.into_response();
    }
    let mut jobs = lock(&sim.ingest.jobs);
    let Some(job) = jobs.get(&id) else {
        return not_found();
    };
    if !(job.state.is_terminal() || job.state == IngestState::UploadComplete) {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOBSTATE",
            &format!(
                "Job {id} is {}; it cannot be deleted yet",
                job.state.as_str()
            ),
        );
    }
    jobs.remove(&id);
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /jobs/ingest/{id}`: the job's info; each poll moves a closed job on (`InProgress`, then
/// processed).
pub async fn info(
    State(sim): State<Arc<Sim>>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize(&sim, &headers, &version) {
        return e.into_response();
    }
    let work = {
        let mut jobs = lock(&sim.ingest.jobs);
        let Some(job) = jobs.get_mut(&id) else {
            return not_found();
        };
        job.polls += 1;
        match job.state {
            IngestState::UploadComplete => {
                job.state = IngestState::InProgress;
                None
            }
            IngestState::InProgress if !job.processing => {
                job.processing = true;
                Some(Spec::of(job))
            }
            _ => None,
        }
    };
    if let Some(spec) = work {
        let runner = sim.clone();
        let done = tokio::task::spawn_blocking(move || run(&runner, &spec))
            .await
            .unwrap_or_else(|e| Err((format!("InternalServerError : {e}"), Outcome::default())));
        let mut jobs = lock(&sim.ingest.jobs);
        if let Some(job) = jobs.get_mut(&id) {
            finish(job, done);
        }
    }
    let jobs = lock(&sim.ingest.jobs);
    match jobs.get(&id) {
        Some(job) => axum::Json(job.info(true)).into_response(),
        None => not_found(),
    }
}

fn finish(job: &mut IngestJob, done: Result<Outcome, (String, Outcome)>) {
    job.processing = false;
    match done {
        Ok(outcome) => {
            tracing::debug!(bulk_job_id = %job.id, ok = outcome.successes.len(), failed = outcome.failures.len(), "sfsim processed an ingest job");
            job.outcome = outcome;
            job.state = IngestState::JobComplete;
        }
        Err((message, outcome)) => {
            job.outcome = outcome;
            job.error_message = Some(message);
            job.state = IngestState::Failed;
        }
    }
}

/// Everything processing needs, taken out of the job so the lock is not held.
#[derive(Debug)]
struct Spec {
    object: &'static str,
    operation: Operation,
    external_id: Option<&'static str>,
    delimiter: u8,
    crlf: bool,
    data: Bytes,
}

impl Spec {
    fn of(job: &IngestJob) -> Self {
        Spec {
            object: job.object,
            operation: job.operation,
            external_id: job.external_id,
            delimiter: job.delimiter.1,
            crlf: job.crlf,
            data: job.data.clone().unwrap_or_default(),
        }
    }
}

/// Parses the upload into (header, records), every record padded to the header's width.
fn parse(spec: &Spec) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(spec.delimiter)
        .flexible(true)
        .from_reader(spec.data.as_ref());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("InvalidBatch : Failed to parse CSV header: {e}"))?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut records = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("InvalidBatch : Failed to parse CSV: {e}"))?;
        let mut cells: Vec<String> = record.iter().map(str::to_owned).collect();
        cells.resize(header.len(), String::new());
        records.push(cells);
    }
    Ok((header, records))
}

/// Whether the upload's line endings match the job's.
fn line_endings_match(spec: &Spec) -> bool {
    let data = spec.data.as_ref();
    let crlf = data.windows(2).any(|w| w == b"\r\n");
    let bare_lf = data
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'\n' && (i == 0 || data[i - 1] != b'\r'));
    if spec.crlf { !bare_lf || crlf } else { !crlf }
}

/// The records of a job that never ran, all unprocessed.
fn unprocessed(job: &IngestJob) -> Outcome {
    let Some(data) = &job.data else {
        return Outcome::default();
    };
    let spec = Spec {
        data: data.clone(),
        ..Spec::of(job)
    };
    match parse(&spec) {
        Ok((header, records)) => Outcome {
            header,
            unprocessed: records,
            ..Outcome::default()
        },
        Err(_) => Outcome::default(),
    }
}

/// Processes a closed job's upload: every record, one by one, in one write.
fn run(sim: &Sim, spec: &Spec) -> Result<Outcome, (String, Outcome)> {
    let (header, records) = parse(spec).map_err(|e| (e, Outcome::default()))?;
    let all_unprocessed = |message: String| {
        let outcome = Outcome {
            header: header.clone(),
            unprocessed: records.clone(),
            ..Outcome::default()
        };
        (message, outcome)
    };
    if !line_endings_match(spec) {
        let setting = if spec.crlf { "CRLF" } else { "LF" };
        return Err(all_unprocessed(format!(
            "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is {setting}"
        )));
    }
    let def = sim
        .org
        .object(spec.object)
        .ok_or_else(|| all_unprocessed("InvalidJob : object not found".to_owned()))?;
    let fields = columns(def, &header, spec.operation).map_err(all_unprocessed)?;
    let mut outcome = Outcome {
        header: header.clone(),
        ..Outcome::default()
    };
    sim.write(|w| {
        let mut index = match (spec.operation, spec.external_id.and_then(|f| def.field(f))) {
            (Operation::Upsert, Some(field)) => Some((field, w.external_index(def, field))),
            _ => None,
        };
        for cells in records {
            let result = apply(w, def, spec.operation, &mut index, &fields, &cells);
            match result {
                Ok((id, created)) => outcome.successes.push((id, created, cells)),
                Err((id, e)) => outcome.failures.push((id, e.bulk_text(), cells)),
            }
        }
    });
    outcome.successes.reverse();
    outcome.failures.reverse();
    Ok(outcome)
}

/// The field names of the header's columns, or the job's error for a column `def` lacks.
fn columns(
    def: &ObjectDef,
    header: &[String],
    operation: Operation,
) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(header.len());
    for column in header {
        let field = def
            .field(column.trim())
            .ok_or_else(|| format!("InvalidBatch : Field name not found : {column}"))?;
        out.push(field.name.to_owned());
    }
    let deleting = matches!(operation, Operation::Delete | Operation::HardDelete);
    let needs_id = deleting || operation == Operation::Update;
    if needs_id && !out.iter().any(|f| f == "Id") {
        return Err("InvalidBatch : Field name not found : Id".to_owned());
    }
    Ok(out)
}

/// Writes one record; returns (id, created) or (the id if known, the error).
fn apply(
    w: &mut Writer<'_>,
    def: &ObjectDef,
    operation: Operation,
    index: &mut Option<(&FieldDef, crate::dml::ExternalIndex)>,
    fields: &[String],
    cells: &[String],
) -> Result<(String, bool), (String, RecordError)> {
    let id = fields
        .iter()
        .position(|f| f == "Id")
        .and_then(|i| cells.get(i))
        .filter(|v| !v.is_empty())
        .cloned();
    let changes: Vec<(String, Option<String>)> = fields
        .iter()
        .zip(cells)
        .filter(|(_, cell)| !cell.is_empty())
        .map(|(f, cell)| (f.clone(), (cell.as_str() != "#N/A").then(|| cell.clone())))
        .collect();
    let known = id.clone().unwrap_or_default();
    let missing_id = || {
        RecordError::new(
            "MISSING_ARGUMENT",
            format!("Id not specified in an {} call", operation.as_str()),
        )
    };
    let fail = |e| (known.clone(), e);
    match operation {
        Operation::Insert => w.insert(def, &changes).map(|id| (id, true)).map_err(fail),
        Operation::Update => {
            let id = id.ok_or_else(missing_id).map_err(fail)?;
            let rest = without_id(&changes);
            w.update(Some(def), &id, &rest, None)
                .map(|id| (id, false))
                .map_err(fail)
        }
        Operation::Upsert => match index {
            Some((field, index)) => w.upsert(def, field, index, &changes).map_err(fail),
            None => Err(fail(missing_id())),
        },
        Operation::Delete | Operation::HardDelete => {
            let id = id.ok_or_else(missing_id).map_err(fail)?;
            let hard = operation == Operation::HardDelete;
            w.delete(Some(def), &id, hard)
                .map(|id| (id, false))
                .map_err(fail)
        }
    }
}

fn without_id(changes: &Changes) -> Vec<(String, Option<String>)> {
    changes.iter().filter(|(f, _)| f != "Id").cloned().collect()
}

/// Which records a results request asks for.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `successfulResults`.
    Successful,
    /// `failedResults`.
    Failed,
    /// `unprocessedrecords`.
    Unprocessed,
}

/// `GET /jobs/ingest/{id}/successfulResults|failedResults|unprocessedrecords`.
pub async fn results(
    sim: Arc<Sim>,
    version: String,
    id: String,
    headers: HeaderMap,
    kind: Kind,
) -> Response {
    if let Err(e) = authorize(&sim, &headers, &version) {
        return e.into_response();
    }
    let jobs = lock(&sim.ingest.jobs);
    let Some(job) = jobs.get(&id) else {
        return not_found();
    };
    if !job.state.is_terminal() {
        return invalid_job(format!(
            "Job {id} is {}; results are available once it is JobComplete, Failed or Aborted",
            job.state.as_str()
        ));
    }
    match render(job, kind) {
        Ok(body) => ([(header::CONTENT_TYPE, "text/csv")], body).into_response(),
        Err(e) => sf_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN_EXCEPTION",
            &e.to_string(),
        ),
    }
}

/// A results CSV: every cell quoted, in the job's delimiter and line ending.
fn render(job: &IngestJob, kind: Kind) -> Result<Vec<u8>, csv::Error> {
    let terminator = if job.crlf {
        csv::Terminator::CRLF
    } else {
        csv::Terminator::Any(b'\n')
    };
    let mut w = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .delimiter(job.delimiter.1)
        .terminator(terminator)
        .from_writer(Vec::new());
    let o = &job.outcome;
    let lead: &[&str] = match kind {
        Kind::Successful => &["sf__Id", "sf__Created"],
        Kind::Failed => &["sf__Id", "sf__Error"],
        Kind::Unprocessed => &[],
    };
    let header = lead
        .iter()
        .map(|s| (*s).to_owned())
        .chain(o.header.iter().cloned());
    w.write_record(header.collect::<Vec<_>>())?;
    match kind {
        Kind::Successful => {
            for (id, created, cells) in &o.successes {
                let head = [id.clone(), created.to_string()];
                w.write_record(head.iter().chain(cells))?;
            }
        }
        Kind::Failed => {
            for (id, error, cells) in &o.failures {
                let head = [id.clone(), error.clone()];
                w.write_record(head.iter().chain(cells))?;
            }
        }
        Kind::Unprocessed => {
            for cells in &o.unprocessed {
                w.write_record(cells)?;
            }
        }
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// `GET …/successfulResults/`.
pub async fn successful(
    State(sim): State<Arc<Sim>>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    results(sim, version, id, headers, Kind::Successful).await
}

/// `GET …/failedResults/`.
pub async fn failed(
    State(sim): State<Arc<Sim>>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    results(sim, version, id, headers, Kind::Failed).await
}

/// `GET …/unprocessedrecords/`.
pub async fn unprocessed_records(
    State(sim): State<Arc<Sim>>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    results(sim, version, id, headers, Kind::Unprocessed).await
}
