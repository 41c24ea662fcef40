//! The JWT bearer flow against the simulator: a pre-authorized user connects and renews its
//! session with a fresh assertion; a wrong key, an unapproved user, a wrong audience and a bad
//! key are refused permanently with messages that name the fix, and keys never print.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use coffer_core::secret::SecretString;
use coffer_core::{Classify, ErrorClass, OrgId};
use coffer_salesforce::{ClientOptions, JwtBearer, SalesforceClient, SalesforceError};
use coffer_sfsim::{OrgSeed, SimConfig, SimHandle};

const KEY: &str = include_str!("fixtures/jwt-test-key.pem");
const PUBLIC_KEY: &str = include_str!("fixtures/jwt-test-key.pub.pem");
const OTHER_KEY: &str = include_str!("fixtures/jwt-other-key.pem");
const USER: &str = "integration@acme.example";

async fn sim() -> SimHandle {
    let org = OrgSeed::new(OrgId::new("00D5g000004XyZaEAK").unwrap(), 7, 3, 1);
    let sim = coffer_sfsim::start(SimConfig::local(org)).await.unwrap();
    sim.approve_jwt_user(USER, PUBLIC_KEY);
    sim
}

fn jwt(sim: &SimHandle, key: &str) -> JwtBearer {
    JwtBearer {
        login_url: sim.base_url(),
        client_id: "sfsim-client-id".to_owned(),
        username: USER.to_owned(),
        audience: sim.base_url(),
        private_key_pem: SecretString::from(key.to_owned()),
        api_version: "62.0".to_owned(),
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        poll_initial: Duration::from_millis(5),
        retry_initial: Duration::from_millis(5),
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn jwt_bearer_connects_and_renews_expired_sessions() {
    let sim = sim().await;
    let client = SalesforceClient::connect_jwt(jwt(&sim, KEY), options())
        .await
        .unwrap();
    assert_eq!(client.instance_url(), sim.base_url());
    assert!(!client.describe_global().await.unwrap().is_empty());
    sim.expire_tokens();
    assert!(!client.describe_global().await.unwrap().is_empty());
    let shown = format!("{client:?} {:?}", jwt(&sim, KEY));
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    for token in sim.active_tokens() {
        assert!(!shown.contains(&token));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn rejected_assertions_are_permanent_and_name_the_fix() {
    let sim = sim().await;
    let err = SalesforceClient::connect_jwt(jwt(&sim, OTHER_KEY), options())
        .await
        .unwrap_err();
    assert!(
        matches!(err, SalesforceError::JwtRejected { .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), Some("invalid_grant"));
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(!format!("{err:?}").contains("PRIVATE KEY"));

    let mut stranger = jwt(&sim, KEY);
    stranger.username = "someone@acme.example".to_owned();
    let err = SalesforceClient::connect_jwt(stranger, options())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("hasn't approved"), "{err}");

    let mut wrong_aud = jwt(&sim, KEY);
    wrong_aud.audience = "https://login.salesforce.com".to_owned();
    let err = SalesforceClient::connect_jwt(wrong_aud, options())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("invalid_grant"), "{err:?}");

    let mut wrong_app = jwt(&sim, KEY);
    wrong_app.client_id = "not-the-app".to_owned();
    let err = SalesforceClient::connect_jwt(wrong_app, options())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("invalid_client_id"), "{err:?}");

    let err = SalesforceClient::connect_jwt(jwt(&sim, "not a key"), options())
        .await
        .unwrap_err();
    assert!(matches!(err, SalesforceError::Config(_)), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    sim.shutdown().await;
}
