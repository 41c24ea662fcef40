//! The client handle: connection settings, the current session, and the one request path every
//! API call goes through: the API budget check, the rate limiter and the concurrency bound, the
//! bearer token, one re-mint on an expired session, `Sforce-Limit-Info` accounting and error
//! decoding. `SalesforceClient::with_retries` retries transient failures with backoff.

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument as _;

use coffer_core::secret::{ExposeSecret, SecretString};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::{RwLock, Semaphore};

use crate::SalesforceError;
use crate::auth::{self, Grant, Session};

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

/// How to reach and authenticate to one org with the OAuth 2.0 JWT bearer flow. The user must be
/// pre-authorized for the connected app, whose certificate matches `private_key_pem`.
#[derive(Debug, Clone)]
pub struct JwtBearer {
    /// Where the token endpoint is: `https://login.salesforce.com`, `https://test.salesforce.com`
    /// or the My Domain URL; the token endpoint is `{login_url}/services/oauth2/token`.
    pub login_url: String,
    /// The connected app's consumer key (the assertion's `iss`).
    pub client_id: String,
    /// The Salesforce username to act as (the assertion's `sub`).
    pub username: String,
    /// The assertion's `aud`: `https://login.salesforce.com`, `https://test.salesforce.com` or a
    /// community URL.
    pub audience: String,
    /// The RSA private key (PKCS#1 or PKCS#8 PEM) whose certificate is uploaded to the app.
    pub private_key_pem: SecretString,
    /// REST API version without the `v`, e.g. `62.0`.
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
    /// Attempts of an idempotent request (page, poll, describe) before a transient failure
    /// (5xx, 429, a broken connection, a short page) is returned; 1 disables retries.
    pub retry_attempts: u32,
    /// First wait before retrying a transient failure (the wait doubles up to `retry_max`).
    pub retry_initial: Duration,
    /// Longest wait between two retries.
    pub retry_max: Duration,
    /// Share of the org's daily API allocation (`Sforce-Limit-Info: api-usage=N/MAX`) this client
    /// may use; past it calls fail with [`SalesforceError::ApiBudgetExhausted`]. `None`: no cap.
    pub max_api_share: Option<f64>,
    /// Requests per second this client sends at most (bursts up to the same number); `None`:
    /// unlimited.
    pub max_requests_per_second: Option<NonZeroU32>,
    /// Requests this client has in flight at most (until the response headers arrive).
    pub max_concurrent_requests: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            max_records: 50_000,
            poll_initial: Duration::from_millis(250),
            poll_max: Duration::from_secs(15),
            poll_timeout: Duration::from_secs(3 * 3600),
            request_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(15),
            retry_attempts: 5,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            max_api_share: Some(0.8),
            max_requests_per_second: NonZeroU32::new(25),
            max_concurrent_requests: 8,
        }
    }
}

/// API usage as the last response's `Sforce-Limit-Info: api-usage=USED/MAX` reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiUsage {
    /// Calls made in the rolling 24 hours.
    pub used: u64,
    /// The org's daily allocation.
    pub max: u64,
}

impl ApiUsage {
    /// Reads `api-usage=18/5000` out of a `Sforce-Limit-Info` value (other entries such as
    /// `api-bursts=` or `per-app-api-usage=` are ignored).
    pub fn parse(header: &str) -> Option<ApiUsage> {
        header
            .split([',', ';'])
            .filter_map(|part| part.trim().strip_prefix("api-usage="))
            .find_map(|v| {
                let (used, max) = v.split_once('/')?;
                Some(ApiUsage {
                    used: used.trim().parse().ok()?,
                    max: max.trim().parse().ok()?,
                })
            })
    }
}

/// A connected org. Cheap to clone; clones share the session.
#[derive(Clone)]
pub struct SalesforceClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    grant: Grant,
    api_version: String,
    options: ClientOptions,
    instance_url: String,
    /// The current token and a generation counter, so concurrent 401s mint only once.
    session: RwLock<(SecretString, u64)>,
    /// The latest `Sforce-Limit-Info` usage seen.
    usage: Mutex<Option<ApiUsage>>,
    /// Request rate limiter, if configured.
    limiter: Option<DefaultDirectRateLimiter>,
    /// Bounds requests in flight.
    permits: Semaphore,
}

impl fmt::Debug for SalesforceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SalesforceClient")
            .field("login_url", &self.inner.grant.login_url())
            .field("instance_url", &self.inner.instance_url)
            .field("api_version", &self.inner.api_version)
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
        conn: OrgConnection,
        options: ClientOptions,
    ) -> Result<Self, SalesforceError> {
        Self::connect_grant(Grant::ClientCredentials(conn), options).await
    }

    /// Mints a token with the JWT bearer flow and returns a client bound to its `instance_url`;
    /// expired sessions are renewed with a fresh assertion.
    pub async fn connect_jwt(
        jwt: JwtBearer,
        options: ClientOptions,
    ) -> Result<Self, SalesforceError> {
        Self::connect_grant(Grant::Jwt(jwt), options).await
    }

    async fn connect_grant(grant: Grant, options: ClientOptions) -> Result<Self, SalesforceError> {
        let api_version = normalize_version(grant.api_version())?;
        if url::Url::parse(grant.login_url()).is_err() {
            return Err(SalesforceError::Config(format!(
                "login url {:?} is not a url",
                grant.login_url()
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
        } = auth::mint_with(&http, &grant).await?;
        tracing::info!(instance_url = %instance_url, api_version = %api_version, "connected to salesforce");
        let limiter = options
            .max_requests_per_second
            .map(|rps| RateLimiter::direct(Quota::per_second(rps)));
        let permits = Semaphore::new(options.max_concurrent_requests.max(1));
        let inner = Inner {
            http,
            grant,
            api_version,
            options,
            instance_url,
            session: RwLock::new((access_token, 0)),
            usage: Mutex::new(None),
            limiter,
            permits,
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
        &self.inner.api_version
    }

    /// The options in effect.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The org's API usage as the latest response reported it (`None` before any API call).
    pub fn api_usage(&self) -> Option<ApiUsage> {
        *lock(&self.inner.usage)
    }

    /// `{instance}/services/data/v{version}/{path}`.
    pub(crate) fn data_url(&self, version: &str, path: &str) -> String {
        format!(
            "{}/services/data/v{version}/{path}",
            self.inner.instance_url
        )
    }

    /// Sends the request `build` makes, with the bearer token; on a 401 mints a new token once and
    /// sends it again. Refused up front past the API budget; waits for the rate limiter and a
    /// concurrency permit (held until the response headers arrive). Records `Sforce-Limit-Info`.
    /// Non-2xx answers (but `304`) become [`SalesforceError::Api`] or
    /// [`SalesforceError::LimitExceeded`].
    pub(crate) async fn send(
        &self,
        operation: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, SalesforceError> {
        self.check_budget(operation)?;
        // The semaphore is never closed; without a permit the request still goes out.
        let _permit = self.inner.permits.acquire().await.ok();
        if let Some(limiter) = &self.inner.limiter {
            limiter.until_ready().await;
        }
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
        let transport = |source| SalesforceError::Transport {
            operation: operation.to_owned(),
            source,
        };
        let request = build(&self.inner.http)
            .bearer_auth(token.expose_secret())
            .build()
            .map_err(transport)?;
        let api = api_of(request.url().path());
        let span =
            tracing::info_span!("salesforce", operation, api, status = tracing::field::Empty);
        let resp = self
            .inner
            .http
            .execute(request)
            .instrument(span.clone())
            .await
            .map_err(transport)?;
        span.record("status", resp.status().as_u16());
        metrics::counter!(coffer_core::metrics::SALESFORCE_API_CALLS_TOTAL, "api" => api)
            .increment(1);
        self.record_usage(&resp);
        Ok(resp)
    }

    /// Remembers the `api-usage` of `Sforce-Limit-Info`, if the response carries it.
    fn record_usage(&self, resp: &Response) {
        let usage = resp
            .headers()
            .get("Sforce-Limit-Info")
            .and_then(|v| v.to_str().ok())
            .and_then(ApiUsage::parse);
        if let Some(usage) = usage {
            if usage.max > 0 {
                metrics::histogram!(coffer_core::metrics::SALESFORCE_API_USAGE_RATIO)
                    .record(usage.used as f64 / usage.max as f64);
            }
            *lock(&self.inner.usage) = Some(usage);
        }
    }

    /// Refuses the call once the org's usage has reached the configured share of its allocation.
    fn check_budget(&self, operation: &str) -> Result<(), SalesforceError> {
        let (Some(share), Some(usage)) = (self.inner.options.max_api_share, self.api_usage())
        else {
            return Ok(());
        };
        let budget = (usage.max as f64 * share).floor() as u64;
        if usage.max > 0 && usage.used >= budget {
            tracing::warn!(
                operation,
                used = usage.used,
                max = usage.max,
                budget,
                "salesforce api budget exhausted; refusing the call"
            );
            return Err(SalesforceError::ApiBudgetExhausted {
                operation: operation.to_owned(),
                used: usage.used,
                max: usage.max,
                budget,
            });
        }
        Ok(())
    }

    /// Runs `attempt` until it succeeds, fails with a non-transient error, or has been tried
    /// [`ClientOptions::retry_attempts`] times, waiting a doubling delay between tries. Only for
    /// idempotent work (GETs, re-fetching a page by its locator).
    pub(crate) async fn with_retries<T, F, Fut>(
        &self,
        operation: &str,
        attempt: F,
    ) -> Result<T, SalesforceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SalesforceError>>,
    {
        self.with_retries_when(operation, SalesforceError::is_transient, attempt)
            .await
    }

    /// [`SalesforceClient::with_retries`] for a write that is not idempotent: it is sent again
    /// only if it certainly never reached Salesforce (the connection could not be established).
    pub(crate) async fn with_unsent_retries<T, F, Fut>(
        &self,
        operation: &str,
        attempt: F,
    ) -> Result<T, SalesforceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SalesforceError>>,
    {
        self.with_retries_when(operation, SalesforceError::is_unsent, attempt)
            .await
    }

    async fn with_retries_when<T, F, Fut>(
        &self,
        operation: &str,
        retryable: fn(&SalesforceError) -> bool,
        mut attempt: F,
    ) -> Result<T, SalesforceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SalesforceError>>,
    {
        let options = &self.inner.options;
        let mut delay = options.retry_initial;
        let mut tries = 1;
        loop {
            match attempt().await {
                Err(e) if tries < options.retry_attempts.max(1) && retryable(&e) => {
                    tracing::warn!(operation, attempt = tries, error = %e, "transient salesforce failure; retrying");
                    metrics::counter!(coffer_core::metrics::RETRIES_TOTAL, "boundary" => "salesforce")
                        .increment(1);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(options.retry_max);
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// Sends a request that carries the session in its body rather than in a bearer header
    /// (the SOAP `SessionHeader`): `build` receives the token. Keeps to the API budget, the rate
    /// limiter and the concurrency bound like [`SalesforceClient::send`], but returns the response
    /// whatever its status, with the session generation used, because SOAP reports an expired
    /// session as a fault; the caller renews with [`SalesforceClient::renew_session`].
    pub(crate) async fn send_with_session(
        &self,
        operation: &str,
        build: impl Fn(&reqwest::Client, &SecretString) -> RequestBuilder,
    ) -> Result<(Response, u64), SalesforceError> {
        self.check_budget(operation)?;
        let _permit = self.inner.permits.acquire().await.ok();
        if let Some(limiter) = &self.inner.limiter {
            limiter.until_ready().await;
        }
        let (token, generation) = self.current_token().await;
        let resp = build(&self.inner.http, &token)
            .send()
            .await
            .map_err(|source| SalesforceError::Transport {
                operation: operation.to_owned(),
                source,
            })?;
        self.record_usage(&resp);
        Ok((resp, generation))
    }

    /// Mints a new token unless another task already replaced session generation `seen` (as
    /// returned by [`SalesforceClient::send_with_session`]).
    pub(crate) async fn renew_session(&self, seen: u64) -> Result<(), SalesforceError> {
        self.renew(seen).await
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
        let session = auth::mint_with(&self.inner.http, &self.inner.grant).await?;
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

/// Locks a mutex, recovering the data if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Passes 2xx and 304 responses through; turns others into [`SalesforceError::Api`], or
/// [`SalesforceError::LimitExceeded`] for an exhausted daily allocation.
async fn check(operation: &str, resp: Response) -> Result<Response, SalesforceError> {
    let status = resp.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        return Ok(resp);
    }
    let body = resp.bytes().await.unwrap_or_default();
    let (code, message) = decode_error(&body);
    tracing::debug!(operation, status = status.as_u16(), code = %code, "salesforce returned an error");
    if code == "REQUEST_LIMIT_EXCEEDED" && !message.contains("ConcurrentRequests") {
        return Err(SalesforceError::LimitExceeded {
            operation: operation.to_owned(),
            message,
        });
    }
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

/// The API a request path belongs to, a bounded metric label: `bulk` (Bulk API 2.0 jobs),
/// `soap`, `blob` (file bodies), `auth` (tokens) or `rest`.
fn api_of(path: &str) -> &'static str {
    if path.contains("/jobs/query") || path.contains("/jobs/ingest") {
        "bulk"
    } else if path.contains("/services/Soap") {
        "soap"
    } else if path.contains("/services/oauth2") {
        "auth"
    } else if path.ends_with("/VersionData") || path.ends_with("/Body") {
        "blob"
    } else {
        "rest"
    }
}
