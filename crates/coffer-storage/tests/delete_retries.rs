//! How [`delete_objects`] treats refusals the emulator never produces: per-key throttling and
//! internal errors (sent again), and the number of requests in flight.
//!
//! The emulator refuses single keys of a DeleteObjects only for Object Lock (`AccessDenied`,
//! tested in `tests/delete.rs`); it never answers a key with `InternalError` or `SlowDown` as S3
//! does under load. So a fake S3 on 127.0.0.1 answers DeleteObjects (quiet) by key prefix:
//! `ok/` deleted; `flaky/` `InternalError` the first time, deleted after; `slow/` always
//! `SlowDown`; `denied/` always `AccessDenied`. It counts the requests for each key and the
//! requests it is serving at once, and answers for bucket `gone` with 404 `NoSuchBucket`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use coffer_storage::delete::{DELETE_RETRIES, ObjectVersion, delete_keys, delete_objects};
use coffer_storage::{S3Client, S3Settings, StaticKeys, StorageError};
use secrecy::SecretString;

#[derive(Default)]
struct Seen {
    per_key: HashMap<String, u32>,
    requests: u32,
    active: u32,
    max_active: u32,
}

#[derive(Clone, Default)]
struct FakeS3(Arc<Mutex<Seen>>);

impl FakeS3 {
    async fn start(&self) -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/{bucket}/", post(delete_objects_answer))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(format!("http://{addr}"))
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn attempts(&self, key: &str) -> u32 {
        self.seen().per_key.get(key).copied().unwrap_or(0)
    }
}

/// The keys between `<Key>` and `</Key>` in a Delete document.
fn keys_in(body: &str) -> Vec<String> {
    body.split("<Key>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
        .collect()
}

fn key_error(key: &str, code: &str) -> String {
    format!("<Error><Key>{key}</Key><Code>{code}</Code><Message>{code} for {key}</Message></Error>")
}

async fn delete_objects_answer(
    State(s3): State<FakeS3>,
    Path(bucket): Path<String>,
    body: String,
) -> Response {
    if bucket == "gone" {
        let xml = "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>";
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/xml")],
            xml,
        )
            .into_response();
    }
    let mut errors = String::new();
    {
        let mut seen = s3.seen();
        seen.requests += 1;
        seen.active += 1;
        seen.max_active = seen.max_active.max(seen.active);
        for key in keys_in(&body) {
            let n = seen.per_key.entry(key.clone()).or_insert(0);
            *n += 1;
            match key.split_once('/').map(|(p, _)| p) {
                Some("flaky") if *n == 1 => errors.push_str(&key_error(&key, "InternalError")),
                Some("slow") => errors.push_str(&key_error(&key, "SlowDown")),
                Some("denied") => errors.push_str(&key_error(&key, "AccessDenied")),
                _ => {}
            }
        }
    }
    // Long enough for concurrent requests to overlap.
    tokio::time::sleep(Duration::from_millis(100)).await;
    s3.seen().active -= 1;
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DeleteResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{errors}</DeleteResult>"
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/xml")],
        xml,
    )
        .into_response()
}

async fn client(endpoint: String) -> S3Client {
    let settings = S3Settings {
        region: "us-east-1".to_owned(),
        endpoint: Some(endpoint),
        keys: Some(StaticKeys {
            access_key_id: "AKIAFAKE".to_owned(),
            secret_access_key: SecretString::from("fake".to_owned()),
        }),
    };
    settings.s3_client().await
}

fn targets(prefix: &str, n: usize) -> Vec<ObjectVersion> {
    (0..n)
        .map(|i| ObjectVersion {
            key: format!("{prefix}/{i}"),
            version_id: None,
        })
        .collect()
}

#[tokio::test]
async fn retryable_refusals_are_sent_again_and_what_still_fails_is_returned() -> anyhow::Result<()>
{
    let s3 = FakeS3::default();
    let client = client(s3.start().await?).await;
    let mut all = targets("ok", 5);
    all.extend(targets("flaky", 3));
    all.extend(targets("slow", 2));
    all.extend(targets("denied", 2));

    let outcome = delete_objects(&client, "b", all, 4).await?;

    assert_eq!(outcome.deleted, 8, "ok and flaky keys deleted");
    let mut failed: Vec<(&str, &str)> = outcome
        .failed
        .iter()
        .map(|f| (f.key.as_str(), f.code.as_str()))
        .collect();
    failed.sort_unstable();
    assert_eq!(
        failed,
        vec![
            ("denied/0", "AccessDenied"),
            ("denied/1", "AccessDenied"),
            ("slow/0", "SlowDown"),
            ("slow/1", "SlowDown"),
        ]
    );
    assert_eq!(s3.attempts("ok/0"), 1);
    assert_eq!(s3.attempts("flaky/0"), 2, "sent again after InternalError");
    assert_eq!(s3.attempts("denied/0"), 1, "AccessDenied is not sent again");
    assert_eq!(
        s3.attempts("slow/0"),
        1 + DELETE_RETRIES,
        "SlowDown retried, then reported"
    );
    Ok(())
}

#[tokio::test]
async fn batches_of_a_thousand_go_at_most_in_flight_at_a_time() -> anyhow::Result<()> {
    let s3 = FakeS3::default();
    let client = client(s3.start().await?).await;

    let outcome = delete_objects(&client, "b", targets("ok", 5000), 2).await?;

    assert_eq!((outcome.deleted, outcome.failed.len()), (5000, 0));
    let seen = s3.seen();
    assert_eq!(seen.requests, 5, "five requests of 1,000 keys");
    assert_eq!(
        seen.max_active, 2,
        "two requests in flight at most, and at once"
    );
    Ok(())
}

#[tokio::test]
async fn a_permanent_failure_of_a_whole_request_is_an_error() -> anyhow::Result<()> {
    let s3 = FakeS3::default();
    let client = client(s3.start().await?).await;
    let err = delete_objects(&client, "gone", targets("ok", 3), 4)
        .await
        .expect_err("deleted from a missing bucket");
    assert!(matches!(err, StorageError::NoSuchBucket { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn delete_keys_fails_naming_a_refused_key_and_its_code() -> anyhow::Result<()> {
    let s3 = FakeS3::default();
    let client = client(s3.start().await?).await;
    let keys = vec!["ok/1".to_owned(), "denied/7".to_owned()];
    let err = delete_keys(&client, "b", &keys)
        .await
        .expect_err("a refused key went unreported");
    assert!(matches!(err, StorageError::AccessDenied { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("denied/7") && text.contains("AccessDenied"),
        "{text}"
    );
    assert_eq!(s3.attempts("ok/1"), 1);
    Ok(())
}
