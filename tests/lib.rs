//! Helpers shared by the end-to-end tests: running a worker against a test environment,
//! publishing jobs, waiting for their effects, and reading a bucket independently of Coffer's
//! own storage code.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use coffer_catalog::BackupRecord;
use coffer_core::JobId;
use coffer_proto::v1::{BackupKind, BackupRequested, JobEnvelope, job_envelope::Job};
use coffer_queue::{Broker, DeadLetter, OutgoingJob, Publisher};
use coffer_testkit::TestEnv;
use coffer_worker::{Worker, WorkerSettings};
use tokio_util::sync::CancellationToken;

/// A worker consuming the test's queues until dropped.
pub struct RunningWorker {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningWorker {
    /// Stops consuming and waits for the consumer to return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// Worker settings for tests: small parts so that even a small org spans several.
pub fn small_part_settings(env: &TestEnv) -> WorkerSettings {
    WorkerSettings {
        max_part_bytes: 4 * 1024,
        salesforce_page_size: 25,
        ..WorkerSettings::new(env.s3.clone())
    }
}

/// Starts a worker on the test's queues.
pub async fn start_worker(
    env: &TestEnv,
    settings: WorkerSettings,
) -> anyhow::Result<RunningWorker> {
    let broker = env.broker().await?;
    let worker = Worker::new(env.catalog.clone(), settings).with_events(broker.publisher().await?);
    let shutdown = CancellationToken::new();
    let (cfg, token) = (env.queue.clone(), shutdown.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = coffer_queue::run_consumer(cfg, Arc::new(worker), token).await {
            eprintln!("consumer stopped with error: {e}");
        }
    });
    Ok(RunningWorker { shutdown, task })
}

/// A full BackupRequested envelope for `tenant`/`org`.
pub fn backup_envelope(job_id: JobId, tenant: &str, org: &str) -> JobEnvelope {
    backup_envelope_of_kind(job_id, tenant, org, BackupKind::Full)
}

/// A BackupRequested envelope of `kind` for `tenant`/`org`.
pub fn backup_envelope_of_kind(
    job_id: JobId,
    tenant: &str,
    org: &str,
    kind: BackupKind,
) -> JobEnvelope {
    JobEnvelope {
        schema_version: coffer_proto::CURRENT_SCHEMA_VERSION,
        job_id: job_id.to_string(),
        requested_at_unix_ms: 0,
        requested_by: "test".to_owned(),
        traceparent: String::new(),
        job: Some(Job::BackupRequested(BackupRequested {
            tenant_id: tenant.to_owned(),
            org_id: org.to_owned(),
            kind: kind as i32,
            sobjects: vec![],
        })),
    }
}

/// Publishes an envelope as a job (with confirms).
pub async fn publish(publisher: &Publisher, envelope: &JobEnvelope) -> anyhow::Result<()> {
    let payload = coffer_proto::encode(envelope);
    let job = OutgoingJob {
        message_id: &envelope.job_id,
        kind: "backup_requested",
        tenant: None,
        payload: &payload,
    };
    Ok(publisher.publish_job(job).await?)
}

/// Publishes a full backup of `org` for `tenant` with a new job id; returns the job id.
pub async fn request_backup(broker: &Broker, tenant: &str, org: &str) -> anyhow::Result<JobId> {
    request_backup_of_kind(broker, tenant, org, BackupKind::Full).await
}

/// Publishes a backup of `kind` of `org` for `tenant` with a new job id; returns the job id.
pub async fn request_backup_of_kind(
    broker: &Broker,
    tenant: &str,
    org: &str,
    kind: BackupKind,
) -> anyhow::Result<JobId> {
    let job = JobId::generate();
    publish(
        &broker.publisher().await?,
        &backup_envelope_of_kind(job, tenant, org, kind),
    )
    .await?;
    Ok(job)
}

/// Waits for the next message on the test's dead-letter queue.
pub async fn next_dead_letter(broker: &Broker, timeout: Duration) -> anyhow::Result<DeadLetter> {
    eventually("a dead letter", timeout, || async {
        Ok(broker.get_dead_letter().await?)
    })
    .await
}

/// Waits until the backup of `job` is complete (or fails the test if it fails or times out).
pub async fn wait_for_backup(
    env: &TestEnv,
    job: JobId,
    timeout: Duration,
) -> anyhow::Result<BackupRecord> {
    env.wait_for_backup(job, timeout).await
}

/// Polls `check` until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every key under `prefix` in `bucket`, sorted.
pub async fn list_keys(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let mut keys = coffer_storage::list::list_keys(client, bucket, prefix).await?;
    keys.sort();
    Ok(keys)
}

/// An object read back: its bytes and what HEAD says about its encryption.
pub struct ReadObject {
    /// The bytes.
    pub body: Vec<u8>,
    /// `x-amz-server-side-encryption`.
    pub sse: Option<String>,
    /// `x-amz-server-side-encryption-aws-kms-key-id`.
    pub kms_key: Option<String>,
    /// Content-Length from HEAD.
    pub length: i64,
}

/// Reads one object with HEAD and GET.
pub async fn read_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<ReadObject> {
    let head = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .context("head object")?;
    let got = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .context("get object")?;
    let body = got.body.collect().await?.into_bytes().to_vec();
    Ok(ReadObject {
        body,
        sse: head.server_side_encryption().map(|s| s.as_str().to_owned()),
        kms_key: head.ssekms_key_id().map(str::to_owned),
        length: head.content_length().unwrap_or(-1),
    })
}

/// Decompresses a gzip CSV object into its header and rows.
pub fn gunzip_csv(body: &[u8]) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut text)
        .context("gunzip")?;
    let mut reader = csv::Reader::from_reader(text.as_slice());
    let header = reader.headers()?.iter().map(str::to_owned).collect();
    let rows = reader
        .records()
        .map(|r| r.map(|r| r.iter().map(str::to_owned).collect()))
        .collect::<Result<Vec<Vec<String>>, _>>()?;
    Ok((header, rows))
}

/// Rows of each sObject gathered from records parts, in part order.
pub type TablesByObject = BTreeMap<String, (Vec<String>, Vec<Vec<String>>)>;

/// Checks that `tables` (rows read back from a backup's parts, by object) hold exactly the
/// simulator's rows of every object, each once, in the org's columns.
pub fn assert_tables_equal_org(sim: &coffer_sfsim::SimHandle, mut tables: TablesByObject) {
    for name in sim.sobjects() {
        let (want_header, mut want) = sim.table(&name).expect("sim table");
        let (header, mut got) = tables
            .remove(&name)
            .unwrap_or_else(|| panic!("no records of {name} in the backup"));
        assert_eq!(header, want_header, "{name} columns");
        want.sort();
        got.sort();
        assert_eq!(got.len(), want.len(), "{name} row count");
        assert!(got == want, "{name} rows differ from the org's");
    }
    assert!(
        tables.is_empty(),
        "objects the org does not have: {:?}",
        tables.keys()
    );
}

/// Publishes `restore` as a RestoreRequested with a new job id; returns the job id.
pub async fn request_restore(
    broker: &Broker,
    restore: coffer_proto::v1::RestoreRequested,
) -> anyhow::Result<JobId> {
    let job = JobId::generate();
    let envelope = JobEnvelope {
        schema_version: coffer_proto::CURRENT_SCHEMA_VERSION,
        job_id: job.to_string(),
        requested_at_unix_ms: 0,
        requested_by: "test".to_owned(),
        traceparent: String::new(),
        job: Some(Job::RestoreRequested(restore)),
    };
    publish(&broker.publisher().await?, &envelope).await?;
    Ok(job)
}

/// Waits until the restore of `job` is complete (or planned, for a plan-only restore); fails
/// the test if it fails or times out.
pub async fn wait_for_restore(
    env: &TestEnv,
    job: JobId,
    timeout: Duration,
) -> anyhow::Result<coffer_catalog::RestoreRecord> {
    use coffer_catalog::RestoreState;
    eventually("the restore to finish", timeout, || async {
        let Some(restore) = env.catalog.restore_of_job(job).await? else {
            return Ok(None);
        };
        match restore.state {
            RestoreState::Complete | RestoreState::Planned => Ok(Some(restore)),
            RestoreState::Failed => bail!("restore failed: {:?}", restore.error),
            _ => Ok(None),
        }
    })
    .await
}
