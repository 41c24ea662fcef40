//! Fault injection and API accounting: the knobs tests turn through [`crate::SimHandle`]
//! (exhausted limits, 503s, slow and cut pages, Bulk-unsupported objects, schema changes) and the
//! middleware that counts every data API call and stamps `Sforce-Limit-Info` on the answer.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use crate::server::{Sim, lock, sf_error};

/// The `errorMessage` of a Bulk query job Salesforce gave up on after its internal retries.
pub const QUERY_TIMEOUT: &str = "QUERY_TIMEOUT: Your query request was running for too long.";

/// A hostile answer the simulator gives instead of a real one, once (see
/// [`crate::SimHandle::serve_garbage`]). Page kinds replace the next Bulk results page; JSON
/// kinds the next Bulk query job status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Garbage {
    /// The next results page carries `value`, raw bytes (invalid UTF-8, megabytes, path tricks,
    /// NUL), in column `column` of its first row; the rest of the page is as rendered.
    Cell {
        /// The column's API name, as in the page's header.
        column: String,
        /// The bytes put in the cell (quoted, `"` doubled).
        value: Vec<u8>,
    },
    /// The next results page is answered `200 text/html` with a maintenance page.
    HtmlPage,
    /// The next results page is answered `200 application/json` with a JSON document.
    JsonPage,
    /// The next job status is answered `200 text/html` with a login page.
    HtmlJson,
    /// The next job status is answered `200 application/json` with its JSON cut in half.
    TruncatedJson,
}

impl Garbage {
    /// Whether it replaces a results page (else a job status).
    pub fn is_page(&self) -> bool {
        matches!(
            self,
            Garbage::Cell { .. } | Garbage::HtmlPage | Garbage::JsonPage
        )
    }
}

/// Default daily API request allocation (`DailyApiRequests.Max`).
pub const DEFAULT_API_MAX: u64 = 100_000;

/// The fault knobs and API counters of one simulator.
#[derive(Debug)]
pub struct Faults {
    /// Every data API call answers `403 REQUEST_LIMIT_EXCEEDED`.
    pub limit_exhausted: AtomicBool,
    /// The next N data API calls answer `503`.
    pub unavailable: AtomicU32,
    /// Delay before each Bulk results page, in milliseconds.
    pub page_delay_ms: AtomicU64,
    /// Time each sObject Collections write takes, in milliseconds: half before it is applied,
    /// half after.
    pub write_delay_ms: AtomicU64,
    /// The next N Bulk results pages send half their body, then drop the connection.
    pub cut_pages: AtomicU32,
    /// Objects (lowercase) whose Bulk query jobs answer `400 INVALIDENTITY`.
    pub bulk_unsupported: Mutex<HashSet<String>>,
    /// Data API calls counted so far (`api-usage=N/...`).
    pub api_calls: AtomicU64,
    /// `DailyApiRequests.Max`.
    pub api_max: AtomicU64,
    /// When the schema last changed (whole seconds), for `If-Modified-Since` on describe.
    pub schema_modified: Mutex<OffsetDateTime>,
    /// While set, Bulk query jobs whose result set has more rows than this end `Failed` with
    /// `QUERY_TIMEOUT`.
    pub query_timeout_above: Mutex<Option<usize>>,
    /// Blob GETs (`/sobjects/{object}/{id}/{field}`) answered with a body so far.
    pub blob_downloads: AtomicU64,
    /// The next N blob bodies are served with their first byte changed (a corrupted transfer,
    /// or a stored checksum that no longer matches).
    pub corrupt_blobs: AtomicU32,
    /// The next N blob bodies send half of what was asked for, then drop the connection.
    pub cut_blobs: AtomicU32,
    /// Whether blob GETs honour `Range: bytes=N-` (`206 Partial Content`); when off they answer
    /// `200` with the whole body, as a server that ignores ranges does.
    pub blob_ranges: AtomicBool,
    /// sObject Collections writes let through before the next one answers `503` without being
    /// applied (`u32::MAX`: off); the fault fires once.
    pub collection_writes_before_failure: AtomicU32,
    /// sObject Collections writes answered before the next one is applied and then answered
    /// `503`, its results lost as if the connection broke after the commit (`u32::MAX`: off);
    /// the fault fires once.
    pub collection_answers_before_loss: AtomicU32,
    /// Blob bodies written by tests (`SimHandle::set_blob`), by (object, 18-character id, field);
    /// they replace the generated bodies.
    pub written_blobs: Mutex<HashMap<(String, String, String), Vec<u8>>>,
    /// Hostile answers still to give, in order ([`Garbage`]).
    pub garbage: Mutex<VecDeque<Garbage>>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            limit_exhausted: AtomicBool::new(false),
            unavailable: AtomicU32::new(0),
            page_delay_ms: AtomicU64::new(0),
            write_delay_ms: AtomicU64::new(0),
            cut_pages: AtomicU32::new(0),
            bulk_unsupported: Mutex::default(),
            api_calls: AtomicU64::new(0),
            api_max: AtomicU64::new(DEFAULT_API_MAX),
            schema_modified: Mutex::new(whole_seconds(OffsetDateTime::now_utc())),
            query_timeout_above: Mutex::default(),
            blob_downloads: AtomicU64::new(0),
            corrupt_blobs: AtomicU32::new(0),
            cut_blobs: AtomicU32::new(0),
            blob_ranges: AtomicBool::new(true),
            collection_writes_before_failure: AtomicU32::new(u32::MAX),
            collection_answers_before_loss: AtomicU32::new(u32::MAX),
            written_blobs: Mutex::default(),
            garbage: Mutex::default(),
        }
    }
}

/// `t` with its sub-second part dropped (HTTP dates have second precision).
pub fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Decrements `counter` if it is positive; says whether it was.
pub fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

impl Faults {
    /// Waits half the configured delay of a collections write ([`Faults::write_delay_ms`]):
    /// called before the write is applied and again before it is answered, so an interrupted
    /// client may have been cut off on either side of the commit.
    pub async fn delay_write(&self) {
        let ms = self.write_delay_ms.load(Ordering::Relaxed) / 2;
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// Whether Bulk query jobs on `object` are refused with `INVALIDENTITY`.
    pub fn is_bulk_unsupported(&self, object: &str) -> bool {
        lock(&self.bulk_unsupported).contains(&object.to_ascii_lowercase())
    }

    /// The `QUERY_TIMEOUT` message a Bulk query job over `rows` rows fails with, if the
    /// `query_timeout_above` knob is set and `rows` exceeds it.
    pub fn query_timeout_for(&self, rows: usize) -> Option<String> {
        lock(&self.query_timeout_above)
            .is_some_and(|above| rows > above)
            .then(|| QUERY_TIMEOUT.to_owned())
    }

    /// The next hostile answer of the page kind (`page`) or the job status kind, if one is due.
    pub fn take_garbage(&self, page: bool) -> Option<Garbage> {
        let mut queue = lock(&self.garbage);
        let at = queue.iter().position(|g| g.is_page() == page)?;
        queue.remove(at)
    }

    /// The configured delay before each results page.
    pub fn page_delay(&self) -> Duration {
        Duration::from_millis(self.page_delay_ms.load(Ordering::Relaxed))
    }

    /// (calls so far, daily maximum).
    pub fn usage(&self) -> (u64, u64) {
        (
            self.api_calls.load(Ordering::Relaxed),
            self.api_max.load(Ordering::Relaxed),
        )
    }
}

impl Faults {
    /// Whether this sObject Collections write is the one to fail (see
    /// [`Faults::collection_writes_before_failure`]).
    pub fn fail_this_collection_write(&self) -> bool {
        fires_once(&self.collection_writes_before_failure)
    }

    /// Whether the answer to this sObject Collections write, already applied, is the one to
    /// lose (see [`Faults::collection_answers_before_loss`]).
    pub fn lose_this_collection_answer(&self) -> bool {
        fires_once(&self.collection_answers_before_loss)
    }
}

/// Counts `counter` down to zero, firing (true) at zero and switching off (`u32::MAX`).
fn fires_once(counter: &AtomicU32) -> bool {
    let before = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| match n {
        u32::MAX => None,
        0 => Some(u32::MAX),
        n => Some(n - 1),
    });
    before == Ok(0)
}

/// Whether a request path is an API call that counts against the daily allocation: REST and
/// Bulk under `/services/data/vXX.X`, and SOAP calls (the version list at `/services/data` and
/// the token endpoint do not count).
fn counted(path: &str) -> bool {
    path.starts_with("/services/data/v") || path.starts_with("/services/Soap/")
}

/// Middleware: counts the call, answers injected limit and availability faults, and stamps
/// `Sforce-Limit-Info: api-usage=N/MAX` on every data API answer.
pub async fn gate(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    if !counted(req.uri().path()) {
        return next.run(req).await;
    }
    let faults = &sim.faults;
    let used = faults.api_calls.fetch_add(1, Ordering::Relaxed) + 1;
    let max = faults.api_max.load(Ordering::Relaxed);
    let mut resp = if faults.limit_exhausted.load(Ordering::Relaxed) || used > max {
        sf_error(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        )
    } else if take_one(&faults.unavailable) {
        unavailable(faults.unavailable.load(Ordering::Relaxed))
    } else {
        next.run(req).await
    };
    if let Ok(v) = HeaderValue::from_str(&format!("api-usage={}/{max}", used.min(max))) {
        resp.headers_mut().insert("Sforce-Limit-Info", v);
    }
    resp
}

/// A `503`: alternately the HTML page a load balancer serves and Salesforce's JSON error.
fn unavailable(remaining: u32) -> Response {
    if remaining.is_multiple_of(2) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><head><title>Service Unavailable</title></head><body>Service Unavailable</body></html>",
        )
            .into_response()
    } else {
        sf_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_UNAVAILABLE",
            "Server unavailable, please retry later.",
        )
    }
}

/// `body` (a rendered all-quoted CSV page) with `value` in column `column` of its first row;
/// unchanged if the page has no such column or no row.
pub fn with_cell(body: &[u8], column: &str, value: &[u8]) -> Vec<u8> {
    let mut reader = csv::ReaderBuilder::new().from_reader(body);
    let Ok(header) = reader.byte_headers().cloned() else {
        return body.to_vec();
    };
    let Some(col) = header.iter().position(|h| h == column.as_bytes()) else {
        return body.to_vec();
    };
    let mut out = Vec::with_capacity(body.len() + value.len());
    let quoted = |out: &mut Vec<u8>, cell: &[u8]| {
        out.push(b'"');
        for &b in cell {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    };
    let line = |out: &mut Vec<u8>, cells: Vec<&[u8]>| {
        for (i, cell) in cells.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            quoted(out, cell);
        }
        out.push(b'\n');
    };
    line(&mut out, header.iter().collect());
    for (n, record) in reader.byte_records().enumerate() {
        let Ok(record) = record else {
            return body.to_vec();
        };
        let cells = record
            .iter()
            .enumerate()
            .map(|(i, cell)| if n == 0 && i == col { value } else { cell })
            .collect();
        line(&mut out, cells);
    }
    out
}

/// A body that yields the first half of `body`, pauses so the headers and that half reach the
/// client, then fails, so the server drops the connection mid-transfer.
pub fn cut_body(body: Vec<u8>) -> Body {
    use futures::StreamExt;
    let whole = Bytes::from(body);
    let first = whole.slice(..whole.len() / 2);
    let head = futures::stream::iter([Ok::<Bytes, std::io::Error>(first)]);
    let cut = futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "sfsim cut the connection",
        ))
    });
    Body::from_stream(head.chain(cut))
}
