//! Hostile input, end to end: messages on the jobs queue and Salesforce answers that are
//! malformed, oversized, lying or shaped to escape a prefix. Each must end with a clear,
//! classified reason (a dead letter with `x-coffer-reason` and `x-coffer-error-class`, or a
//! retried call that then succeeds), write nothing outside the right prefix of the bucket, and
//! leave every other tenant's work alone: a well-behaved tenant's backup runs alongside and must
//! complete untouched.

use std::collections::BTreeMap;
use std::time::Duration;

use coffer_catalog::{BackupState, JobState, Sse};
use coffer_core::{JobId, OrgId, TenantId};
use coffer_e2e::*;
use coffer_proto::v1::{
    BackupKind, BackupRequested, ExtractTaskRequested, JobEnvelope, RestoreMode, RestoreRequested,
    RestoreScope, RetentionSweepRequested, job_envelope::Job,
};
use coffer_queue::{DeadLetter, OutgoingJob, Publisher};
use coffer_sfsim::{OrgSeed, SimHandle};
use coffer_testkit::{TEST_ORG_ID, TestEnv, start_sim, start_sim_of};
use sha2::Digest as _;

const WAIT: Duration = Duration::from_secs(120);

/// The hostile tenant's org (tenant `acme`).
const ORG_A: &str = TEST_ORG_ID;
/// The well-behaved tenant's org (tenant `globex`).
const ORG_B: &str = "00D000000000002BBB";

/// An envelope of the current schema carrying `job`, with a new job id.
fn envelope(job: Job) -> JobEnvelope {
    envelope_with_id(JobId::generate().to_string(), job)
}

fn envelope_with_id(job_id: String, job: Job) -> JobEnvelope {
    JobEnvelope {
        schema_version: coffer_proto::CURRENT_SCHEMA_VERSION,
        job_id,
        requested_at_unix_ms: 0,
        requested_by: "hostile-input test".to_owned(),
        traceparent: String::new(),
        job: Some(job),
    }
}

fn backup(tenant: &str, org: &str, sobjects: &[&str]) -> Job {
    Job::BackupRequested(BackupRequested {
        tenant_id: tenant.to_owned(),
        org_id: org.to_owned(),
        kind: BackupKind::Full as i32,
        sobjects: sobjects.iter().map(|s| (*s).to_owned()).collect(),
    })
}

fn task(tenant: &str, org: &str, backup_id: &str) -> Job {
    Job::ExtractTaskRequested(ExtractTaskRequested {
        tenant_id: tenant.to_owned(),
        org_id: org.to_owned(),
        backup_id: backup_id.to_owned(),
        task_no: 1,
    })
}

fn restore(tenant: &str, org: &str, backup_id: &str, sobjects: &[&str], ids: &[&str]) -> Job {
    Job::RestoreRequested(RestoreRequested {
        tenant_id: tenant.to_owned(),
        org_id: org.to_owned(),
        backup_id: backup_id.to_owned(),
        as_of_unix_ms: 0,
        target_org_id: String::new(),
        scope: Some(RestoreScope {
            sobjects: sobjects.iter().map(|s| (*s).to_owned()).collect(),
            record_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            child_depth: 0,
            parent_depth: 0,
        }),
        mode: RestoreMode::Execute as i32,
    })
}

/// One hostile message: the label it is published under (its AMQP message id, so its dead
/// letter can be found), the `x-coffer-tenant` header, the body, and what its dead letter's
/// reason must say.
struct Hostile {
    label: String,
    tenant_header: Option<String>,
    payload: Vec<u8>,
    reason: &'static str,
}

impl Hostile {
    fn raw(label: &str, payload: Vec<u8>, reason: &'static str) -> Self {
        Hostile {
            label: label.to_owned(),
            tenant_header: None,
            payload,
            reason,
        }
    }

    fn job(label: &str, envelope: &JobEnvelope, reason: &'static str) -> Self {
        Self::raw(label, coffer_proto::encode(envelope), reason)
    }

    fn with_header(mut self, tenant: &str) -> Self {
        self.tenant_header = Some(tenant.to_owned());
        self
    }

    async fn publish(&self, publisher: &Publisher) -> anyhow::Result<()> {
        let job = OutgoingJob {
            message_id: &self.label,
            kind: "hostile",
            tenant: self.tenant_header.as_deref(),
            payload: &self.payload,
        };
        Ok(publisher.publish_job(job).await?)
    }
}

/// Publishes `envelope` as the real publishers do: with the tenant header.
async fn publish_as_tenant(
    publisher: &Publisher,
    tenant: &str,
    envelope: &JobEnvelope,
) -> anyhow::Result<()> {
    let payload = coffer_proto::encode(envelope);
    let job = OutgoingJob {
        message_id: &envelope.job_id,
        kind: "backup_requested",
        tenant: Some(tenant),
        payload: &payload,
    };
    Ok(publisher.publish_job(job).await?)
}

/// Dead letters until `n` are in, by message id (`None` for a message that had none).
async fn dead_letters(
    broker: &coffer_queue::Broker,
    n: usize,
) -> anyhow::Result<BTreeMap<Option<String>, DeadLetter>> {
    let mut letters = BTreeMap::new();
    let deadline = std::time::Instant::now() + WAIT;
    while letters.len() < n {
        match broker.get_dead_letter().await? {
            Some(letter) => {
                let previous = letters.insert(letter.message_id.clone(), letter);
                assert!(previous.is_none(), "a message was dead-lettered twice");
            }
            None if std::time::Instant::now() > deadline => {
                anyhow::bail!(
                    "{} dead letters after {WAIT:?}, expected {n}: {:?}",
                    letters.len(),
                    letters.keys().collect::<Vec<_>>()
                )
            }
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    Ok(letters)
}

/// Two tenants in one bucket: `acme` (prefix `a`, org [`ORG_A`]) sends hostile input,
/// `globex` (prefix `b/prod`, org [`ORG_B`]) backs up an org whose pages are slowed down so
/// its backup is running while the hostile messages are handled.
async fn two_tenants(env: &TestEnv) -> anyhow::Result<(SimHandle, SimHandle)> {
    let sim_a = start_sim(5, 1, 100).await?;
    let seed_b = OrgSeed::new(OrgId::new(ORG_B)?, 7, 30, 3);
    let sim_b = start_sim_of(seed_b, 25).await?;
    sim_b.slow_pages(Duration::from_millis(120));
    env.create_tenant_with("acme", "a", Sse::S3).await?;
    env.create_tenant_with("globex", "b/prod", Sse::S3).await?;
    env.connect_org("acme", &sim_a).await?;
    env.connect_org("globex", &sim_b).await?;
    Ok((sim_a, sim_b))
}

/// Tenant `globex`'s backup of `job` completed without a failed attempt, and holds exactly its
/// org's rows.
async fn assert_tenant_b_undisturbed(
    env: &TestEnv,
    sim_b: &SimHandle,
    job: JobId,
) -> anyhow::Result<()> {
    let backup = wait_for_backup(env, job, WAIT).await?;
    assert_eq!(backup.state, BackupState::Complete);
    assert_eq!(backup.tenant_id.as_str(), "globex");
    let row = env.catalog.job(job).await?.expect("globex's job row");
    assert_eq!(row.state, JobState::Completed, "globex's job: {row:?}");
    assert_eq!(row.tenant_id, "globex");
    assert_eq!(
        row.last_error, None,
        "globex's job saw a failure that was not its own"
    );
    assert_eq!(
        row.attempts, 1,
        "hostile messages counted attempts of globex's job"
    );
    let mut tables = TablesByObject::new();
    for object in env.catalog.backup_objects(backup.backup_id).await? {
        if object.kind != coffer_catalog::ObjectKind::Records {
            continue;
        }
        let body = read_object(&env.s3_client, &env.bucket, &object.key)
            .await?
            .body;
        let (header, rows) = gunzip_csv(&body)?;
        let entry = tables
            .entry(object.sobject.clone().unwrap_or_default())
            .or_insert_with(|| (header, Vec::new()));
        entry.1.extend(rows);
    }
    assert_tables_equal_org(sim_b, tables);
    Ok(())
}

/// Every key in the bucket is under one of `allowed` and has no `.`/`..`/empty segment, no
/// control character.
async fn assert_bucket_keys_under(env: &TestEnv, allowed: &[&str]) -> anyhow::Result<Vec<String>> {
    let keys = list_keys(&env.s3_client, &env.bucket, "").await?;
    for key in &keys {
        assert!(
            allowed.iter().any(|p| key.starts_with(p)),
            "{key:?} is outside {allowed:?}"
        );
        assert!(
            key.split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."),
            "{key:?} has a dot or empty segment"
        );
        assert!(key.bytes().all(|b| b.is_ascii_graphic()), "{key:?}");
    }
    Ok(keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_job_messages_are_dead_lettered_with_their_reason_and_another_tenant_is_undisturbed()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (sim_a, sim_b) = two_tenants(&env).await?;
    let worker = start_worker(&env, small_part_settings(&env)).await?;
    let broker = env.broker().await?;
    let publisher = broker.publisher().await?;

    // Tenant B's backup starts first and is running while the hostile messages arrive.
    let job_b = JobId::generate();
    let envelope_b = envelope_with_id(job_b.to_string(), backup("globex", ORG_B, &[]));
    publish_as_tenant(&publisher, "globex", &envelope_b).await?;
    let backup_b = eventually("globex's backup to start", WAIT, || async {
        Ok(env.catalog.backup_of_job(job_b).await?)
    })
    .await?;
    let b_id = backup_b.backup_id.to_string();

    let oversized_job = {
        let mut e = envelope(backup("acme", ORG_A, &[]));
        e.requested_by = "x".repeat(6 * 1024 * 1024);
        e
    };
    let versioned = |v: u32| {
        let mut e = envelope(backup("acme", ORG_A, &[]));
        e.schema_version = v;
        e
    };
    let garbage: Vec<u8> = (0..6 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let hostile = vec![
        Hostile::raw(
            "malformed",
            b"\x0a\xff\xff\xff\xff not a protobuf".to_vec(),
            "malformed job message",
        ),
        Hostile::raw("empty", Vec::new(), "empty job message"),
        Hostile::job(
            "oversized-job",
            &oversized_job,
            "larger than the 1048576 bytes",
        ),
        Hostile::raw(
            "oversized-garbage",
            garbage,
            "larger than the 1048576 bytes",
        ),
        Hostile::job(
            "version-2",
            &versioned(2),
            "unsupported job schema version 2",
        ),
        Hostile::job(
            "version-0",
            &versioned(0),
            "unsupported job schema version 0",
        ),
        Hostile::job(
            "unknown-tenant",
            &envelope(backup("nobody", ORG_A, &[])),
            "unknown tenant \"nobody\"",
        ),
        Hostile::job(
            "unknown-org",
            &envelope(backup("acme", "00D00000000000ZZZZ", &[])),
            "org \"00D00000000000ZZZZ\" is not connected to tenant \"acme\"",
        ),
        Hostile::job(
            "header-disagrees",
            &envelope(backup("acme", ORG_A, &[])),
            "x-coffer-tenant",
        )
        .with_header("globex"),
        Hostile::job(
            "header-names-victim",
            &envelope(backup("globex", ORG_B, &[])),
            "x-coffer-tenant",
        )
        .with_header("acme"),
        Hostile::job(
            "tenant-dotdot",
            &envelope(backup("../globex", ORG_A, &[])),
            "invalid tenant id \"../globex\"",
        ),
        Hostile::job(
            "tenant-absolute",
            &envelope(backup("/b/prod/globex", ORG_A, &[])),
            "invalid tenant id",
        ),
        Hostile::job(
            "tenant-percent",
            &envelope(backup("%2e%2e", ORG_A, &[])),
            "invalid tenant id \"%2e%2e\"",
        ),
        Hostile::job(
            "tenant-control",
            &envelope(backup("acme\n\u{0}", ORG_A, &[])),
            "invalid tenant id \"acme\\n\\u{0}\"",
        ),
        Hostile::job(
            "tenant-lookalike",
            &envelope(backup("\u{430}cme", ORG_A, &[])),
            "invalid tenant id \"\\u{430}cme\"",
        ),
        Hostile::job(
            "org-dotdot",
            &envelope(backup("acme", "../../00D000000001", &[])),
            "invalid org id",
        ),
        Hostile::job(
            "org-slash",
            &envelope(backup("acme", "00D000000000001AA/", &[])),
            "invalid org id",
        ),
        Hostile::job(
            "sobject-dotdot",
            &envelope(backup("acme", ORG_A, &["Account/../../globex"])),
            "invalid sobject name \"Account/../../globex\"",
        ),
        Hostile::job(
            "sobject-control",
            &envelope(backup("acme", ORG_A, &["Acc\u{0}ount"])),
            "invalid sobject name",
        ),
        Hostile::job(
            "sobject-lookalike",
            &envelope(backup("acme", ORG_A, &["\u{ff21}ccount"])),
            "invalid sobject name",
        ),
        Hostile::job(
            "job-id-dotdot",
            &envelope_with_id("../../etc".to_owned(), backup("acme", ORG_A, &[])),
            "invalid job id \"../../etc\"",
        ),
        Hostile::job(
            "task-backup-dotdot",
            &envelope(task("acme", ORG_A, "../b/prod")),
            "invalid backup id \"../b/prod\"",
        ),
        Hostile::job(
            "task-of-another-tenant",
            &envelope(task("acme", ORG_A, &b_id)),
            "belongs to others",
        ),
        Hostile::job(
            "task-of-another-tenant-with-its-job-id",
            &envelope_with_id(job_b.to_string(), task("acme", ORG_A, &b_id)),
            "belongs to others",
        ),
        Hostile::job(
            "backup-with-another-tenants-job-id",
            &envelope_with_id(job_b.to_string(), backup("nobody", ORG_A, &[])),
            "belongs to another",
        ),
        Hostile::job(
            "restore-of-another-tenants-backup",
            &envelope(restore("acme", ORG_A, &b_id, &["Account"], &[])),
            "is not a backup of org",
        ),
        Hostile::job(
            "restore-backup-dotdot",
            &envelope(restore("acme", ORG_A, "../../x", &["Account"], &[])),
            "invalid backup id \"../../x\"",
        ),
        Hostile::job(
            "restore-record-dotdot",
            &envelope(restore(
                "acme",
                ORG_A,
                &b_id,
                &[],
                &["../../001000000000001"],
            )),
            "invalid record id \"../../001000000000001\"",
        ),
        Hostile::job(
            "restore-record-quote",
            &envelope(restore("acme", ORG_A, &b_id, &[], &["001' OR Id != '"])),
            "invalid record id",
        ),
        Hostile::job(
            "restore-sobject-dotdot",
            &envelope(restore("acme", ORG_A, &b_id, &["../Account"], &[])),
            "invalid sobject name \"../Account\"",
        ),
        Hostile::job(
            "sweep-tenant-dotdot",
            &envelope(Job::RetentionSweepRequested(RetentionSweepRequested {
                tenant_id: "../globex".to_owned(),
                dry_run: false,
            })),
            "invalid tenant id \"../globex\"",
        ),
    ];
    for message in &hostile {
        message.publish(&publisher).await?;
    }

    let letters = dead_letters(&broker, hostile.len()).await?;
    assert_tenant_b_undisturbed(&env, &sim_b, job_b).await?;
    worker.stop().await;

    for message in &hostile {
        let letter = letters
            .get(&Some(message.label.clone()))
            .unwrap_or_else(|| panic!("no dead letter for {}", message.label));
        let reason = letter.reason.clone().unwrap_or_default();
        assert!(
            reason.contains(message.reason),
            "{}: the reason {reason:?} does not say {:?}",
            message.label,
            message.reason
        );
        assert!(
            !reason.chars().any(char::is_control),
            "{}: the reason carries control characters: {reason:?}",
            message.label
        );
        assert_eq!(
            letter.class.as_deref(),
            Some("permanent"),
            "{}: {reason}",
            message.label
        );
        assert_eq!(letter.payload, message.payload, "{}", message.label);
    }
    assert!(
        broker.get_dead_letter().await?.is_none(),
        "only the hostile messages are dead letters"
    );
    assert_eq!(broker.queue_depth(broker.topology().jobs_queue()).await?, 0);

    // Nothing of acme's was written (none of its jobs was valid), and globex's backup stayed
    // under its own prefix.
    let keys = assert_bucket_keys_under(
        &env,
        &[
            &format!("b/prod/globex/{ORG_B}/backups/{b_id}/"),
            &format!("b/prod/globex/{ORG_B}/files/"),
        ],
    )
    .await?;
    assert!(keys.iter().any(|k| k.ends_with("/manifest.json")));
    let acme = TenantId::new("acme")?;
    assert!(
        env.catalog
            .backups_of(&acme, &OrgId::new(ORG_A)?)
            .await?
            .is_empty(),
        "a hostile message started a backup"
    );
    sim_a.shutdown().await;
    sim_b.shutdown().await;
    env.cleanup().await
}

/// The rows of `sobject` in a backup's records parts (header, rows).
async fn rows_of(
    env: &TestEnv,
    backup: coffer_core::BackupId,
    sobject: &str,
) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut header = Vec::new();
    let mut rows = Vec::new();
    for object in env.catalog.backup_objects(backup).await? {
        if object.sobject.as_deref() != Some(sobject) {
            continue;
        }
        let body = read_object(&env.s3_client, &env.bucket, &object.key)
            .await?
            .body;
        let (h, r) = gunzip_csv(&body)?;
        header = h;
        rows.extend(r);
    }
    Ok((header, rows))
}

/// Publishes a backup of `sobjects` of tenant `acme`'s org; returns the job id.
async fn back_up(publisher: &Publisher, sobjects: &[&str]) -> anyhow::Result<JobId> {
    let job = JobId::generate();
    let envelope = envelope_with_id(job.to_string(), backup("acme", ORG_A, sobjects));
    publish_as_tenant(publisher, "acme", &envelope).await?;
    Ok(job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_salesforce_is_retried_when_a_retry_helps_and_dead_lettered_when_not()
-> anyhow::Result<()> {
    use coffer_sfsim::faults::Garbage;
    let env = TestEnv::new().await?;
    let sim = start_sim(30, 1, 10).await?;
    env.create_tenant_with("acme", "a", Sse::S3).await?;
    env.connect_org("acme", &sim).await?;
    let worker = start_worker(&env, small_part_settings(&env)).await?;
    let broker = env.broker().await?;
    let publisher = broker.publisher().await?;
    let (want_header, mut want_rows) = sim.table("Account").expect("accounts");
    want_rows.sort();

    // Something other than the API answers once: an HTML maintenance page and a JSON document
    // where a CSV page was asked for, a login page and JSON cut in half where a job status was.
    // Each is retried (the next answer is real) and the backup holds exactly the org's rows.
    for garbage in [
        Garbage::HtmlPage,
        Garbage::JsonPage,
        Garbage::HtmlJson,
        Garbage::TruncatedJson,
    ] {
        sim.serve_garbage(garbage);
    }
    let job = back_up(&publisher, &["Account"]).await?;
    let backup = wait_for_backup(&env, job, WAIT).await?;
    assert!(
        env.catalog.job(job).await?.is_some_and(|j| j.attempts == 1),
        "the client's own retries absorbed the garbage"
    );
    let (header, mut rows) = rows_of(&env, backup.backup_id, "Account").await?;
    rows.sort();
    assert_eq!(header, want_header);
    assert!(rows == want_rows, "the rows differ from the org's");
    assert!(
        lock_free_garbage(&sim),
        "every queued garbage answer was served"
    );

    // An enormous field (4 MiB, with quotes, commas, newlines and non-ASCII) is stored intact.
    let huge: String = "a \"quoted\", line\nbreak é 日本 ".repeat(4 * 1024 * 1024 / 32);
    sim.serve_garbage(Garbage::Cell {
        column: "Description".to_owned(),
        value: huge.clone().into_bytes(),
    });
    let job = back_up(&publisher, &["Account"]).await?;
    let backup = wait_for_backup(&env, job, WAIT).await?;
    let (header, rows) = rows_of(&env, backup.backup_id, "Account").await?;
    let description = header
        .iter()
        .position(|h| h == "Description")
        .expect("column");
    let holding: Vec<_> = rows.iter().filter(|r| r[description] == huge).collect();
    assert_eq!(holding.len(), 1, "the enormous field is in exactly one row");
    assert_eq!(rows.len(), want_rows.len());

    // Invalid UTF-8 in a cell: the same bytes come back on every retry, so the task is
    // dead-lettered at once, naming the job, page and the problem.
    sim.serve_garbage(Garbage::Cell {
        column: "Name".to_owned(),
        value: b"Acme \xff\xfe Corp".to_vec(),
    });
    let job = back_up(&publisher, &["Account"]).await?;
    let letter = next_dead_letter(&broker, WAIT).await?;
    let reason = letter.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("invalid csv") && reason.to_lowercase().contains("utf-8"),
        "{reason}"
    );
    assert_eq!(letter.class.as_deref(), Some("permanent"), "{reason}");
    let failed = env.catalog.backup_of_job(job).await?.expect("backup row");
    assert_eq!(failed.state, BackupState::Failed);

    // A record id shaped to escape (path tricks, NUL) is refused before it reaches the index,
    // a restore query or a key.
    sim.serve_garbage(Garbage::Cell {
        column: "Id".to_owned(),
        value: b"../../files/00/\x00".to_vec(),
    });
    let job = back_up(&publisher, &["Account"]).await?;
    let letter = next_dead_letter(&broker, WAIT).await?;
    let reason = letter.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("bad records from salesforce for Account")
            && reason.contains("invalid record id"),
        "{reason}"
    );
    assert!(!reason.contains('\0'), "{reason:?}");
    assert_eq!(letter.class.as_deref(), Some("permanent"), "{reason}");
    let failed = env.catalog.backup_of_job(job).await?.expect("backup row");
    assert_eq!(failed.state, BackupState::Failed);
    worker.stop().await;

    assert!(broker.get_dead_letter().await?.is_none());
    assert_bucket_keys_under(&env, &[&format!("a/acme/{ORG_A}/backups/")]).await?;
    sim.shutdown().await;
    env.cleanup().await
}

/// Whether the simulator has no garbage answer left to serve.
fn lock_free_garbage(sim: &SimHandle) -> bool {
    sim.pending_garbage() == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_names_with_path_tricks_do_not_shape_keys_bodies_are_content_addressed()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sim = start_sim(8, 1, 100).await?;
    env.create_tenant_with("acme", "a", Sse::S3).await?;
    env.connect_org("acme", &sim).await?;
    let first_id = |sobject: &str| -> String {
        let (header, rows) = sim.table(sobject).expect(sobject);
        let id = header.iter().position(|h| h == "Id").expect("Id");
        rows[0][id].clone()
    };
    let attachment = first_id("Attachment");
    let version = first_id("ContentVersion");
    sim.update(
        "Attachment",
        &attachment,
        &[("Name", Some("../../../../b/prod/globex/evil\u{0}.txt"))],
    )?;
    sim.update(
        "ContentVersion",
        &version,
        &[
            ("Title", Some("..\\..\\%2e%2e/\u{2215}etc\u{2215}passwd")),
            ("PathOnClient", Some("/etc/passwd")),
        ],
    )?;
    let worker = start_worker(&env, small_part_settings(&env)).await?;
    let broker = env.broker().await?;
    let publisher = broker.publisher().await?;
    let job = back_up(&publisher, &["Attachment", "ContentVersion"]).await?;
    let backup = wait_for_backup(&env, job, WAIT).await?;
    worker.stop().await;

    // The names are kept as data, byte for byte, in the records parts...
    let (header, rows) = rows_of(&env, backup.backup_id, "Attachment").await?;
    let name = header.iter().position(|h| h == "Name").expect("Name");
    assert!(
        rows.iter()
            .any(|r| r[name] == "../../../../b/prod/globex/evil\u{0}.txt")
    );
    let (header, rows) = rows_of(&env, backup.backup_id, "ContentVersion").await?;
    let title = header.iter().position(|h| h == "Title").expect("Title");
    assert!(rows.iter().any(|r| r[title].contains("%2e%2e/\u{2215}etc")));

    // ...and no key depends on them: bodies live at files/{sha256[..2]}/{sha256}.
    let files = format!("a/acme/{ORG_A}/files/");
    let keys = assert_bucket_keys_under(
        &env,
        &[
            &format!("a/acme/{ORG_A}/backups/{}/", backup.backup_id),
            &files,
        ],
    )
    .await?;
    let bodies: Vec<&String> = keys.iter().filter(|k| k.starts_with(&files)).collect();
    assert!(!bodies.is_empty(), "file bodies were backed up");
    for key in &bodies {
        let rest = &key[files.len()..];
        let (dir, sha) = rest.split_once('/').expect("files/xx/sha");
        assert!(
            sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) && sha.starts_with(dir),
            "{key}"
        );
        let body = read_object(&env.s3_client, &env.bucket, key).await?.body;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&body)),
            sha,
            "{key} is not addressed by its content"
        );
    }
    for key in &keys {
        assert!(
            !key.contains("evil") && !key.contains("passwd") && !key.contains("globex"),
            "{key}"
        );
    }
    sim.shutdown().await;
    env.cleanup().await
}
