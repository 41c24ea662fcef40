//! Per-tenant retry isolation (issue 4): one tenant's throttling must not drain the retries of
//! the others.
//!
//! The SDK's standard retry mode bounds retries with a token bucket per retry partition
//! (aws-smithy-runtime `client/retries/token_bucket.rs` and `strategy/standard.rs`): 500 tokens;
//! a retry after a throttling error such as S3's `SlowDown` takes 5 (after another transient
//! error 10); a call that succeeds at once gives 1 back, a retry that succeeds returns its 5;
//! nothing refills the bucket over time. With too few tokens left the SDK does not retry: it logs
//! "not enough retry quota" (debug, `aws_smithy_runtime::client::retries`) and returns the error
//! of the attempt it made. Buckets live in one process-wide map keyed by partition name, so any
//! two clients built with the same partition share a bucket. `coffer_storage::access` builds
//! every client with the partition `coffer-tenant-{tenant}`.
//!
//! A fake S3 on 127.0.0.1 (path-style, as `S3Settings` with an endpoint addresses it) answers
//! every request for bucket `noisy` with 503 `SlowDown`, and for bucket `quiet` the first
//! request for a key with 503 `SlowDown`, the next ones with 200. Every call reads a key of its
//! own, so the server's count for a key is the number of attempts the SDK made for that call.
//!
//! 1. Tenant A's client (a [`ClientCache`] with vendor credentials) reads `noisy` keys, 40 calls
//!    at a time, until one call is given up after its first attempt: A's bucket is empty, after
//!    exactly 500 / 5 = 100 retries.
//! 2. Tenant B's client, from the same cache, same region, endpoint and connection pool, reads
//!    `quiet` keys: each succeeds on its second attempt, and no retry is refused for quota.
//! 3. Control: a client for B's storage acting under A's tenant id, so with A's partition. Its
//!    reads of `quiet` keys fail after one attempt, refused for quota: what every tenant would
//!    suffer if tenants shared a partition. The test thereby discriminates: with one partition
//!    for everyone, step 2 would fail the same way.
//!
//! Speed: the SDK's default backoff is kept (jittered, up to 1 s, then up to 2 s; `S3Settings`
//! has no retry knob and production needs none). Draining 100 retries one call at a time would
//! take over a minute of backoff; 40 concurrent calls a round drain the bucket in two rounds
//! (80 retries, then the last 20), about 3 s of backoff in all.
//!
//! The token buckets are process-wide: the tenant ids here must not be used by another test of
//! this binary.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context as _;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_smithy_types::error::display::DisplayErrorContext;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use coffer_storage::access::{ClientCache, SessionIdentity, StorageAccess, StorageSpec, connect};
use coffer_storage::{Encryption, S3Client, S3Settings, StaticKeys};
use secrecy::SecretString;

const REGION: &str = "eu-west-1";
const SLOW_DOWN: &str =
    "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
/// The SDK's token bucket: capacity, and the cost of a retry after a throttling error.
const BUCKET_TOKENS: u32 = 500;
const THROTTLING_RETRY_COST: u32 = 5;
/// Concurrent calls per round of tenant A.
const ROUND: usize = 40;
/// Calls of tenant B, and of the control client.
const QUIET_CALLS: usize = 8;
/// What the SDK logs when it does not retry for lack of tokens.
const QUOTA_REFUSED: &str = "not enough retry quota";

/// Attempts seen per (bucket, key).
#[derive(Clone, Default)]
struct FakeS3 {
    attempts: Arc<Mutex<HashMap<(String, String), u32>>>,
}

impl FakeS3 {
    /// Serves on 127.0.0.1 (any port); returns the endpoint URL.
    async fn start(&self) -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/{bucket}/{*key}", get(get_object))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(format!("http://{addr}"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), u32>> {
        self.attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn attempts(&self, bucket: &str, key: &str) -> u32 {
        self.lock()
            .get(&(bucket.to_owned(), key.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// (calls, attempts) seen for `bucket`.
    fn totals(&self, bucket: &str) -> (u32, u32) {
        self.lock()
            .iter()
            .filter(|((b, _), _)| b == bucket)
            .fold((0, 0), |(calls, attempts), (_, n)| {
                (calls + 1, attempts + n)
            })
    }
}

async fn get_object(
    State(s3): State<FakeS3>,
    Path((bucket, key)): Path<(String, String)>,
) -> Response {
    let seen = {
        let mut attempts = s3.lock();
        let n = attempts.entry((bucket.clone(), key)).or_insert(0);
        *n += 1;
        *n
    };
    match (bucket.as_str(), seen) {
        ("quiet", 2..) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            "ok",
        )
            .into_response(),
        ("noisy" | "quiet", _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/xml")],
            SLOW_DOWN,
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// GetObject: the body, or the error code (the error itself when it has no code).
async fn read(client: S3Client, bucket: &'static str, key: String) -> Result<String, String> {
    match client.get_object().bucket(bucket).key(&key).send().await {
        Ok(out) => {
            let body = out.body.collect().await.map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&body.into_bytes()).into_owned())
        }
        Err(e) => Err(e
            .code()
            .map_or_else(|| DisplayErrorContext(&e).to_string(), str::to_owned)),
    }
}

/// Reads all `keys` concurrently; outcomes in the order of `keys`.
async fn read_all(
    client: &S3Client,
    bucket: &'static str,
    keys: &[String],
) -> anyhow::Result<Vec<Result<String, String>>> {
    let calls: Vec<_> = keys
        .iter()
        .map(|key| tokio::spawn(read(client.clone(), bucket, key.clone())))
        .collect();
    let mut outcomes = Vec::with_capacity(calls.len());
    for call in calls {
        outcomes.push(call.await?);
    }
    Ok(outcomes)
}

fn spec(bucket: &str) -> StorageSpec {
    StorageSpec {
        region: REGION.to_owned(),
        endpoint: None,
        bucket: bucket.to_owned(),
        prefix: format!("base/{bucket}"),
        encryption: Encryption::SseS3,
        access: StorageAccess::Vendor,
    }
}

fn identity(tenant: &str) -> SessionIdentity {
    SessionIdentity {
        tenant: tenant.to_owned(),
        external_id: format!("coffer-org-{tenant}"),
        job: "retry-isolation".to_owned(),
    }
}

/// The SDK's retry logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// How many retries the SDK refused for lack of tokens so far.
    fn quota_refusals(&self) -> usize {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes)
            .matches(QUOTA_REFUSED)
            .count()
    }
}

/// Installs the capturing subscriber (once, globally: the SDK logs from runtime threads).
fn capture() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "aws_smithy_runtime::client::retries=debug",
            ))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        captured
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_throttling_leaves_another_tenants_retries_intact() -> anyhow::Result<()> {
    let logs = capture();
    let s3 = FakeS3::default();
    let endpoint = s3.start().await?;
    let base = S3Settings {
        region: REGION.to_owned(),
        endpoint: Some(endpoint),
        keys: Some(StaticKeys {
            access_key_id: "AKIDRETRYISOLATION".to_owned(),
            secret_access_key: SecretString::from("retry-isolation-secret".to_owned()),
        }),
    };
    let cache = ClientCache::new(base.clone());
    let (tenant_a, tenant_b) = (identity("tenant-a"), identity("tenant-b"));
    let a = cache.client(&spec("noisy"), &tenant_a).await?;
    let b = cache.client(&spec("quiet"), &tenant_b).await?;

    // 1. Tenant A is throttled until the SDK gives a call up without retrying.
    let mut given_up = None;
    let mut rounds = 0;
    while given_up.is_none() {
        anyhow::ensure!(rounds < 6, "A's retry quota never ran out");
        let keys: Vec<String> = (0..ROUND).map(|i| format!("a-{rounds}-{i}")).collect();
        for (key, outcome) in keys.iter().zip(read_all(&a, "noisy", &keys).await?) {
            assert_eq!(outcome, Err("SlowDown".to_owned()), "noisy {key}");
        }
        given_up = keys.into_iter().find(|k| s3.attempts("noisy", k) == 1);
        rounds += 1;
    }
    let given_up = given_up.context("checked above")?;
    let (a_calls, a_attempts) = s3.totals("noisy");
    let a_retries = a_attempts - a_calls;
    assert_eq!(
        a_retries * THROTTLING_RETRY_COST,
        BUCKET_TOKENS,
        "A's retries until its bucket ran dry ({a_calls} calls, {a_attempts} attempts)"
    );
    let after = "a-after".to_owned();
    assert_eq!(
        read(a.clone(), "noisy", after.clone()).await,
        Err("SlowDown".to_owned())
    );
    assert_eq!(s3.attempts("noisy", &after), 1, "A's bucket stays empty");
    let refused_for_a = logs.quota_refusals();
    assert!(refused_for_a > 0, "the SDK logged no quota refusal");

    // 2. Tenant B, same cache, region, endpoint and pool, is throttled once per call and retries.
    let keys: Vec<String> = (0..QUIET_CALLS).map(|i| format!("b-{i}")).collect();
    for (key, outcome) in keys.iter().zip(read_all(&b, "quiet", &keys).await?) {
        assert_eq!(outcome, Ok("ok".to_owned()), "B's quiet {key}");
        assert_eq!(s3.attempts("quiet", key), 2, "B's attempts for {key}");
    }
    assert_eq!(
        logs.quota_refusals(),
        refused_for_a,
        "B was refused a retry"
    );

    // 3. Control: B's storage under A's tenant id shares A's partition, and A's empty bucket.
    let shared = connect(&base, &spec("quiet"), &identity(&tenant_a.tenant)).await?;
    let keys: Vec<String> = (0..QUIET_CALLS).map(|i| format!("shared-{i}")).collect();
    for (key, outcome) in keys.iter().zip(read_all(&shared, "quiet", &keys).await?) {
        assert_eq!(
            outcome,
            Err("SlowDown".to_owned()),
            "shared-partition {key}"
        );
        assert_eq!(
            s3.attempts("quiet", key),
            1,
            "shared-partition attempts for {key}"
        );
    }
    assert_eq!(
        logs.quota_refusals(),
        refused_for_a + QUIET_CALLS,
        "every shared-partition call was refused its retry for quota"
    );

    eprintln!(
        "tenant A: {rounds} rounds, {a_calls} calls, {a_attempts} attempts, {a_retries} retries \
         ({} tokens) before {given_up} got 1 attempt, {refused_for_a} retries refused for quota; \
         tenant B: {QUIET_CALLS} calls, 2 attempts each, all 200; \
         shared partition: {QUIET_CALLS} calls, 1 attempt each, all SlowDown",
        a_retries * THROTTLING_RETRY_COST
    );
    Ok(())
}
