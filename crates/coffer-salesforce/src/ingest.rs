//! Bulk API 2.0 ingest (insert, update, upsert, delete, hardDelete): create a job, upload its CSV
//! with one `PUT` to the job's `contentUrl`, mark it `UploadComplete`, poll it until it ends, then
//! download `successfulResults/`, `failedResults/` and `unprocessedrecords/`.
//!
//! Salesforce takes exactly one upload per job (a second `PUT` is refused with "Found multiple
//! contents for job") and at most 150 MB base64-encoded, about 100 MB raw, per upload. The input
//! is therefore cut into several jobs by [`IngestBatcher`], each under
//! [`IngestSpec::max_upload_bytes`] (default [`DEFAULT_MAX_UPLOAD_BYTES`]), never splitting a
//! row; [`SalesforceClient::ingest`] runs them one after the other.
//!
//! Cells are [`IngestValue`]s so that "set to null" (`#N/A` in Bulk CSV) and "leave unchanged"
//! (an empty cell) cannot be confused. Result rows come back in no particular order: each carries
//! the values Salesforce echoed for the columns that are real fields of the object (helper
//! columns are not echoed), and [`IngestJobResult::by_column`] correlates them by such a column,
//! typically an external id holding the source record's id. Rows that fail are data
//! ([`IngestFailure`]); a job that ends `Failed` or `Aborted` is a
//! [`SalesforceError::IngestJobFailed`].
//!
//! Retries: creating a job is not idempotent, so the create is sent again only when the
//! connection could not be established; after a 5xx or a cut connection the error is returned
//! (retryable) and the caller's next attempt creates a fresh job. A job the lost request may have
//! created stays `Open` without data and is never processed, so no row is written twice. The
//! upload is never resent (one upload per job); any failure before processing starts aborts the
//! job, best effort, so no `Open` job is left behind. Polls and result downloads are idempotent
//! and retried with backoff. Once `UploadComplete` is accepted the job is never aborted: it is
//! writing rows, and aborting would leave a partial load that is harder to reason about.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::describe::decode_json;
use crate::{SalesforceClient, SalesforceError};

/// Default [`IngestSpec::max_upload_bytes`]: 90 MB, a margin under the ~100 MB of raw CSV that
/// fits in Salesforce's 150 MB base64 limit.
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 90_000_000;

/// What a Bulk API 2.0 ingest job does with each row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOperation {
    /// Create records (no `Id` column).
    Insert,
    /// Update records by `Id`.
    Update,
    /// Create or update by the named external id field (`externalIdFieldName`), which must be a
    /// column of the CSV.
    Upsert {
        /// The external id field's API name.
        external_id_field: String,
    },
    /// Move records to the Recycle Bin (CSV of `Id`).
    Delete,
    /// Delete records without the Recycle Bin (needs the "Bulk API Hard Delete" permission).
    HardDelete,
}

impl IngestOperation {
    /// The API's name for the operation.
    pub fn as_str(&self) -> &'static str {
        match self {
            IngestOperation::Insert => "insert",
            IngestOperation::Update => "update",
            IngestOperation::Upsert { .. } => "upsert",
            IngestOperation::Delete => "delete",
            IngestOperation::HardDelete => "hardDelete",
        }
    }

    fn external_id_field(&self) -> Option<&str> {
        match self {
            IngestOperation::Upsert { external_id_field } => Some(external_id_field),
            _ => None,
        }
    }
}

/// One CSV cell of an ingest job.
///
/// Bulk API 2.0 reads an empty cell as "leave the field as it is" and `#N/A` as "set it to
/// null"; this type keeps the two apart. Salesforce stores an empty text value as null, so
/// `Value("")` is sent as `#N/A` too. A literal text value `#N/A` cannot be written through Bulk
/// CSV (Salesforce would null the field): use sObject Collections for such a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestValue {
    /// Set the field to this value.
    Value(String),
    /// Set the field to null (rendered `#N/A`).
    Null,
    /// Leave the field unchanged (rendered as an empty cell); on insert the field keeps its
    /// default.
    Unchanged,
}

impl IngestValue {
    /// The cell as Bulk CSV spells it.
    pub fn render(&self) -> &str {
        match self {
            IngestValue::Value(v) if !v.is_empty() => v,
            IngestValue::Value(_) | IngestValue::Null => "#N/A",
            IngestValue::Unchanged => "",
        }
    }
}

impl From<&str> for IngestValue {
    fn from(v: &str) -> Self {
        IngestValue::Value(v.to_owned())
    }
}

impl From<String> for IngestValue {
    fn from(v: String) -> Self {
        IngestValue::Value(v)
    }
}

/// The object, operation and upload size limit of an ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestSpec {
    /// The sObject's API name.
    pub object: String,
    /// What to do with each row.
    pub operation: IngestOperation,
    /// Largest CSV (header included) one job uploads; bigger inputs are split into several jobs.
    pub max_upload_bytes: usize,
}

impl IngestSpec {
    /// `operation` on `object` with the default upload limit.
    pub fn new(object: impl Into<String>, operation: IngestOperation) -> Self {
        IngestSpec {
            object: object.into(),
            operation,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
        }
    }

    /// The same spec with another upload limit.
    pub fn with_max_upload_bytes(mut self, bytes: usize) -> Self {
        self.max_upload_bytes = bytes;
        self
    }
}

/// The CSV of one ingest job: the header row and whole data rows, CRLF line endings (see
/// [`encode_record`]).
#[derive(Debug, Clone)]
pub struct IngestUpload {
    csv: Bytes,
    rows: usize,
    first_row: usize,
}

impl IngestUpload {
    /// The CSV bytes as uploaded.
    pub fn csv(&self) -> &[u8] {
        &self.csv
    }

    /// Data rows in this upload.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// 0-based number, in the caller's input, of this upload's first row.
    pub fn first_row(&self) -> usize {
        self.first_row
    }
}

/// Encodes rows as Bulk CSV and cuts them into uploads under a byte limit, never splitting a row.
#[derive(Debug)]
pub struct IngestBatcher {
    header: Vec<u8>,
    columns: usize,
    max_bytes: usize,
    buf: Vec<u8>,
    rows: usize,
    next_row: usize,
}

const OP_ENCODE: &str = "encode bulk ingest csv";

impl IngestBatcher {
    /// A batcher for rows of `columns` (field API names, or `Relationship.ExternalIdField`).
    pub fn new<S: AsRef<str>>(columns: &[S], max_bytes: usize) -> Result<Self, SalesforceError> {
        if columns.is_empty() || columns.iter().any(|c| c.as_ref().trim().is_empty()) {
            return Err(invalid(OP_ENCODE, "every column needs a field name"));
        }
        let header = encode_record(columns.iter().map(AsRef::as_ref))?;
        Ok(IngestBatcher {
            header,
            columns: columns.len(),
            max_bytes,
            buf: Vec::new(),
            rows: 0,
            next_row: 0,
        })
    }

    /// Adds a row; returns the upload it completes when the row does not fit next to the rows
    /// already held (the row then starts the next upload).
    pub fn push(&mut self, row: &[IngestValue]) -> Result<Option<IngestUpload>, SalesforceError> {
        let row_no = self.next_row;
        if row.len() != self.columns {
            return Err(invalid(
                OP_ENCODE,
                &format!(
                    "row {row_no} has {} cells for {} columns",
                    row.len(),
                    self.columns
                ),
            ));
        }
        let line = encode_record(row.iter().map(IngestValue::render))?;
        let alone = self.header.len() + line.len();
        if alone > self.max_bytes {
            return Err(SalesforceError::IngestRowTooLarge {
                row: row_no,
                bytes: alone,
                limit: self.max_bytes,
            });
        }
        let full = self.rows > 0 && alone + self.buf.len() > self.max_bytes;
        let done = if full { self.take() } else { None };
        self.buf.extend_from_slice(&line);
        self.rows += 1;
        self.next_row += 1;
        Ok(done)
    }

    /// The last, partly filled upload, if any row is held.
    pub fn finish(mut self) -> Option<IngestUpload> {
        self.take()
    }

    fn take(&mut self) -> Option<IngestUpload> {
        if self.rows == 0 {
            return None;
        }
        let mut csv = Vec::with_capacity(self.header.len() + self.buf.len());
        csv.extend_from_slice(&self.header);
        csv.append(&mut self.buf);
        let upload = IngestUpload {
            csv: Bytes::from(csv),
            rows: self.rows,
            first_row: self.next_row - self.rows,
        };
        self.rows = 0;
        Some(upload)
    }
}

/// One CSV record with CRLF ending, quoted only where needed (so `#N/A` and empty cells stay
/// bare). CRLF because text fields hold CRLF line breaks (Salesforce stores text areas so),
/// and a job declared `LF` whose data holds any CRLF fails whole with "LineEnding is invalid
/// on user data"; under `CRLF`, a bare LF inside a quoted value is still just data.
fn encode_record<'a>(cells: impl Iterator<Item = &'a str>) -> Result<Vec<u8>, SalesforceError> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::new());
    writer
        .write_record(cells)
        .map_err(|e| invalid(OP_ENCODE, &e.to_string()))?;
    writer
        .into_inner()
        .map_err(|e| invalid(OP_ENCODE, &e.to_string()))
}

fn invalid(operation: &str, detail: &str) -> SalesforceError {
    SalesforceError::InvalidWriteRequest {
        operation: operation.to_owned(),
        detail: detail.to_owned(),
    }
}

/// A row of a results file: the values Salesforce echoed for the uploaded columns that are real
/// fields of the object (other columns are not echoed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestRow {
    columns: Arc<[String]>,
    values: Vec<String>,
}

impl IngestRow {
    /// The echoed value of `column` (case-insensitive, as field names are), if it was echoed.
    pub fn get(&self, column: &str) -> Option<&str> {
        let i = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column))?;
        self.values.get(i).map(String::as_str)
    }

    /// The echoed columns, in the results file's order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The values, aligned with [`IngestRow::columns`].
    pub fn values(&self) -> &[String] {
        &self.values
    }
}

/// A row Salesforce wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestSuccess {
    /// `sf__Id`: the record's id.
    pub id: String,
    /// `sf__Created`: whether the row created the record (false for updates and deletes).
    pub created: bool,
    /// The echoed columns.
    pub row: IngestRow,
}

/// A row Salesforce processed but refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestFailure {
    /// `sf__Id` (API 53.0+), when the row named an existing record.
    pub id: Option<String>,
    /// The status code at the start of `sf__Error` (`REQUIRED_FIELD_MISSING`), or empty.
    pub code: String,
    /// The rest of `sf__Error`.
    pub message: String,
    /// The echoed columns.
    pub row: IngestRow,
}

impl IngestFailure {
    /// Splits `sf__Error` (`CODE:message`) into code and message.
    fn parse_error(raw: &str) -> (String, String) {
        let is_code =
            |c: &str| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_');
        match raw.split_once(':') {
            Some((code, message)) if is_code(code) => (code.to_owned(), message.to_owned()),
            None if is_code(raw) => (raw.to_owned(), String::new()),
            _ => (String::new(), raw.to_owned()),
        }
    }
}

/// What happened to one row, found by [`IngestJobResult::by_column`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome<'a> {
    /// Written.
    Succeeded(&'a IngestSuccess),
    /// Processed and refused.
    Failed(&'a IngestFailure),
    /// Never processed (the job failed or was aborted first).
    Unprocessed(&'a IngestRow),
}

/// The results of one finished ingest job. The rows of each list are in no particular order.
#[derive(Debug, Clone)]
pub struct IngestJobResult {
    /// The job's id.
    pub job_id: String,
    /// The API version the job was created with (its results are fetched with it).
    pub api_version: String,
    /// Rows this client uploaded to the job (`None` when only the results were fetched).
    pub rows_uploaded: Option<usize>,
    /// `numberRecordsProcessed`.
    pub records_processed: Option<u64>,
    /// `numberRecordsFailed`.
    pub records_failed: Option<u64>,
    /// `successfulResults/`.
    pub successful: Vec<IngestSuccess>,
    /// `failedResults/`.
    pub failed: Vec<IngestFailure>,
    /// `unprocessedrecords/`.
    pub unprocessed: Vec<IngestRow>,
}

impl IngestJobResult {
    /// Uploaded rows that appear in none of the three results files (Salesforce does not record
    /// results of batches beyond the daily batch allocation); `None` if the upload is unknown.
    pub fn unaccounted_rows(&self) -> Option<usize> {
        let seen = self.successful.len() + self.failed.len() + self.unprocessed.len();
        self.rows_uploaded.map(|n| n.saturating_sub(seen))
    }

    /// Every result row keyed by the value it echoed in `column`. The column must be a real
    /// field of the object (only those are echoed) whose values are unique across the upload,
    /// such as an external id holding the source record's id; otherwise
    /// [`SalesforceError::NotCorrelatable`].
    pub fn by_column(
        &self,
        column: &str,
    ) -> Result<HashMap<String, IngestOutcome<'_>>, SalesforceError> {
        let mut out = HashMap::new();
        let rows = self
            .successful
            .iter()
            .map(|s| (&s.row, IngestOutcome::Succeeded(s)))
            .chain(
                self.failed
                    .iter()
                    .map(|f| (&f.row, IngestOutcome::Failed(f))),
            )
            .chain(
                self.unprocessed
                    .iter()
                    .map(|r| (r, IngestOutcome::Unprocessed(r))),
            );
        for (row, outcome) in rows {
            let key = self.key(row, column)?;
            if out.insert(key.to_owned(), outcome).is_some() {
                return Err(self.not_correlatable(
                    column,
                    &format!("value {key:?} appears in more than one result row"),
                ));
            }
        }
        Ok(out)
    }

    fn key<'r>(&self, row: &'r IngestRow, column: &str) -> Result<&'r str, SalesforceError> {
        match row.get(column) {
            None => Err(self.not_correlatable(
                column,
                &format!("the results echo only {}", row.columns().join(", ")),
            )),
            Some("") => Err(self.not_correlatable(column, "a result row has no value in it")),
            Some(v) => Ok(v),
        }
    }

    fn not_correlatable(&self, column: &str, detail: &str) -> SalesforceError {
        SalesforceError::NotCorrelatable {
            job_id: self.job_id.clone(),
            column: column.to_owned(),
            detail: detail.to_owned(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateIngestJob<'a> {
    object: &'a str,
    operation: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id_field_name: Option<&'a str>,
    content_type: &'static str,
    column_delimiter: &'static str,
    line_ending: &'static str,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IngestJobInfo {
    id: String,
    state: String,
    #[serde(default)]
    content_url: Option<String>,
    #[serde(default)]
    api_version: Option<serde_json::Value>,
    #[serde(default)]
    error_message: Option<String>,
    #[serde(default)]
    number_records_processed: Option<u64>,
    #[serde(default)]
    number_records_failed: Option<u64>,
}

impl IngestJobInfo {
    /// `apiVersion` as `66.0` (a JSON number in the documentation, a string in places).
    fn api_version(&self) -> Option<String> {
        match self.api_version.as_ref()? {
            serde_json::Value::Number(n) => n.as_f64().map(|v| format!("{v:.1}")),
            serde_json::Value::String(s) => Some(s.trim_start_matches('v').to_owned()),
            _ => None,
        }
    }
}

/// The three results files of a job.
#[derive(Debug, Clone, Copy)]
enum ResultsKind {
    Successful,
    Failed,
    Unprocessed,
}

impl ResultsKind {
    fn path(self) -> &'static str {
        match self {
            ResultsKind::Successful => "successfulResults/",
            ResultsKind::Failed => "failedResults/",
            ResultsKind::Unprocessed => "unprocessedrecords/",
        }
    }
}

/// A parsed results file: its `sf__` columns by name and the rest as echoed columns.
struct ResultsTable {
    sf: HashMap<String, usize>,
    data: Vec<usize>,
    columns: Arc<[String]>,
    records: Vec<csv::StringRecord>,
}

impl ResultsTable {
    fn parse(operation: &str, body: &[u8]) -> Result<ResultsTable, SalesforceError> {
        let bad = |e: csv::Error| SalesforceError::UnexpectedResponse {
            operation: operation.to_owned(),
            detail: format!("invalid csv: {e}"),
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(body);
        let headers = reader.headers().map_err(bad)?.clone();
        let mut sf = HashMap::new();
        let mut data = Vec::new();
        for (i, h) in headers.iter().enumerate() {
            match h.strip_prefix("sf__") {
                Some(name) => {
                    sf.insert(name.to_ascii_lowercase(), i);
                }
                None => data.push(i),
            }
        }
        let columns: Arc<[String]> = data.iter().map(|&i| headers[i].to_owned()).collect();
        let records = reader
            .records()
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        Ok(ResultsTable {
            sf,
            data,
            columns,
            records,
        })
    }

    fn sf_value<'r>(&self, record: &'r csv::StringRecord, name: &str) -> Option<&'r str> {
        self.sf.get(name).and_then(|&i| record.get(i))
    }

    fn row(&self, record: &csv::StringRecord) -> IngestRow {
        IngestRow {
            columns: self.columns.clone(),
            values: self
                .data
                .iter()
                .map(|&i| record.get(i).unwrap_or_default().to_owned())
                .collect(),
        }
    }

    fn successes(&self, operation: &str) -> Result<Vec<IngestSuccess>, SalesforceError> {
        self.records
            .iter()
            .map(|r| {
                let id = self
                    .sf_value(r, "id")
                    .ok_or_else(|| missing_column(operation, "sf__Id"))?;
                Ok(IngestSuccess {
                    id: id.to_owned(),
                    created: self
                        .sf_value(r, "created")
                        .is_some_and(|v| v.eq_ignore_ascii_case("true")),
                    row: self.row(r),
                })
            })
            .collect()
    }

    fn failures(&self, operation: &str) -> Result<Vec<IngestFailure>, SalesforceError> {
        self.records
            .iter()
            .map(|r| {
                let raw = self
                    .sf_value(r, "error")
                    .ok_or_else(|| missing_column(operation, "sf__Error"))?;
                let (code, message) = IngestFailure::parse_error(raw);
                Ok(IngestFailure {
                    id: self
                        .sf_value(r, "id")
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned),
                    code,
                    message,
                    row: self.row(r),
                })
            })
            .collect()
    }

    fn rows(&self) -> Vec<IngestRow> {
        self.records.iter().map(|r| self.row(r)).collect()
    }
}

fn missing_column(operation: &str, column: &str) -> SalesforceError {
    SalesforceError::UnexpectedResponse {
        operation: operation.to_owned(),
        detail: format!("the results have no {column} column"),
    }
}

/// Jobs that have stopped moving.
fn is_terminal(state: &str) -> bool {
    matches!(state, "JobComplete" | "Failed" | "Aborted")
}

impl SalesforceClient {
    /// Loads `rows` (cells aligned with `columns`) with `spec`, as many jobs as the upload limit
    /// requires, one after the other, and returns each job's results in order.
    ///
    /// Rows are encoded while earlier jobs run, so at most one upload is held in memory. The
    /// first error stops the load: jobs finished before it have written their rows (their ids
    /// are in the logs as `bulk_job_id`). A caller that must record each job's results before
    /// the next starts drives [`IngestBatcher`] and [`SalesforceClient::run_ingest_job`] itself.
    pub async fn ingest<S, I>(
        &self,
        spec: &IngestSpec,
        columns: &[S],
        rows: I,
    ) -> Result<Vec<IngestJobResult>, SalesforceError>
    where
        S: AsRef<str>,
        I: IntoIterator<Item = Vec<IngestValue>>,
    {
        let mut batcher = IngestBatcher::new(columns, spec.max_upload_bytes)?;
        let mut results = Vec::new();
        for row in rows {
            if let Some(upload) = batcher.push(&row)? {
                results.push(self.run_ingest_job(spec, &upload).await?);
            }
        }
        if let Some(upload) = batcher.finish() {
            results.push(self.run_ingest_job(spec, &upload).await?);
        }
        Ok(results)
    }

    /// Runs one ingest job over `upload`: create, one `PUT` of the CSV, `UploadComplete`, poll
    /// until it ends, download the three results files.
    pub async fn run_ingest_job(
        &self,
        spec: &IngestSpec,
        upload: &IngestUpload,
    ) -> Result<IngestJobResult, SalesforceError> {
        let job = self.create_ingest_job(spec).await?;
        tracing::info!(
            bulk_job_id = %job.id,
            object = %spec.object,
            operation = spec.operation.as_str(),
            rows = upload.rows(),
            bytes = upload.csv().len(),
            "created bulk ingest job"
        );
        if let Err(e) = self.upload_and_close(&job, upload).await {
            self.abort_ingest_job(&job.id).await;
            return Err(e);
        }
        let done = self.wait_for_ingest_job(&job.id).await?;
        if done.state != "JobComplete" {
            return Err(ingest_failed(done));
        }
        let mut result = self.ingest_results_of(done).await?;
        result.rows_uploaded = Some(upload.rows());
        log_completion(&result);
        Ok(result)
    }

    /// Downloads the results of ingest job `job_id`, whatever state it ended in: after a
    /// [`SalesforceError::IngestJobFailed`], to learn which rows were written.
    pub async fn ingest_job_results(
        &self,
        job_id: &str,
    ) -> Result<IngestJobResult, SalesforceError> {
        let info = self.ingest_job_info(job_id).await?;
        self.ingest_results_of(info).await
    }

    async fn create_ingest_job(&self, spec: &IngestSpec) -> Result<IngestJobInfo, SalesforceError> {
        let url = self.data_url(self.api_version(), "jobs/ingest");
        let body = CreateIngestJob {
            object: &spec.object,
            operation: spec.operation.as_str(),
            external_id_field_name: spec.operation.external_id_field(),
            content_type: "CSV",
            column_delimiter: "COMMA",
            line_ending: "CRLF",
        };
        let op = format!("create bulk ingest job for {}", spec.object);
        self.with_unsent_retries(&op, || async {
            let resp = self.send(&op, |http| http.post(&url).json(&body)).await?;
            decode_json(&op, resp).await
        })
        .await
    }

    /// The one upload of the job, then `UploadComplete`.
    async fn upload_and_close(
        &self,
        job: &IngestJobInfo,
        upload: &IngestUpload,
    ) -> Result<(), SalesforceError> {
        let op = format!("upload data of bulk ingest job {}", job.id);
        let content_url =
            job.content_url
                .as_deref()
                .ok_or_else(|| SalesforceError::UnexpectedResponse {
                    operation: op.clone(),
                    detail: "the created job has no contentUrl".into(),
                })?;
        let url = self.content_url(content_url);
        let resp = self
            .send(&op, |http| {
                http.put(&url)
                    .header(reqwest::header::CONTENT_TYPE, "text/csv")
                    .header(reqwest::header::ACCEPT, "application/json")
                    .body(upload.csv.clone())
            })
            .await?;
        if resp.status() != reqwest::StatusCode::CREATED {
            tracing::warn!(bulk_job_id = %job.id, status = resp.status().as_u16(), "ingest upload answered without the documented 201");
        }
        self.close_ingest_job(&job.id).await
    }

    /// `contentUrl` is relative to the instance (`services/data/vXX.X/jobs/ingest/ID/batches`).
    fn content_url(&self, content_url: &str) -> String {
        if content_url.starts_with("http://") || content_url.starts_with("https://") {
            return content_url.to_owned();
        }
        format!(
            "{}/{}",
            self.instance_url().trim_end_matches('/'),
            content_url.trim_start_matches('/')
        )
    }

    /// Sets `UploadComplete`. If the answer is lost (5xx, cut connection) the PATCH may still
    /// have been applied: the job's state decides whether to send it again.
    async fn close_ingest_job(&self, job_id: &str) -> Result<(), SalesforceError> {
        match self.set_ingest_state(job_id, "UploadComplete").await {
            Err(e) if e.is_transient() => {
                let info = self.ingest_job_info(job_id).await?;
                tracing::warn!(bulk_job_id = %job_id, state = %info.state, error = %e, "closing bulk ingest job failed; checked its state");
                if info.state == "Open" {
                    self.set_ingest_state(job_id, "UploadComplete").await
                } else {
                    Ok(())
                }
            }
            other => other,
        }
    }

    /// Aborts a job that will not be processed, best effort: a failure is only logged.
    async fn abort_ingest_job(&self, job_id: &str) {
        match self.set_ingest_state(job_id, "Aborted").await {
            Ok(()) => tracing::info!(bulk_job_id = %job_id, "aborted bulk ingest job"),
            Err(e) => {
                tracing::warn!(bulk_job_id = %job_id, error = %e, "could not abort bulk ingest job")
            }
        }
    }

    async fn set_ingest_state(&self, job_id: &str, state: &str) -> Result<(), SalesforceError> {
        let url = self.data_url(self.api_version(), &format!("jobs/ingest/{job_id}"));
        let op = format!("set bulk ingest job {job_id} to {state}");
        let body = serde_json::json!({ "state": state });
        let resp = self
            .send(&op, |http| {
                http.patch(&url)
                    .header(reqwest::header::ACCEPT, "application/json")
                    .json(&body)
            })
            .await?;
        // The body repeats the job info; nothing in it is needed.
        resp.bytes()
            .await
            .map_err(|source| SalesforceError::Transport {
                operation: op.clone(),
                source,
            })?;
        Ok(())
    }

    async fn ingest_job_info(&self, job_id: &str) -> Result<IngestJobInfo, SalesforceError> {
        let url = self.data_url(self.api_version(), &format!("jobs/ingest/{job_id}"));
        self.get_json(&format!("poll bulk ingest job {job_id}"), &url)
            .await
    }

    /// Polls with a doubling delay until the job ends or the wait runs out.
    async fn wait_for_ingest_job(&self, job_id: &str) -> Result<IngestJobInfo, SalesforceError> {
        let started = Instant::now();
        let mut delay = self.options().poll_initial;
        loop {
            tokio::time::sleep(delay).await;
            let info = self.ingest_job_info(job_id).await?;
            tracing::debug!(bulk_job_id = %job_id, state = %info.state, "polled bulk ingest job");
            if is_terminal(&info.state) {
                return Ok(info);
            }
            if started.elapsed() >= self.options().poll_timeout {
                return Err(SalesforceError::JobTimeout {
                    job_id: job_id.to_owned(),
                    state: info.state,
                    waited_secs: started.elapsed().as_secs(),
                });
            }
            delay = (delay * 2).min(self.options().poll_max);
        }
    }

    /// Downloads the three results files of a job with the job's own API version.
    async fn ingest_results_of(
        &self,
        info: IngestJobInfo,
    ) -> Result<IngestJobResult, SalesforceError> {
        let version = info
            .api_version()
            .unwrap_or_else(|| self.api_version().to_owned());
        let job_id = info.id;
        let op =
            |kind: ResultsKind| format!("download {} of bulk ingest job {job_id}", kind.path());
        let successful = self
            .ingest_results(&job_id, &version, ResultsKind::Successful)
            .await?
            .successes(&op(ResultsKind::Successful))?;
        let failed = self
            .ingest_results(&job_id, &version, ResultsKind::Failed)
            .await?
            .failures(&op(ResultsKind::Failed))?;
        let unprocessed = self
            .ingest_results(&job_id, &version, ResultsKind::Unprocessed)
            .await?
            .rows();
        Ok(IngestJobResult {
            job_id,
            api_version: version,
            rows_uploaded: None,
            records_processed: info.number_records_processed,
            records_failed: info.number_records_failed,
            successful,
            failed,
            unprocessed,
        })
    }

    async fn ingest_results(
        &self,
        job_id: &str,
        version: &str,
        kind: ResultsKind,
    ) -> Result<ResultsTable, SalesforceError> {
        let url = self.data_url(version, &format!("jobs/ingest/{job_id}/{}", kind.path()));
        let op = format!("download {} of bulk ingest job {job_id}", kind.path());
        let body = self
            .with_retries(&op, || async {
                let resp = self
                    .send(&op, |http| {
                        http.get(&url).header(reqwest::header::ACCEPT, "text/csv")
                    })
                    .await?;
                resp.bytes()
                    .await
                    .map_err(|source| SalesforceError::Transport {
                        operation: op.clone(),
                        source,
                    })
            })
            .await?;
        ResultsTable::parse(&op, &body)
    }
}

/// The error for a job that ended `Failed` or `Aborted`.
fn ingest_failed(info: IngestJobInfo) -> SalesforceError {
    tracing::warn!(bulk_job_id = %info.id, state = %info.state, "bulk ingest job did not complete");
    SalesforceError::IngestJobFailed {
        job_id: info.id,
        state: info.state,
        message: info.error_message.unwrap_or_default(),
    }
}

fn log_completion(result: &IngestJobResult) {
    tracing::info!(
        bulk_job_id = %result.job_id,
        succeeded = result.successful.len(),
        failed = result.failed.len(),
        unprocessed = result.unprocessed.len(),
        "bulk ingest job complete"
    );
    if let Some(missing) = result.unaccounted_rows().filter(|n| *n > 0) {
        tracing::warn!(bulk_job_id = %result.job_id, missing, "bulk ingest results do not account for every uploaded row");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use coffer_core::{Classify, ErrorClass};

    use super::*;

    fn v(s: &str) -> IngestValue {
        IngestValue::from(s)
    }

    #[test]
    fn null_and_unchanged_render_differently() {
        let mut b = IngestBatcher::new(&["Id", "Phone", "Fax", "Name"], 1000).unwrap();
        assert!(
            b.push(&[
                v("001"),
                IngestValue::Null,
                IngestValue::Unchanged,
                v("a, \"b\"")
            ])
            .unwrap()
            .is_none()
        );
        let upload = b.finish().unwrap();
        assert_eq!(
            std::str::from_utf8(upload.csv()).unwrap(),
            "Id,Phone,Fax,Name\r\n001,#N/A,,\"a, \"\"b\"\"\"\r\n"
        );
        assert_eq!(IngestValue::Value(String::new()).render(), "#N/A");
    }

    #[test]
    fn uploads_stay_under_the_limit_and_keep_rows_whole() {
        let mut b = IngestBatcher::new(&["Name"], 24).unwrap();
        let mut uploads = Vec::new();
        for name in ["aaaa", "bbbb", "cccc", "dddd"] {
            uploads.extend(b.push(&[v(name)]).unwrap());
        }
        uploads.extend(b.finish());
        // "Name\r\n" is 6 bytes, each row 6: three rows fit in 24.
        assert_eq!(uploads.len(), 2);
        assert_eq!(uploads[0].csv(), b"Name\r\naaaa\r\nbbbb\r\ncccc\r\n");
        assert_eq!((uploads[1].first_row(), uploads[1].rows()), (3, 1));
        assert!(uploads.iter().all(|u| u.csv().len() <= 24));
    }

    #[test]
    fn a_row_too_large_alone_and_a_ragged_row_are_refused() {
        let mut b = IngestBatcher::new(&["Name"], 10).unwrap();
        let err = b.push(&[v("far too long for ten bytes")]).unwrap_err();
        assert!(matches!(
            err,
            SalesforceError::IngestRowTooLarge { row: 0, .. }
        ));
        assert_eq!(err.class(), ErrorClass::Permanent);
        let err = b.push(&[v("a"), v("b")]).unwrap_err();
        assert!(err.to_string().contains("2 cells for 1 columns"), "{err}");
    }

    #[test]
    fn sf_error_splits_into_code_and_message() {
        assert_eq!(
            IngestFailure::parse_error(
                "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"
            ),
            (
                "REQUIRED_FIELD_MISSING".to_owned(),
                "Required fields are missing: [Name]:Name --".to_owned()
            )
        );
        assert_eq!(
            IngestFailure::parse_error("UNABLE_TO_LOCK_ROW"),
            ("UNABLE_TO_LOCK_ROW".to_owned(), String::new())
        );
        assert_eq!(
            IngestFailure::parse_error("something odd: here"),
            (String::new(), "something odd: here".to_owned())
        );
    }

    #[test]
    fn correlation_refuses_duplicate_and_missing_keys() {
        let columns: Arc<[String]> = vec!["Ext__c".to_owned()].into();
        let row = |v: &str| IngestRow {
            columns: columns.clone(),
            values: vec![v.to_owned()],
        };
        let success = |id: &str, v: &str| IngestSuccess {
            id: id.into(),
            created: true,
            row: row(v),
        };
        let mut result = IngestJobResult {
            job_id: "750x".into(),
            api_version: "62.0".into(),
            rows_uploaded: Some(3),
            records_processed: None,
            records_failed: None,
            successful: vec![success("001A", "a"), success("001B", "b")],
            failed: vec![],
            unprocessed: vec![row("c")],
        };
        let map = result.by_column("ext__c").unwrap();
        assert!(matches!(map["c"], IngestOutcome::Unprocessed(_)));
        assert_eq!(result.unaccounted_rows(), Some(0));
        result.unprocessed.push(row("a"));
        let err = result.by_column("Ext__c").unwrap_err();
        assert!(
            err.to_string().contains("more than one result row"),
            "{err}"
        );
        result.unprocessed = vec![row("")];
        let err = result.by_column("Ext__c").unwrap_err();
        assert!(err.to_string().contains("no value"), "{err}");
    }

    #[test]
    fn failed_job_is_classified_by_its_message() {
        let failed = |m: &str| SalesforceError::IngestJobFailed {
            job_id: "750x".into(),
            state: "Failed".into(),
            message: m.into(),
        };
        assert_eq!(
            failed("InvalidBatch : Field name not found : Foo__c").class(),
            ErrorClass::Permanent
        );
        assert_eq!(failed("TooManyLockFailure").class(), ErrorClass::Retryable);
        assert!(failed("x").to_string().contains("ingest_job_results"));
    }
}
