//! The client handle: connection settings, the current session, and the one request path every
//! API call goes through (bearer token, error decoding, one re-mint on an expired session).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use coffer_core::secret::{ExposeSecret, SecretString};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::RwLock;

use crate::SalesforceError;
use crate::auth::{self, Session};

/// How to reach and authenticate to one org.
#[derive(Debug, Clone)]
pub struct OrgConnection {
    /// My Domain or login URL, e.g. `https://acme.my.salesforce.com`; the token endpoint is
    /// `{login_url}/services/oauth2/token`.
    pub login_url: String,
    /// The connected app's consumer key.
    pub client_id: String,
    /// The connected app's consumer secret.
    pub client_secret: SecretString,
    /// REST API version without the `v`, e.g. `62.0` (47.0 or later for Bulk API 2.0 query).
    pub api_version: String,
}

/// Tunables; [`Default`] suits production.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `maxRecords` per Bulk results page.
    pub max_records: usize,
    /// First wait before polling a new Bulk job.
    pub poll_initial: Duration,
    /// Longest wait between two polls (the wait doubles up to this).
    pub poll_max: Duration,
    /// Give up waiting for a Bulk job after this long (a retryable error).
    pub poll_timeout: Duration,
    /// Time limit of one HTTP request, body included.
    pub request_timeout: Duration,
    /// Time limit of establishing a connection.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            max_records: 50_000,
            poll_initial: Duration::from_millis(500),
            poll_max: Duration::from_secs(15),
            poll_timeout: Duration::from_secs(3 * 3600),
            request_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// A connected org. Cheap to clone; clones share the session.
#[derive(Clone)]
pub struct SalesforceClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    conn: OrgConnection,
    options: ClientOptions,
    instance_url: String,
    /// The current token and a generation counter, so concurrent 401s mint only once.
    session: RwLock<(SecretString, u64)>,
}

impl fmt::Debug for SalesforceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SalesforceClient")
            .field("login_url", &self.inner.conn.login_url)
            .field("instance_url", &self.inner.instance_url)
            .field("api_version", &self.inner.conn.api_version)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiErrorBody {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

/// The first 300 characters of a body, for error messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(300).collect()
}

fn normalize_version(v: &str) -> Result<String, SalesforceError> {
    let v = v.trim().trim_start_matches('v');
    let valid = v
        .split_once('.')
        .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
    if valid {
        Ok(v.to_owned())
    } else {
        Err(SalesforceError::Config(format!(
            "api version {v:?} is not like 62.0"
        )))
    }
}

impl SalesforceClient {
    /// Mints a token (client-credentials flow) and returns a client bound to its `instance_url`.
    pub async fn connect(conn: OrgConnection) -> Result<Self, SalesforceError> {
        Self::connect_with(conn, ClientOptions::default()).await
    }

    /// [`SalesforceClient::connect`] with explicit options.
    pub async fn connect_with(
        mut conn: OrgConnection,
        options: ClientOptions,
    ) -> Result<Self, SalesforceError> {
        conn.api_version = normalize_version(&conn.api_version)?;
        if url::Url::parse(&conn.login_url).is_err() {
            return Err(SalesforceError::Config(format!(
                "login url {:?} is not a url",
                conn.login_url
            )));
        }
        let http = reqwest::Client::builder()
            .gzip(true)
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .build()
            .map_err(|e| SalesforceError::Config(format!("cannot build http client: {e}")))?;
        let Session {
            access_token,
            instance_url,
        } = auth::mint(&http, &conn).await?;
        tracing::info!(instance_url = %instance_url, api_version = %conn.api_version, "connected to salesforce");
        let inner = Inner {
            http,
            conn,
            options,
            instance_url,
            session: RwLock::new((access_token, 0)),
        };
        Ok(SalesforceClient {
            inner: Arc::new(inner),
        })
    }

    /// The instance URL API calls go to (from the token response).
    pub fn instance_url(&self) -> &str {
        &self.inner.instance_url
    }

    /// The configured API version, e.g. `62.0`.
    pub fn api_version(&self) -> &str {
        &self.inner.conn.api_version
    }

    /// The options in effect.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// `{instance}/services/data/v{version}/{path}`.
    pub(crate) fn data_url(&self, version: &str, path: &str) -> String {
        format!(
            "{}/services/data/v{version}/{path}",
            self.inner.instance_url
        )
    }

    /// Sends the request `build` makes, with the bearer token; on a 401 mints a new token once and
    /// sends it again. Non-2xx answers become [`SalesforceError::Api`].
    pub(crate) async fn send(
        &self,
        operation: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, SalesforceError> {
        let (token, generation) = self.current_token().await;
        let resp = self.send_once(operation, &build, &token).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return check(operation, resp).await;
        }
        tracing::info!(
            operation,
            "salesforce session expired or invalid; minting a new token"
        );
        self.renew(generation).await?;
        let (token, _) = self.current_token().await;
        let resp = self.send_once(operation, &build, &token).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(SalesforceError::SessionRejected {
                operation: operation.to_owned(),
            });
        }
        check(operation, resp).await
    }

    async fn send_once(
        &self,
        operation: &str,
        build: &impl Fn(&reqwest::Client) -> RequestBuilder,
        token: &SecretString,
    ) -> Result<Response, SalesforceError> {
        build(&self.inner.http)
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(|source| SalesforceError::Transport {
                operation: operation.to_owned(),
                source,
            })
    }

    async fn current_token(&self) -> (SecretString, u64) {
        let guard = self.inner.session.read().await;
        (guard.0.clone(), guard.1)
    }

    /// Mints a new token unless another task already replaced generation `seen`.
    async fn renew(&self, seen: u64) -> Result<(), SalesforceError> {
        let mut guard = self.inner.session.write().await;
        if guard.1 != seen {
            return Ok(());
        }
        let session = auth::mint(&self.inner.http, &self.inner.conn).await?;
        if session.instance_url != self.inner.instance_url {
            tracing::warn!(
                old = %self.inner.instance_url,
                new = %session.instance_url,
                "salesforce instance url changed; keeping the old one until reconnect"
            );
        }
        *guard = (session.access_token, seen + 1);
        Ok(())
    }
}

/// Passes 2xx responses through; turns others into [`SalesforceError::Api`].
async fn check(operation: &str, resp: Response) -> Result<Response, SalesforceError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.bytes().await.unwrap_or_default();
    let (code, message) = decode_error(&body);
    tracing::debug!(operation, status = status.as_u16(), code = %code, "salesforce returned an error");
    Err(SalesforceError::Api {
        operation: operation.to_owned(),
        status: status.as_u16(),
        code,
        message,
    })
}

/// Reads `[{"errorCode","message"}]` or `{"errorCode","message"}`; falls back to the raw body.
fn decode_error(body: &[u8]) -> (String, String) {
    if let Ok(list) = serde_json::from_slice::<Vec<ApiErrorBody>>(body)
        && let Some(first) = list.into_iter().next()
    {
        return (first.error_code, first.message);
    }
    if let Ok(one) = serde_json::from_slice::<ApiErrorBody>(body) {
        return (one.error_code, one.message);
    }
    (String::new(), snippet(body))
}
