//! Bulk API 2.0 query: create a job, poll it to `JobComplete`, then download the results page by
//! page, each page a standalone CSV document with its own header row.
//!
//! Pages are fetched with the job's own API version (another version gets `409`), with
//! `maxRecords` from [`crate::ClientOptions`], and follow `Sforce-Locator` until the literal
//! string `null`. A page's locator is stable while the job exists, so a download can resume from
//! the last locator with [`SalesforceClient::bulk_query_results`]. A page whose download fails
//! transiently (5xx, a cut connection, fewer rows than announced) is fetched again by the same
//! locator, so no row is lost or repeated.
//!
//! Objects the Bulk API refuses (`400 INVALIDENTITY`) are read through the REST query resource
//! instead (module `rest`); the pages look the same to the caller.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::describe::decode_json;
use crate::rest::RestQuery;
use crate::{SalesforceClient, SalesforceError};

/// `query` (live rows) or `queryAll` (also deleted and archived rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryOperation {
    /// Live rows only.
    #[serde(rename = "query")]
    Query,
    /// Live, deleted (Recycle Bin) and archived rows.
    #[serde(rename = "queryAll")]
    QueryAll,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateJob<'a> {
    operation: QueryOperation,
    query: &'a str,
    content_type: &'static str,
    column_delimiter: &'static str,
    line_ending: &'static str,
}

/// `apiVersion` is a JSON number in job info (`62.0`); accept a string too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ApiVersion {
    Number(f64),
    Text(String),
}

impl ApiVersion {
    fn render(&self) -> String {
        match self {
            ApiVersion::Number(n) => format!("{n:.1}"),
            ApiVersion::Text(s) => s.trim_start_matches('v').to_owned(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobInfo {
    id: String,
    state: String,
    #[serde(default)]
    api_version: Option<ApiVersion>,
    #[serde(default)]
    error_message: Option<String>,
    #[serde(default)]
    number_records_processed: Option<u64>,
}

/// One results page.
#[derive(Debug, Clone)]
pub struct CsvPage {
    /// The page's header row (field API names in requested order).
    pub headers: csv::StringRecord,
    /// The rows; an empty cell is a null value.
    pub records: Vec<csv::StringRecord>,
    /// The locator used to fetch this page; `None` for the first page.
    pub locator: Option<String>,
    /// The locator of the following page; `None` after the last page.
    pub next_locator: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Cursor {
    Next(Option<String>),
    Done,
}

/// The results of a completed Bulk query job, downloaded one page at a time.
#[derive(Debug)]
pub struct BulkQueryResults {
    client: SalesforceClient,
    job_id: String,
    api_version: String,
    records_processed: Option<u64>,
    cursor: Cursor,
    pages: u64,
    /// Set when the object is read through REST `query` instead of a Bulk job.
    rest: Option<RestQuery>,
}

impl BulkQueryResults {
    /// Whether the rows come from the REST query resource because the Bulk API refused the
    /// object (`INVALIDENTITY`); [`BulkQueryResults::job_id`] is then empty.
    pub fn is_rest_fallback(&self) -> bool {
        self.rest.is_some()
    }

    /// The job's id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The API version the job was created with (results are fetched with it).
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// `numberRecordsProcessed` reported when the job completed, if known.
    pub fn records_processed(&self) -> Option<u64> {
        self.records_processed
    }

    /// Downloads the next page, or returns `None` when the last page has been read.
    pub async fn next_page(&mut self) -> Result<Option<CsvPage>, SalesforceError> {
        let locator = match &self.cursor {
            Cursor::Done => return Ok(None),
            Cursor::Next(locator) => locator.clone(),
        };
        let page_no = self.pages + 1;
        let page = match &self.rest {
            Some(rest) => {
                let op = format!("read rest query results page {page_no}");
                self.client
                    .with_retries(&op, || rest.page(&self.client, locator.as_deref()))
                    .await?
            }
            None => {
                let op = format!(
                    "download results page {page_no} of bulk query job {}",
                    self.job_id
                );
                self.client
                    .with_retries(&op, || self.page(locator.as_deref(), page_no))
                    .await?
            }
        };
        self.pages = page_no;
        self.cursor = match &page.next_locator {
            Some(next) => Cursor::Next(Some(next.clone())),
            None => Cursor::Done,
        };
        Ok(Some(page))
    }

    /// Fetches and parses one page, checking its row count against `Sforce-NumberOfRecords`.
    async fn page(&self, locator: Option<&str>, page_no: u64) -> Result<CsvPage, SalesforceError> {
        let (body, declared, next_locator) = self.fetch(locator, page_no).await?;
        let (headers, records) = parse_page(&self.job_id, page_no, locator, &body)?;
        if let Some(declared) = declared.filter(|d| *d != records.len() as u64) {
            return Err(SalesforceError::TruncatedPage {
                job_id: self.job_id.clone(),
                page: page_no,
                declared,
                actual: records.len() as u64,
            });
        }
        tracing::debug!(bulk_job_id = %self.job_id, page = page_no, rows = records.len(), "downloaded bulk query results page");
        Ok(CsvPage {
            headers,
            records,
            locator: locator.map(str::to_owned),
            next_locator,
        })
    }

    /// GETs one page: (body, `Sforce-NumberOfRecords`, next locator unless `null`).
    async fn fetch(
        &self,
        locator: Option<&str>,
        page_no: u64,
    ) -> Result<(bytes::Bytes, Option<u64>, Option<String>), SalesforceError> {
        let operation = format!(
            "download results page {page_no} of bulk query job {}",
            self.job_id
        );
        let url = self.client.data_url(
            &self.api_version,
            &format!("jobs/query/{}/results", self.job_id),
        );
        let mut query = vec![("maxRecords", self.client.options().max_records.to_string())];
        if let Some(l) = locator {
            query.push(("locator", l.to_owned()));
        }
        let resp = self
            .client
            .send(&operation, |http| {
                http.get(&url)
                    .query(&query)
                    .header(reqwest::header::ACCEPT, "text/csv")
            })
            .await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("Content-Type").unwrap_or_default();
        if !content_type.is_empty() && !content_type.to_ascii_lowercase().starts_with("text/csv") {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(SalesforceError::GarbledResponse {
                operation,
                detail: format!(
                    "content type {content_type:?} where text/csv was asked for: {}",
                    crate::client::snippet(&body).escape_debug()
                ),
            });
        }
        let declared = header("Sforce-NumberOfRecords").and_then(|v| v.trim().parse::<u64>().ok());
        let next = header("Sforce-Locator").ok_or_else(|| SalesforceError::UnexpectedResponse {
            operation: operation.clone(),
            detail: "the Sforce-Locator header is missing".into(),
        })?;
        let next = Some(next).filter(|l| !l.is_empty() && l != "null");
        let body = resp
            .bytes()
            .await
            .map_err(|source| SalesforceError::Transport {
                operation: operation.clone(),
                source,
            })?;
        Ok((body, declared, next))
    }
}

/// Parses one results page; any CSV or UTF-8 error names the job, page and locator. Public for
/// the property tests and fuzz targets of hostile pages.
pub fn parse_page(
    job_id: &str,
    page_no: u64,
    locator: Option<&str>,
    body: &[u8],
) -> Result<(csv::StringRecord, Vec<csv::StringRecord>), SalesforceError> {
    let invalid = |e: csv::Error| SalesforceError::InvalidCsv {
        job_id: job_id.to_owned(),
        page: page_no,
        locator: locator.unwrap_or("first").to_owned(),
        detail: e.to_string(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    let headers = reader.headers().map_err(invalid)?.clone();
    let records = reader
        .records()
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    Ok((headers, records))
}

impl SalesforceClient {
    /// Runs `soql` as a Bulk API 2.0 `query` job and waits until it is `JobComplete`.
    pub async fn bulk_query(&self, soql: &str) -> Result<BulkQueryResults, SalesforceError> {
        self.bulk_query_with(soql, QueryOperation::Query).await
    }

    /// [`SalesforceClient::bulk_query`] with an explicit operation (`queryAll` includes deleted
    /// rows).
    pub async fn bulk_query_with(
        &self,
        soql: &str,
        operation: QueryOperation,
    ) -> Result<BulkQueryResults, SalesforceError> {
        let job = match self.create_query_job(soql, operation).await {
            Ok(job) => job,
            Err(e) if e.is_bulk_unsupported() => return Ok(self.rest_fallback(soql, operation, &e)),
            Err(e) => return Err(e),
        };
        tracing::info!(bulk_job_id = %job.id, "created bulk query job");
        let done = self.wait_for_job(job).await?;
        let api_version = done
            .api_version
            .as_ref()
            .map(ApiVersion::render)
            .unwrap_or_else(|| self.api_version().to_owned());
        tracing::info!(bulk_job_id = %done.id, records = done.number_records_processed, "bulk query job complete");
        Ok(BulkQueryResults {
            client: self.clone(),
            job_id: done.id,
            api_version,
            records_processed: done.number_records_processed,
            cursor: Cursor::Next(None),
            pages: 0,
            rest: None,
        })
    }

    /// Results read through REST `query`/`queryAll` for an object Bulk refused.
    /// Reads `soql` through REST `query`/`queryAll` (paged by `nextRecordsUrl`), handed out like
    /// Bulk results pages: for small, selective queries (a few ids), where a Bulk job would cost
    /// more than it reads.
    pub fn rest_query(&self, soql: &str, operation: QueryOperation) -> BulkQueryResults {
        BulkQueryResults {
            client: self.clone(),
            job_id: String::new(),
            api_version: self.api_version().to_owned(),
            records_processed: None,
            cursor: Cursor::Next(None),
            pages: 0,
            rest: Some(RestQuery::new(soql, operation)),
        }
    }

    fn rest_fallback(
        &self,
        soql: &str,
        operation: QueryOperation,
        refusal: &SalesforceError,
    ) -> BulkQueryResults {
        tracing::info!(reason = %refusal, "bulk api refused the object; reading it through rest query");
        self.rest_query(soql, operation)
    }

    /// Resumes downloading the results of completed job `job_id` (created with `api_version`)
    /// from `locator` (`None`: the first page).
    pub fn bulk_query_results(
        &self,
        job_id: &str,
        api_version: &str,
        locator: Option<String>,
    ) -> BulkQueryResults {
        BulkQueryResults {
            client: self.clone(),
            job_id: job_id.to_owned(),
            api_version: api_version.trim_start_matches('v').to_owned(),
            records_processed: None,
            cursor: Cursor::Next(locator),
            pages: 0,
            rest: None,
        }
    }

    async fn create_query_job(
        &self,
        soql: &str,
        operation: QueryOperation,
    ) -> Result<JobInfo, SalesforceError> {
        let url = self.data_url(self.api_version(), "jobs/query");
        let body = CreateJob {
            operation,
            query: soql,
            content_type: "CSV",
            column_delimiter: "COMMA",
            line_ending: "LF",
        };
        let op = "create bulk query job";
        let resp = self.send(op, |http| http.post(&url).json(&body)).await?;
        decode_json(op, resp).await
    }

    async fn job_info(&self, job_id: &str) -> Result<JobInfo, SalesforceError> {
        let url = self.data_url(self.api_version(), &format!("jobs/query/{job_id}"));
        self.get_json(&format!("poll bulk query job {job_id}"), &url)
            .await
    }

    /// Polls with a doubling delay until the job completes, fails or the wait runs out.
    async fn wait_for_job(&self, job: JobInfo) -> Result<JobInfo, SalesforceError> {
        let started = Instant::now();
        let mut delay = self.options().poll_initial;
        loop {
            tokio::time::sleep(delay).await;
            let info = self.job_info(&job.id).await?;
            tracing::debug!(bulk_job_id = %info.id, state = %info.state, "polled bulk query job");
            match info.state.as_str() {
                "JobComplete" => return Ok(info),
                "Failed" | "Aborted" => return Err(job_failed(info)),
                _ => {}
            }
            if started.elapsed() >= self.options().poll_timeout {
                return Err(SalesforceError::JobTimeout {
                    job_id: job.id,
                    state: info.state,
                    waited_secs: started.elapsed().as_secs(),
                });
            }
            delay = (delay * 2).min(self.options().poll_max);
        }
    }
}

/// The error for a job that ended `Failed` or `Aborted`: `QUERY_TIMEOUT` gets its own variant.
fn job_failed(info: JobInfo) -> SalesforceError {
    let message = info.error_message.unwrap_or_default();
    if message.contains("QUERY_TIMEOUT") || message.contains("running for too long") {
        tracing::warn!(bulk_job_id = %info.id, "bulk query job timed out in salesforce");
        return SalesforceError::QueryTimeout {
            job_id: info.id,
            message,
        };
    }
    SalesforceError::JobFailed {
        job_id: info.id,
        state: info.state,
        message,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use coffer_core::{Classify, ErrorClass};

    use super::*;

    #[test]
    fn pages_with_quoted_newlines_quotes_and_non_ascii_parse() {
        let body = "\"Id\",\"Description\"\n\"001\",\"a, \"\"b\"\"\nc é 日本 🚀\"\n\"002\",\"\"\n";
        let (headers, rows) = parse_page("750x", 1, None, body.as_bytes()).unwrap();
        assert_eq!(
            headers.iter().collect::<Vec<_>>(),
            vec!["Id", "Description"]
        );
        assert_eq!(&rows[0][1], "a, \"b\"\nc é 日本 🚀");
        assert_eq!(&rows[1][1], "");
    }

    #[test]
    fn invalid_utf8_is_a_permanent_error_naming_job_and_page() {
        let body = b"\"Id\",\"Name\"\n\"001\",\"\xff\xfe\"\n";
        let err = parse_page("750000000000001AAA", 3, Some("MTAwMDA"), body).unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        let text = err.to_string();
        assert!(
            text.contains("750000000000001AAA")
                && text.contains("page 3")
                && text.contains("MTAwMDA"),
            "{text}"
        );
    }

    #[test]
    fn api_version_renders_from_number_or_string() {
        assert_eq!(ApiVersion::Number(62.0).render(), "62.0");
        assert_eq!(ApiVersion::Text("v58.0".into()).render(), "58.0");
    }
}
