//! OAuth 2.0 client-credentials flow against the org's token endpoint.
//!
//! The token comes back with an `instance_url`; every API call goes there. No refresh token is
//! issued in this flow: when a session expires (`401 INVALID_SESSION_ID`) a new token is minted.

use coffer_core::secret::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::SalesforceError;
use crate::client::OrgConnection;

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
pub(crate) async fn mint(
    http: &reqwest::Client,
    conn: &OrgConnection,
) -> Result<Session, SalesforceError> {
    let login_url = conn.login_url.trim_end_matches('/').to_owned();
    let url = format!("{login_url}/services/oauth2/token");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", conn.client_id.as_str()),
        ("client_secret", conn.client_secret.expose_secret()),
    ];
    let resp = http
        .post(&url)
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form)
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
    Err(token_error(login_url, status.as_u16(), &body))
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

fn token_error(login_url: String, status: u16, body: &[u8]) -> SalesforceError {
    match serde_json::from_slice::<OAuthError>(body) {
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
