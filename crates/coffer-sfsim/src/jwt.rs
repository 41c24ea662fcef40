//! The OAuth 2.0 JWT bearer flow of the token endpoint: an RS256 assertion whose `iss` is the
//! connected app's consumer key, `sub` a user pre-authorized for the app (with the public key of
//! the certificate uploaded to the app), `aud` the login URL and `exp` in the future.
//!
//! Failures answer as Salesforce does: `invalid_client_id` for an unknown consumer key,
//! `invalid_grant` for an unapproved user, a bad signature, a wrong audience or an expired
//! assertion.

use serde::Deserialize;

use crate::server::{Sim, lock};

#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
}

/// An OAuth error: (`error`, `error_description`).
pub type OAuthRefusal = (&'static str, &'static str);

/// Checks `assertion`; on success returns the username it authenticates.
pub fn verify(sim: &Sim, assertion: &str) -> Result<String, OAuthRefusal> {
    let invalid = ("invalid_grant", "invalid assertion");
    let claims = unverified_claims(assertion).ok_or(invalid)?;
    if claims.iss != sim.client_id {
        return Err(("invalid_client_id", "client identifier invalid"));
    }
    let key_pem = lock(&sim.jwt_users)
        .get(&claims.sub)
        .cloned()
        .ok_or(("invalid_grant", "user hasn't approved this consumer"))?;
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(key_pem.as_bytes()).map_err(|_| invalid)?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[sim.base_url.as_str()]);
    validation.set_issuer(&[sim.client_id.as_str()]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    validation.leeway = 180;
    jsonwebtoken::decode::<Claims>(assertion, &key, &validation)
        .map(|data| data.claims.sub)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                ("invalid_grant", "expired authorization code")
            }
            jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                ("invalid_grant", "audience is invalid")
            }
            _ => invalid,
        })
}

/// The claims of `assertion` read without checking the signature (to find the user's key).
fn unverified_claims(assertion: &str) -> Option<Claims> {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.insecure_disable_signature_validation();
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_required_spec_claims::<&str>(&[]);
    let key = jsonwebtoken::DecodingKey::from_secret(&[]);
    jsonwebtoken::decode::<Claims>(assertion, &key, &validation)
        .ok()
        .map(|d| d.claims)
}
