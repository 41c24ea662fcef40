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
    /// A Bulk query job did not finish within the configured wait.
    #[error("bulk query job {job_id} was still {state} after {waited_secs} seconds")]
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
            SalesforceError::Api { code, .. } | SalesforceError::AuthRejected { code, .. } => {
                Some(code)
            }
            _ => None,
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
            SalesforceError::TokenEndpoint { status, .. } if *status >= 500 || *status == 429 => {
                ErrorClass::Retryable
            }
            SalesforceError::Transport { .. }
            | SalesforceError::SessionRejected { .. }
            | SalesforceError::JobTimeout { .. }
            | SalesforceError::TruncatedPage { .. } => ErrorClass::Retryable,
            SalesforceError::AuthRejected { .. }
            | SalesforceError::TokenEndpoint { .. }
            | SalesforceError::JobFailed { .. }
            | SalesforceError::InvalidCsv { .. }
            | SalesforceError::UnexpectedResponse { .. }
            | SalesforceError::Config(_) => ErrorClass::Permanent,
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
}
