//! OAuth 2.0 server-to-server flows against the org's token endpoint: client credentials, and
//! the JWT bearer flow (an RS256 assertion with `iss` = consumer key, `sub` = username, `aud` =
//! login URL, `exp` a few minutes ahead).
//!
//! The token comes back with an `instance_url`; every API call goes there. Neither flow issues a
//! refresh token: when a session expires (`401 INVALID_SESSION_ID`) a new token is minted.

use std::time::Duration;

use coffer_core::secret::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::SalesforceError;
use crate::client::{JwtBearer, OrgConnection};

/// How long a JWT assertion is valid (Salesforce allows about 3 minutes of clock skew).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(180);

/// How a client proves who it is.
#[derive(Debug, Clone)]
pub(crate) enum Grant {
    /// `grant_type=client_credentials`.
    ClientCredentials(OrgConnection),
    /// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`.
    Jwt(JwtBearer),
}

impl Grant {
    /// The login URL (token endpoint host).
    pub(crate) fn login_url(&self) -> &str {
        match self {
            Grant::ClientCredentials(c) => &c.login_url,
            Grant::Jwt(j) => &j.login_url,
        }
    }

    /// The configured API version.
    pub(crate) fn api_version(&self) -> &str {
        match self {
            Grant::ClientCredentials(c) => &c.api_version,
            Grant::Jwt(j) => &j.api_version,
        }
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
}

/// Signs the JWT bearer assertion for `jwt`.
fn assertion(jwt: &JwtBearer) -> Result<String, SalesforceError> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(jwt.private_key_pem.expose_secret().as_bytes())
        .map_err(|e| {
            SalesforceError::Config(format!(
                "the jwt private key is not an rsa key in pem form ({e}); give the key whose certificate is uploaded to the connected app"
            ))
        })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let claims = Claims {
        iss: &jwt.client_id,
        sub: &jwt.username,
        aud: &jwt.audience,
        exp: (now + ASSERTION_LIFETIME).as_secs(),
    };
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|e| SalesforceError::Config(format!("cannot sign the jwt assertion: {e}")))
}

/// Mints a token with the configured grant.
pub(crate) async fn mint_with(
    http: &reqwest::Client,
    grant: &Grant,
) -> Result<Session, SalesforceError> {
    match grant {
        Grant::ClientCredentials(conn) => mint(http, conn).await,
        Grant::Jwt(jwt) => mint_jwt(http, jwt).await,
    }
}

/// Mints a token with the JWT bearer grant.
async fn mint_jwt(http: &reqwest::Client, jwt: &JwtBearer) -> Result<Session, SalesforceError> {
    let login_url = jwt.login_url.trim_end_matches('/').to_owned();
    let assertion = SecretString::from(assertion(jwt)?);
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", assertion.expose_secret()),
    ];
    token_request(http, login_url, &form, true).await
}

/// A minted session. The token is held as a secret and never formatted.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The bearer token.
    pub access_token: SecretString,
    /// Where API calls go.
    pub instance_url: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    instance_url: String,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// OAuth error codes meaning the credentials or the app's setup are wrong.
const REJECTED: &[&str] = &[
    "invalid_client",
    "invalid_client_id",
    "invalid_grant",
    "unauthorized_client",
];

/// Mints a token with the client-credentials grant.
async fn mint(http: &reqwest::Client, conn: &OrgConnection) -> Result<Session, SalesforceError> {
    let login_url = conn.login_url.trim_end_matches('/').to_owned();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", conn.client_id.as_str()),
        ("client_secret", conn.client_secret.expose_secret()),
    ];
    token_request(http, login_url, &form, false).await
}

/// POSTs `form` to the token endpoint and reads the session or the OAuth error.
async fn token_request(
    http: &reqwest::Client,
    login_url: String,
    form: &[(&str, &str)],
    jwt: bool,
) -> Result<Session, SalesforceError> {
    let url = format!("{login_url}/services/oauth2/token");
    let resp = http
        .post(&url)
        .header(reqwest::header::ACCEPT, "application/json")
        .form(form)
        .send()
        .await
        .map_err(|source| SalesforceError::Transport {
            operation: "mint access token".into(),
            source,
        })?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|source| SalesforceError::Transport {
            operation: "mint access token".into(),
            source,
        })?;
    if status.is_success() {
        return parse_session(&login_url, status.as_u16(), &body);
    }
    Err(token_error(login_url, status.as_u16(), &body, jwt))
}

fn parse_session(login_url: &str, status: u16, body: &[u8]) -> Result<Session, SalesforceError> {
    let token: TokenResponse =
        serde_json::from_slice(body).map_err(|e| SalesforceError::TokenEndpoint {
            login_url: login_url.to_owned(),
            status,
            detail: format!("token response is not the documented json: {e}"),
        })?;
    let instance_url = token.instance_url.trim_end_matches('/').to_owned();
    if url::Url::parse(&instance_url).is_err() {
        return Err(SalesforceError::TokenEndpoint {
            login_url: login_url.to_owned(),
            status,
            detail: format!("instance_url {instance_url:?} is not a url"),
        });
    }
    tracing::debug!(login_url, instance_url = %instance_url, "minted salesforce access token");
    Ok(Session {
        access_token: token.access_token,
        instance_url,
    })
}

fn token_error(login_url: String, status: u16, body: &[u8], jwt: bool) -> SalesforceError {
    match serde_json::from_slice::<OAuthError>(body) {
        Ok(e) if jwt && REJECTED.contains(&e.error.as_str()) => SalesforceError::JwtRejected {
            login_url,
            code: e.error,
            description: e.error_description,
        },
        Ok(e) if REJECTED.contains(&e.error.as_str()) => SalesforceError::AuthRejected {
            login_url,
            code: e.error,
            description: e.error_description,
        },
        Ok(e) => SalesforceError::TokenEndpoint {
            login_url,
            status,
            detail: format!("{}: {}", e.error, e.error_description),
        },
        Err(_) => SalesforceError::TokenEndpoint {
            login_url,
            status,
            detail: crate::client::snippet(body),
        },
    }
}
