//! Errors of the Salesforce boundary and their retry classification.
//!
//! No variant ever holds an access token or a client secret: messages carry Salesforce's error
//! codes and messages, URLs without credentials, and the job and page an error happened in.

use coffer_core::{Classify, ErrorClass};

/// Anything that can go wrong talking to Salesforce.
#[derive(Debug, thiserror::Error)]
pub enum SalesforceError {
    /// The token endpoint rejected the connected app (`invalid_client`, `invalid_client_id`,
    /// `invalid_grant`, `unauthorized_client`): a person must fix the configuration.
    #[error(
        "salesforce rejected the connected app credentials at {login_url} ({code}: {description}); check the connected app's client id and client secret, that the client credentials flow is enabled with a run-as user, and that the app is pre-authorized for that user"
    )]
    AuthRejected {
        /// The login URL that was asked.
        login_url: String,
        /// OAuth error code.
        code: String,
        /// OAuth error description.
        description: String,
    },
    /// The token endpoint rejected a JWT bearer assertion (`invalid_grant`, `invalid_client_id`,
    /// ...): a person must fix the connected app, the certificate or the user's approval.
    #[error(
        "salesforce rejected the jwt bearer assertion at {login_url} ({code}: {description}); check the consumer key, that the certificate uploaded to the connected app matches the private key, that the username exists, that the user is pre-authorized (admin approved) for the app, and the audience (login.salesforce.com, test.salesforce.com or the community url)"
    )]
    JwtRejected {
        /// The login URL that was asked.
        login_url: String,
        /// OAuth error code.
        code: String,
        /// OAuth error description.
        description: String,
    },
    /// The token endpoint failed in another way (unexpected status or body).
    #[error("token request to {login_url} failed with http {status}: {detail}")]
    TokenEndpoint {
        /// The login URL that was asked.
        login_url: String,
        /// HTTP status.
        status: u16,
        /// What came back, shortened.
        detail: String,
    },
    /// A freshly minted token was rejected as well.
    #[error("{operation}: salesforce rejected the session even after minting a new token")]
    SessionRejected {
        /// What was being done.
        operation: String,
    },
    /// Salesforce answered an API call with an error.
    #[error("{operation}: salesforce returned http {status} {code}: {message}")]
    Api {
        /// What was being done (`describe Account`, `create bulk query job`, ...).
        operation: String,
        /// HTTP status.
        status: u16,
        /// Salesforce `errorCode` (empty if the body had none).
        code: String,
        /// Salesforce `message`, or the start of the body.
        message: String,
    },
    /// The request did not complete: connection refused or reset, timeout, truncated body.
    #[error("{operation}: request failed: {source}")]
    Transport {
        /// What was being done.
        operation: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// A Bulk query job ended in `Failed` or `Aborted`.
    #[error("bulk query job {job_id} ended in state {state}: {message}")]
    JobFailed {
        /// Job id.
        job_id: String,
        /// `Failed` or `Aborted`.
        state: String,
        /// The job's `errorMessage`.
        message: String,
    },
    /// A Bulk query or ingest job did not finish within the configured wait.
    #[error("bulk job {job_id} was still {state} after {waited_secs} seconds")]
    JobTimeout {
        /// Job id.
        job_id: String,
        /// Last state seen.
        state: String,
        /// How long the client waited.
        waited_secs: u64,
    },
    /// A results page could not be read as CSV (for example it is not UTF-8).
    #[error(
        "bulk query job {job_id}, results page {page} (locator {locator}): invalid csv: {detail}"
    )]
    InvalidCsv {
        /// Job id.
        job_id: String,
        /// 1-based page number.
        page: u64,
        /// Locator used for the page (`first` for the first page).
        locator: String,
        /// The parser's complaint.
        detail: String,
    },
    /// A results page did not contain as many rows as its `Sforce-NumberOfRecords` header said.
    #[error(
        "bulk query job {job_id}, results page {page}: header said {declared} records, body held {actual}"
    )]
    TruncatedPage {
        /// Job id.
        job_id: String,
        /// 1-based page number.
        page: u64,
        /// `Sforce-NumberOfRecords`.
        declared: u64,
        /// Rows parsed.
        actual: u64,
    },
    /// A success response that is not Salesforce's API at all: an HTML page (a proxy, a
    /// maintenance or login interstitial), a body of another content type, or JSON cut short.
    /// Such answers come from something between us and the API, or a broken transfer, so the
    /// request is tried again.
    #[error(
        "{operation}: the answer is not salesforce's api ({detail}); a proxy, maintenance page or cut transfer answered instead, so it is retried"
    )]
    GarbledResponse {
        /// What was being done.
        operation: String,
        /// What came back: its content type and start, or where the JSON ended.
        detail: String,
    },
    /// A success response did not have the documented shape.
    #[error("{operation}: unexpected response: {detail}")]
    UnexpectedResponse {
        /// What was being done.
        operation: String,
        /// What was wrong.
        detail: String,
    },
    /// The connection settings are unusable (bad URL, bad API version).
    #[error("invalid salesforce connection settings: {0}")]
    Config(String),
    /// The org's daily API allocation is used up (`403 REQUEST_LIMIT_EXCEEDED`, `TotalRequests`).
    /// Retrying now only burns more; pause the org until the rolling 24-hour window frees.
    #[error(
        "{operation}: the org's daily api request limit is exhausted ({message}); pause this org's backups until the rolling 24-hour window frees calls, or ask the customer to raise the allocation"
    )]
    LimitExceeded {
        /// What was being done.
        operation: String,
        /// Salesforce's message.
        message: String,
    },
    /// This client has used its configured share of the org's daily API allocation
    /// ([`crate::ClientOptions::max_api_share`]); the call was not sent.
    #[error(
        "{operation}: not sent, the org has used {used} of its {max} daily api calls and coffer's budget is {budget}; pause this org until the window frees calls, or raise max_api_share"
    )]
    ApiBudgetExhausted {
        /// What was being done.
        operation: String,
        /// Calls used (`Sforce-Limit-Info`).
        used: u64,
        /// The daily allocation.
        max: u64,
        /// Calls this client may use.
        budget: u64,
    },
    /// A Bulk query job failed with `QUERY_TIMEOUT` after Salesforce's own retries: the query
    /// reads too much at once and must be split (by Id or SystemModstamp ranges).
    #[error(
        "bulk query job {job_id} timed out in salesforce ({message}); split the query into smaller Id or SystemModstamp ranges and run each"
    )]
    QueryTimeout {
        /// Job id.
        job_id: String,
        /// The job's `errorMessage`.
        message: String,
    },
    /// A Bulk query still failed with `QUERY_TIMEOUT` on a `SystemModstamp` range too narrow to
    /// split further: splitting by time cannot help (many rows share the instant, or the
    /// selected fields are too costly to read).
    #[error(
        "{object}: the bulk query timed out in salesforce even on the systemmodstamp range [{from}, {to}) ({message}); select fewer fields of {object} (long text, formula fields), or ask salesforce support to look at the query on {object} for that range"
    )]
    SplitExhausted {
        /// The object read.
        object: String,
        /// Start of the range (inclusive), SOQL dateTime.
        from: String,
        /// End of the range (exclusive), SOQL dateTime.
        to: String,
        /// The last job's `errorMessage`.
        message: String,
    },
    /// The object has no `SystemModstamp` field, so it cannot be read incrementally or split by
    /// time range.
    #[error(
        "{object} has no SystemModstamp field, so it cannot be read incrementally or split by systemmodstamp range; back it up with a full read"
    )]
    NoSystemModstamp {
        /// The object.
        object: String,
    },
    /// A downloaded blob's MD5 differs from the checksum Salesforce recorded for it.
    #[error(
        "{blob}: downloaded {bytes} bytes with md5 {actual}, but salesforce records checksum {expected}; the transfer was corrupted or the file changed, download it again"
    )]
    ChecksumMismatch {
        /// Which blob: object, record id and field (`ContentVersion 068... VersionData`).
        blob: String,
        /// Bytes received.
        bytes: u64,
        /// The expected MD5 (hex).
        expected: String,
        /// The MD5 of what arrived (hex).
        actual: String,
    },
    /// A Bulk ingest job ended in `Failed` or `Aborted`. Rows Salesforce already processed are
    /// not rolled back: their results are still downloadable by job id.
    #[error(
        "bulk ingest job {job_id} ended in state {state}: {message}; fetch its results with ingest_job_results({job_id}) to see which rows were written, fix the cause, and resubmit the failed and unprocessed rows in a new job"
    )]
    IngestJobFailed {
        /// Job id.
        job_id: String,
        /// `Failed` or `Aborted`.
        state: String,
        /// The job's `errorMessage`.
        message: String,
    },
    /// One CSV row (with the header) is larger than one ingest upload may be.
    #[error(
        "ingest row {row} encodes to {bytes} bytes with its header, over the {limit}-byte upload limit; load that record through sObject Collections or shorten its long text fields"
    )]
    IngestRowTooLarge {
        /// 0-based row number in the caller's input.
        row: usize,
        /// Bytes of the header plus the row.
        bytes: usize,
        /// The configured upload limit.
        limit: usize,
    },
    /// The caller asked for a write Salesforce cannot take as given (a row with the wrong number
    /// of cells, an id with characters ids never have, no columns).
    #[error("{operation}: invalid request: {detail}")]
    InvalidWriteRequest {
        /// What was being done.
        operation: String,
        /// What is wrong with the input.
        detail: String,
    },
    /// Ingest results cannot be correlated by the requested column.
    #[error(
        "bulk ingest job {job_id}: cannot correlate results by column {column}: {detail}; results echo only columns that are real fields of the object, so correlate by a field such as an external id holding the source id"
    )]
    NotCorrelatable {
        /// Job id.
        job_id: String,
        /// The requested column.
        column: String,
        /// Why (not echoed, duplicate value).
        detail: String,
    },
    /// A SOAP API call answered with a fault other than an expired session.
    #[error("{operation}: salesforce soap fault {code}: {message}")]
    SoapFault {
        /// What was being done.
        operation: String,
        /// The fault's exception code (`faultcode` without its prefix).
        code: String,
        /// The `faultstring`.
        message: String,
    },
}

/// Salesforce error codes that mean "try again later".
const RETRYABLE_CODES: &[&str] = &[
    "REQUEST_LIMIT_EXCEEDED",
    "SERVER_UNAVAILABLE",
    "UNABLE_TO_LOCK_ROW",
    "ConcurrentRequests",
    "TooManyRequests",
];

impl SalesforceError {
    /// The Salesforce `errorCode` or OAuth `error`, if the error came from Salesforce.
    pub fn code(&self) -> Option<&str> {
        match self {
            SalesforceError::Api { code, .. }
            | SalesforceError::AuthRejected { code, .. }
            | SalesforceError::JwtRejected { code, .. }
            | SalesforceError::SoapFault { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the org should be paused until its API window frees calls (the daily allocation
    /// or this client's share of it is used up). These errors are [`ErrorClass::Retryable`], but
    /// only later: retrying at once cannot help.
    pub fn pauses_org(&self) -> bool {
        matches!(
            self,
            SalesforceError::LimitExceeded { .. } | SalesforceError::ApiBudgetExhausted { .. }
        )
    }

    /// Whether the query should be split into smaller ranges and run again (`QUERY_TIMEOUT`).
    pub fn needs_split(&self) -> bool {
        matches!(self, SalesforceError::QueryTimeout { .. })
    }

    /// Whether Bulk API refused the object (`400 INVALIDENTITY`): query it through REST instead.
    pub fn is_bulk_unsupported(&self) -> bool {
        matches!(self, SalesforceError::Api { status: 400, code, .. } if code == "INVALIDENTITY")
    }

    /// Whether the same request may succeed if sent again at once: a broken or timed-out
    /// connection, a 5xx or 429 answer, a page shorter than announced.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            SalesforceError::Transport { .. }
            | SalesforceError::TruncatedPage { .. }
            | SalesforceError::GarbledResponse { .. } => true,
            SalesforceError::Api { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// Whether the request certainly never reached Salesforce (the connection could not be
    /// established), so even a non-idempotent write may be sent again.
    pub(crate) fn is_unsent(&self) -> bool {
        matches!(self, SalesforceError::Transport { source, .. } if source.is_connect())
    }

    /// Ingest job failures that a later run may not hit: lock contention and timeouts.
    fn ingest_failure_class(message: &str) -> ErrorClass {
        const TRANSIENT: &[&str] = &["UNABLE_TO_LOCK_ROW", "TooManyLockFailure", "Timeout"];
        if TRANSIENT.iter().any(|t| message.contains(t)) {
            ErrorClass::Retryable
        } else {
            ErrorClass::Permanent
        }
    }

    fn api_class(status: u16, code: &str, message: &str) -> ErrorClass {
        let throttled = RETRYABLE_CODES.iter().any(|c| code.eq_ignore_ascii_case(c))
            || message.contains("ConcurrentRequests");
        if status >= 500 || status == 429 || throttled {
            ErrorClass::Retryable
        } else {
            ErrorClass::Permanent
        }
    }
}

impl Classify for SalesforceError {
    fn class(&self) -> ErrorClass {
        match self {
            SalesforceError::Api {
                status,
                code,
                message,
                ..
            } => Self::api_class(*status, code, message),
            SalesforceError::SoapFault { code, message, .. } => Self::api_class(200, code, message),
            SalesforceError::IngestJobFailed { message, .. } => Self::ingest_failure_class(message),
            SalesforceError::TokenEndpoint { status, .. } if *status >= 500 || *status == 429 => {
                ErrorClass::Retryable
            }
            SalesforceError::Transport { .. }
            | SalesforceError::SessionRejected { .. }
            | SalesforceError::JobTimeout { .. }
            | SalesforceError::TruncatedPage { .. }
            | SalesforceError::GarbledResponse { .. }
            | SalesforceError::LimitExceeded { .. }
            | SalesforceError::ApiBudgetExhausted { .. }
            | SalesforceError::ChecksumMismatch { .. } => ErrorClass::Retryable,
            SalesforceError::AuthRejected { .. }
            | SalesforceError::JwtRejected { .. }
            | SalesforceError::TokenEndpoint { .. }
            | SalesforceError::JobFailed { .. }
            | SalesforceError::InvalidCsv { .. }
            | SalesforceError::UnexpectedResponse { .. }
            | SalesforceError::QueryTimeout { .. }
            | SalesforceError::SplitExhausted { .. }
            | SalesforceError::NoSystemModstamp { .. }
            | SalesforceError::Config(_)
            | SalesforceError::IngestRowTooLarge { .. }
            | SalesforceError::InvalidWriteRequest { .. }
            | SalesforceError::NotCorrelatable { .. } => ErrorClass::Permanent,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str, message: &str) -> SalesforceError {
        SalesforceError::Api {
            operation: "test".into(),
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    #[test]
    fn classification_follows_the_reference_table() {
        assert_eq!(
            api(503, "SERVER_UNAVAILABLE", "").class(),
            ErrorClass::Retryable
        );
        assert_eq!(
            api(500, "UNKNOWN_EXCEPTION", "").class(),
            ErrorClass::Retryable
        );
        assert_eq!(
            api(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded."
            )
            .class(),
            ErrorClass::Retryable
        );
        assert_eq!(
            api(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                "ConcurrentRequests (Concurrent API Requests) Limit exceeded."
            )
            .class(),
            ErrorClass::Retryable
        );
        assert_eq!(
            api(400, "MALFORMED_QUERY", "").class(),
            ErrorClass::Permanent
        );
        assert_eq!(
            api(
                400,
                "INVALIDJOB",
                "FeatureNotEnabled : Binary field not supported"
            )
            .class(),
            ErrorClass::Permanent
        );
        assert_eq!(api(404, "NOT_FOUND", "").class(), ErrorClass::Permanent);
        assert_eq!(api(409, "INVALIDJOB", "").class(), ErrorClass::Permanent);
        let auth = SalesforceError::AuthRejected {
            login_url: "x".into(),
            code: "invalid_client".into(),
            description: "d".into(),
        };
        assert_eq!(auth.class(), ErrorClass::Permanent);
        assert!(auth.to_string().contains("client secret"));
    }

    #[test]
    fn new_errors_are_classified_and_name_the_fix() {
        let limit = SalesforceError::LimitExceeded {
            operation: "describe".into(),
            message: "TotalRequests Limit exceeded.".into(),
        };
        assert_eq!(limit.class(), ErrorClass::Retryable);
        assert!(limit.pauses_org() && !limit.is_transient());
        assert!(limit.to_string().contains("pause"));
        let budget = SalesforceError::ApiBudgetExhausted {
            operation: "describe".into(),
            used: 80,
            max: 100,
            budget: 80,
        };
        assert_eq!(budget.class(), ErrorClass::Retryable);
        assert!(budget.pauses_org() && budget.to_string().contains("max_api_share"));
        let timeout = SalesforceError::QueryTimeout {
            job_id: "750x".into(),
            message: "QUERY_TIMEOUT".into(),
        };
        assert_eq!(timeout.class(), ErrorClass::Permanent);
        assert!(timeout.needs_split() && timeout.to_string().contains("split"));
        assert!(api(400, "INVALIDENTITY", "").is_bulk_unsupported());
        assert!(api(503, "", "").is_transient() && !api(400, "X", "").is_transient());
    }
}
