//! Bulk API 2.0 query jobs: validation at creation, a state machine advanced by polling, and
//! paged CSV results addressed by opaque locators.
//!
//! A job's result set is a recipe, not a table: a page is rendered by generating its rows. It reads
//! a [`View`] of the object at the overlay snapshot taken when the job was created (generated rows
//! with writes applied, then inserted rows), so writes made while the job is paged do not shift
//! its rows. An unfiltered query maps result row `n` to view row `n`; a filtered one is scanned
//! once at creation to count its matches, keeping the view position of every 4,096th match so a
//! page can start generating near its first row.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::data::{Org, Row};
use crate::schema::{FieldDef, ObjectDef};
use crate::soql::{self, Filter, QueryError};
use crate::store::{Overlay, View};

/// The body of `POST /jobs/query`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateJob {
    /// `query` or `queryAll`.
    pub operation: Option<String>,
    /// The SOQL.
    pub query: Option<String>,
    /// Only `CSV`.
    pub content_type: Option<String>,
    /// `COMMA`, `TAB`, `PIPE`, `SEMICOLON`, `CARET`, `BACKQUOTE`.
    pub column_delimiter: Option<String>,
    /// `LF` or `CRLF`.
    pub line_ending: Option<String>,
}

/// Lifecycle states of a query job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Created, not yet picked up.
    UploadComplete,
    /// Running.
    InProgress,
    /// Results available.
    JobComplete,
    /// Failed; see the error message.
    Failed,
    /// Aborted by a client.
    Aborted,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::UploadComplete => "UploadComplete",
            JobState::InProgress => "InProgress",
            JobState::JobComplete => "JobComplete",
            JobState::Failed => "Failed",
            JobState::Aborted => "Aborted",
        }
    }
}

/// One query job and its (already computed) result set. Cheap to clone: the result set is
/// shared.
#[derive(Debug, Clone)]
pub struct Job {
    /// 18-character job id (`750...`).
    pub id: String,
    /// `query` or `queryAll`.
    pub operation: String,
    /// The object queried.
    pub object: String,
    /// The API version the job was created with (`62.0`).
    pub api_version: String,
    /// Current state.
    pub state: JobState,
    /// When the job was created.
    pub created_date: String,
    /// Creator id.
    pub created_by: String,
    /// Column delimiter name and byte.
    pub delimiter: (&'static str, u8),
    /// Whether lines end in CRLF.
    pub crlf: bool,
    /// Header row.
    pub columns: Vec<String>,
    /// The result set, rendered page by page.
    pub rows: Arc<ResultSet>,
    /// Polls seen so far.
    pub polls: u32,
    /// If set, the job fails with this message instead of completing.
    pub fail_with: Option<String>,
}

impl Job {
    /// Advances the state one step, as a poll observes the job progressing.
    pub fn advance(&mut self) {
        self.polls += 1;
        self.state = match (self.state, &self.fail_with) {
            (JobState::UploadComplete, _) => JobState::InProgress,
            (JobState::InProgress, Some(_)) => JobState::Failed,
            (JobState::InProgress, None) => JobState::JobComplete,
            (other, _) => other,
        };
    }

    /// The job-info JSON.
    pub fn info(&self, with_progress: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.created_by,
            "createdDate": self.created_date,
            "systemModstamp": self.created_date,
            "state": self.state.as_str(),
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": self.api_version.parse::<f64>().unwrap_or(0.0),
            "lineEnding": if self.crlf { "CRLF" } else { "LF" },
            "columnDelimiter": self.delimiter.0,
        });
        if let (true, Value::Object(map)) = (with_progress, &mut v) {
            let processed = if self.state == JobState::JobComplete {
                self.rows.len()
            } else {
                0
            };
            map.insert("jobType".into(), json!("V2Query"));
            map.insert("numberRecordsProcessed".into(), json!(processed));
            map.insert("retries".into(), json!(0));
            map.insert("totalProcessingTime".into(), json!(self.polls * 10));
            map.insert("isPkChunkingSupported".into(), json!(true));
            if let (JobState::Failed, Some(msg)) = (self.state, &self.fail_with) {
                map.insert("errorMessage".into(), json!(msg));
            }
        }
        v
    }
}

/// A validated job request: everything needed to create a [`Job`].
#[derive(Debug)]
pub struct Planned {
    /// `query` or `queryAll`.
    pub operation: String,
    /// Canonical object name.
    pub object: &'static str,
    /// Delimiter name and byte.
    pub delimiter: (&'static str, u8),
    /// CRLF line endings.
    pub crlf: bool,
    /// Header.
    pub columns: Vec<String>,
    /// The result set.
    pub rows: ResultSet,
}

/// Matches between two checkpoints of a filtered result set.
const CHECKPOINT_EVERY: usize = 4096;

/// Which rows of an object a query selects, and in which order.
#[derive(Debug, Default)]
pub struct Selection {
    /// ANDed conditions.
    pub filters: Vec<Filter>,
    /// LIMIT, if any.
    pub limit: Option<usize>,
    /// Recycle Bin rows too (`queryAll`).
    pub include_deleted: bool,
    /// `ORDER BY Id DESC`.
    pub descending: bool,
}

/// The rows a query job returns, generated on demand.
#[derive(Debug)]
pub struct ResultSet {
    view: View,
    columns: Vec<usize>,
    filters: Vec<Filter>,
    len: usize,
    /// For a filtered set: view position of match `k * CHECKPOINT_EVERY`.
    checkpoints: Option<Vec<usize>>,
    /// For `ORDER BY Id DESC`: the view positions of the result rows, in result order.
    picked: Option<Vec<usize>>,
}

impl ResultSet {
    /// Plans the rows of `object` as of `overlay` that `selection` selects, projected onto the
    /// field positions `columns`. A filtered or descending set is scanned once here.
    pub fn new(
        org: &Org,
        overlay: &Overlay,
        object: &ObjectDef,
        columns: Vec<usize>,
        selection: Selection,
    ) -> Self {
        let Selection {
            filters,
            limit,
            include_deleted,
            descending,
        } = selection;
        let view = View::new(org, overlay, object, include_deleted);
        let total = view.len();
        let limit = limit.unwrap_or(usize::MAX);
        let mut set = ResultSet {
            view,
            columns,
            filters,
            len: total.min(limit),
            checkpoints: None,
            picked: None,
        };
        if descending {
            set.scan_backwards(total, limit);
        } else if !set.filters.is_empty() {
            set.scan(total, limit);
        }
        set
    }

    /// `ORDER BY Id DESC`: the view is in id order, so the result is its matches read from the
    /// end (cheap with a small LIMIT, which is how it is used).
    fn scan_backwards(&mut self, total: usize, limit: usize) {
        let mut picked = Vec::new();
        for index in (0..total).rev() {
            if picked.len() == limit {
                break;
            }
            if self.accepts(&self.row(index)) {
                picked.push(index);
            }
        }
        self.len = picked.len();
        self.picked = Some(picked);
    }

    fn row(&self, position: usize) -> Row {
        self.view.row(position).unwrap_or_default()
    }

    fn scan(&mut self, total: usize, limit: usize) {
        let mut checkpoints = Vec::new();
        let mut matched = 0;
        for index in 0..total {
            if matched == limit {
                break;
            }
            if self.accepts(&self.row(index)) {
                if matched % CHECKPOINT_EVERY == 0 {
                    checkpoints.push(index);
                }
                matched += 1;
            }
        }
        self.len = matched;
        self.checkpoints = Some(checkpoints);
    }

    fn accepts(&self, row: &Row) -> bool {
        self.filters.iter().all(|f| f.matches(row))
    }

    /// Number of result rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the query matched nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Result rows `start..end` as cell strings (null as the empty string).
    pub fn cells(&self, start: usize, end: usize) -> Vec<Vec<String>> {
        let mut out = Vec::with_capacity(end.saturating_sub(start).min(self.len));
        let collected: Result<(), std::convert::Infallible> = self.for_each(start, end, |cells| {
            out.push(cells.iter().map(|c| c.unwrap_or("").to_owned()).collect());
            Ok(())
        });
        let _ = collected;
        out
    }

    /// Calls `each` with the projected cells of result rows `start..end`, in order.
    pub fn for_each<E>(
        &self,
        start: usize,
        end: usize,
        mut each: impl FnMut(&[Option<&str>]) -> Result<(), E>,
    ) -> Result<(), E> {
        let end = end.min(self.len);
        let mut emit = |row: &Row| {
            let cells: Vec<Option<&str>> =
                self.columns.iter().map(|c| row[*c].as_deref()).collect();
            each(&cells)
        };
        if let Some(picked) = &self.picked {
            for index in picked.iter().take(end).skip(start) {
                emit(&self.row(*index))?;
            }
            return Ok(());
        }
        let Some(checkpoints) = &self.checkpoints else {
            for index in start..end {
                emit(&self.row(index))?;
            }
            return Ok(());
        };
        let Some(from) = checkpoints.get(start / CHECKPOINT_EVERY) else {
            return Ok(());
        };
        let mut position = start / CHECKPOINT_EVERY * CHECKPOINT_EVERY;
        let mut index = *from;
        while position < end && index < self.view.len() {
            let row = self.row(index);
            index += 1;
            if !self.accepts(&row) {
                continue;
            }
            if position >= start {
                emit(&row)?;
            }
            position += 1;
        }
        Ok(())
    }
}

fn invalid_job(message: impl Into<String>) -> QueryError {
    QueryError {
        code: "INVALIDJOB",
        message: message.into(),
    }
}

fn delimiter(name: Option<&str>) -> Result<(&'static str, u8), QueryError> {
    match name.unwrap_or("COMMA") {
        "COMMA" => Ok(("COMMA", b',')),
        "TAB" => Ok(("TAB", b'\t')),
        "PIPE" => Ok(("PIPE", b'|')),
        "SEMICOLON" => Ok(("SEMICOLON", b';')),
        "CARET" => Ok(("CARET", b'^')),
        "BACKQUOTE" => Ok(("BACKQUOTE", b'`')),
        other => Err(invalid_job(format!("Invalid column delimiter: {other}"))),
    }
}

fn options(req: &CreateJob) -> Result<(String, (&'static str, u8), bool), QueryError> {
    let operation = match req.operation.as_deref() {
        Some(op @ ("query" | "queryAll")) => op.to_owned(),
        Some(other) => return Err(invalid_job(format!("Invalid operation: {other}"))),
        None => return Err(invalid_job("Operation is required")),
    };
    if let Some(ct) = req.content_type.as_deref().filter(|ct| *ct != "CSV") {
        return Err(invalid_job(format!("Invalid content type: {ct}")));
    }
    let crlf = match req.line_ending.as_deref().unwrap_or("LF") {
        "LF" => false,
        "CRLF" => true,
        other => return Err(invalid_job(format!("Invalid line ending: {other}"))),
    };
    Ok((operation, delimiter(req.column_delimiter.as_deref())?, crlf))
}

/// Validates a create-job request against the generated org (no writes) and runs the query.
pub fn plan(org: &Org, req: &CreateJob) -> Result<Planned, QueryError> {
    plan_at(org, &Overlay::default(), req)
}

/// Validates a create-job request against the org as of `overlay` and runs the query.
pub fn plan_at(org: &Org, overlay: &Overlay, req: &CreateJob) -> Result<Planned, QueryError> {
    let (operation, delimiter, crlf) = options(req)?;
    let soql = req
        .query
        .as_deref()
        .ok_or_else(|| invalid_job("Query is required"))?;
    let query = soql::parse(soql)?;
    let object = org.object(&query.object).ok_or_else(|| QueryError {
        code: "INVALID_TYPE",
        message: format!("sObject type '{}' is not supported.", query.object),
    })?;
    let fields = selected_fields(object, &query.fields)?;
    let filters = query
        .conditions
        .iter()
        .map(|c| soql::compile(object, c))
        .collect::<Result<Vec<Filter>, _>>()?;
    let positions = fields
        .iter()
        .filter_map(|f| object.index_of(f.name))
        .collect();
    let include_deleted = operation == "queryAll";
    let selection = Selection {
        filters,
        limit: query.limit,
        include_deleted,
        descending: query.descending,
    };
    let rows = ResultSet::new(org, overlay, object, positions, selection);
    let columns = fields.iter().map(|f| f.name.to_owned()).collect();
    Ok(Planned {
        operation,
        object: object.name,
        delimiter,
        crlf,
        columns,
        rows,
    })
}

fn selected_fields<'a>(
    object: &'a ObjectDef,
    names: &[String],
) -> Result<Vec<&'a FieldDef>, QueryError> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        if name.contains('.') {
            return Err(QueryError::malformed_relationship(name));
        }
        let field = object
            .field(name)
            .ok_or_else(|| soql::no_such_column(object, name))?;
        if field.is_binary() {
            return Err(invalid_job(
                "FeatureNotEnabled : Binary field not supported",
            ));
        }
        if field.is_compound() {
            return Err(invalid_job(
                "Failed to process query: FUNCTIONALITY_NOT_ENABLED: Selecting compound data not supported in Bulk Query",
            ));
        }
        if out.iter().any(|f: &&FieldDef| f.name == field.name) {
            return Err(QueryError {
                code: "MALFORMED_QUERY",
                message: format!("duplicate field selected: {}", field.name),
            });
        }
        out.push(field);
    }
    Ok(out)
}

impl QueryError {
    fn malformed_relationship(name: &str) -> Self {
        QueryError {
            code: "MALFORMED_QUERY",
            message: format!(
                "relationship field {name}: relationship paths are not supported by coffer-sfsim"
            ),
        }
    }
}

/// Encodes a row offset as an opaque locator (base64 of the decimal offset, like `MTAwMDA`).
pub fn encode_locator(offset: usize) -> String {
    STANDARD_NO_PAD.encode(offset.to_string())
}

/// Decodes a locator produced by [`encode_locator`].
pub fn decode_locator(locator: &str) -> Option<usize> {
    let bytes = STANDARD_NO_PAD.decode(locator).ok()?;
    String::from_utf8(bytes).ok()?.parse().ok()
}

/// One rendered results page.
#[derive(Debug)]
pub struct Page {
    /// CSV bytes: a header row and the page's rows, every cell double-quoted.
    pub body: Vec<u8>,
    /// Rows in this page.
    pub count: usize,
    /// Locator of the next page, or the literal `null`.
    pub next_locator: String,
}

/// Renders rows `offset..offset + max` of `job` as a standalone CSV document.
pub fn render_page(job: &Job, offset: usize, max: usize) -> Result<Page, csv::Error> {
    let end = offset.saturating_add(max).min(job.rows.len());
    let start = offset.min(end);
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
    w.write_record(&job.columns)?;
    job.rows.for_each(start, end, |cells| {
        w.write_record(cells.iter().map(|c| c.unwrap_or("")))
    })?;
    let body = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    let next_locator = if end < job.rows.len() {
        encode_locator(end)
    } else {
        "null".to_owned()
    };
    Ok(Page {
        body,
        count: end - start,
        next_locator,
    })
}

/// Every Bulk-queryable column and row of `object` of the generated org (no writes), as a
/// `query` job would return them.
pub fn full_table(org: &Org, object: &str) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    full_table_at(org, &Overlay::default(), object)
}

/// Every Bulk-queryable column and row of `object` as of `overlay`, as a `query` job would
/// return them.
pub fn full_table_at(
    org: &Org,
    overlay: &Overlay,
    object: &str,
) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let def = org.object(object)?;
    let positions: Vec<usize> = def
        .fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.bulk_queryable())
        .map(|(i, _)| i)
        .collect();
    let view = View::new(org, overlay, def, false);
    let rows = (0..view.len())
        .filter_map(|n| view.row(n))
        .map(|r| {
            positions
                .iter()
                .map(|p| r[*p].clone().unwrap_or_default())
                .collect()
        })
        .collect();
    let header = positions
        .iter()
        .map(|p| def.fields[*p].name.to_owned())
        .collect();
    Some((header, rows))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn locators_round_trip_and_look_like_salesforce() {
        assert_eq!(encode_locator(10000), "MTAwMDA");
        assert_eq!(decode_locator("MTAwMDA"), Some(10000));
        assert_eq!(decode_locator("null"), None);
    }
}
