//! No secret reaches what operators see: a `coffer worker` process, logging JSON at debug level,
//! serving `/metrics` and exporting spans to an OTLP receiver, runs two backups that succeed (a
//! tenant on a customer role, so sessions with tokens; a tenant on the customer's access keys)
//! and two that fail (access keys with a wrong secret; an org with a wrong Salesforce client
//! secret). Every secret involved has a distinctive value: the Salesforce client secret and the
//! wrong one, the access tokens the simulated org issues, the vendor's and the customer's S3
//! secret keys and the wrong one, the session tokens STS issues, the envelope key, and the
//! database and AMQP passwords (of users created for the test). None may appear in the
//! worker's stderr or stdout, the `coffer enqueue` output, a dead letter's `x-coffer-reason`,
//! the metrics text, or any span's name or attribute.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use coffer_catalog::{BackupState, NewStorage, OrgRecord, Sse, StorageAccess, secret_context};
use coffer_core::layout::BasePath;
use coffer_core::policy::{external_id, trust_policy};
use coffer_core::sealed::EnvelopeKey;
use coffer_core::{JobId, OrgId, TenantId};
use coffer_queue::Broker;
use coffer_sfsim::{OrgSeed, SimConfig};
use coffer_storage::provision;
use coffer_testkit::iam::{
    create_role, create_user_with_keys, create_vendor, emulator_permission_policy,
    grant_vendor_default_bucket,
};
use coffer_testkit::otlp::Receiver;
use coffer_testkit::{TEST_ORG_ID, TestEnv};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection as _;

use common::{Reaped, coffer, http_addr_of, wait_for_exit};

/// A database user and an AMQP user with distinctive passwords, made for one test and removed
/// after it.
struct ServiceUsers {
    name: String,
    db_password: String,
    amqp_password: String,
    database_url: String,
    amqp_url: String,
}

impl ServiceUsers {
    async fn create(env: &TestEnv) -> anyhow::Result<ServiceUsers> {
        let name = format!("sec_{}", env.id);
        let db_password = format!("DbPw{}Qz7", env.id);
        let amqp_password = format!("AmqpPw{}Wk3", env.id);
        let mut admin = sqlx::MySqlConnection::connect(&env.stack.database_url).await?;
        let db = url::Url::parse(env.database_url.expose_secret())?
            .path()
            .trim_start_matches('/')
            .to_owned();
        for host in ["localhost", "%"] {
            for sql in [
                format!(
                    "CREATE USER IF NOT EXISTS '{name}'@'{host}' IDENTIFIED BY '{db_password}'"
                ),
                format!("GRANT ALL ON `{db}`.* TO '{name}'@'{host}'"),
            ] {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut admin)
                    .await?;
            }
        }
        admin.close().await?;
        let mut database_url = url::Url::parse(env.database_url.expose_secret())?;
        database_url
            .set_username(&name)
            .map_err(|()| anyhow::anyhow!("user"))?;
        database_url
            .set_password(Some(&db_password))
            .map_err(|()| anyhow::anyhow!("password"))?;
        rabbitmqctl(&["add_user", &name, &amqp_password])?;
        rabbitmqctl(&["set_permissions", "-p", "/", &name, ".*", ".*", ".*"])?;
        let mut amqp_url = url::Url::parse(&env.stack.amqp_url)?;
        amqp_url
            .set_username(&name)
            .map_err(|()| anyhow::anyhow!("user"))?;
        amqp_url
            .set_password(Some(&amqp_password))
            .map_err(|()| anyhow::anyhow!("password"))?;
        Ok(ServiceUsers {
            name,
            db_password,
            amqp_password,
            database_url: database_url.to_string(),
            amqp_url: amqp_url.to_string(),
        })
    }

    async fn remove(&self, env: &TestEnv) -> anyhow::Result<()> {
        rabbitmqctl(&["delete_user", &self.name])?;
        let mut admin = sqlx::MySqlConnection::connect(&env.stack.database_url).await?;
        for host in ["localhost", "%"] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP USER IF EXISTS '{}'@'{host}'",
                self.name
            )))
            .execute(&mut admin)
            .await?;
        }
        admin.close().await?;
        Ok(())
    }
}

fn rabbitmqctl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("rabbitmqctl").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "rabbitmqctl {}: {}",
        args[0],
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Sets `tenant`'s own storage to `access` in `bucket` under `byo/{tenant}`, tested and enabled.
async fn own_storage(
    env: &TestEnv,
    tenant: &TenantId,
    bucket: &str,
    access: StorageAccess,
) -> anyhow::Result<()> {
    let own = env
        .catalog
        .set_own_storage(
            tenant,
            &NewStorage {
                bucket: bucket.to_owned(),
                region: env.stack.region.clone(),
                endpoint: None,
                base_path: BasePath::new("byo")?,
                sse: Sse::S3,
                access,
            },
        )
        .await?;
    env.catalog
        .record_storage_test(own.storage_id, true, "{}")
        .await?;
    env.catalog.enable_own_storage(tenant).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_dead_letters_metrics_or_spans() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let id = env.id.clone();
    let sf_secret = format!("SfSecret{id}Zq9");
    let wrong_sf_secret = format!("WrongSfSecret{id}Pp4");
    let wrong_s3_secret = format!("WrongS3Secret{id}Xk2");
    let org = OrgId::new(TEST_ORG_ID)?;
    let sim = coffer_sfsim::start(SimConfig {
        client_secret: sf_secret.clone(),
        default_page_size: 50,
        ..SimConfig::local(OrgSeed::new(org.clone(), 42, 5, 1))
    })
    .await?;
    let users = ServiceUsers::create(&env).await?;
    let envelope_text =
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let envelope = EnvelopeKey::from_base64(&SecretString::from(envelope_text.clone()))?;
    let dir = std::env::temp_dir().join(format!("coffer-secrets-{id}"));
    std::fs::create_dir_all(&dir)?;
    let key_file = dir.join("envelope.key");
    std::fs::write(&key_file, &envelope_text)?;

    // The vendor (whose keys the worker runs with) and the customer's bucket.
    let vendor = create_vendor(&env).await?;
    grant_vendor_default_bucket(&env).await?;
    let vendor_keys = vendor.settings.keys.clone().context("vendor keys")?;
    let bucket = format!("customer-{id}");
    provision::ensure_bucket(&env.s3_client, &bucket, &env.stack.region).await?;

    // acme: a customer role (STS sessions); initech: the customer's access keys; globex: access
    // keys with a wrong secret; hooli: an org whose client secret is wrong.
    for tenant in ["acme", "initech", "globex", "hooli"] {
        env.create_tenant_with(tenant, "", Sse::S3).await?;
        env.catalog
            .put_org(&OrgRecord {
                tenant_id: TenantId::new(tenant)?,
                org_id: org.clone(),
                login_url: sim.base_url(),
                client_id: sim.client_id().to_owned(),
                client_secret: SecretString::from(if tenant == "hooli" {
                    wrong_sf_secret.clone()
                } else {
                    sf_secret.clone()
                }),
                api_version: "62.0".to_owned(),
            })
            .await?;
    }
    let acme = TenantId::new("acme")?;
    let role = create_role(
        &env,
        &format!("coffer-acme-{id}"),
        &trust_policy(&vendor.arn, &[external_id("coffer", &org)]),
        &emulator_permission_policy(&bucket, "byo/acme", None),
    )
    .await?;
    own_storage(&env, &acme, &bucket, StorageAccess::Role { role_arn: role }).await?;
    let mut customer_secrets = Vec::new();
    for (tenant, wrong) in [("initech", false), ("globex", true)] {
        let tenant = TenantId::new(tenant)?;
        let user = create_user_with_keys(
            &env,
            &format!("{tenant}-{id}"),
            &emulator_permission_policy(&bucket, &format!("byo/{tenant}"), None),
        )
        .await?;
        let secret = match wrong {
            true => wrong_s3_secret.clone(),
            false => user.keys.secret_access_key.expose_secret().to_owned(),
        };
        customer_secrets.push(user.keys.secret_access_key.expose_secret().to_owned());
        let sealed = envelope.seal(
            &SecretString::from(secret),
            &secret_context(&tenant, &user.keys.access_key_id),
        );
        own_storage(
            &env,
            &tenant,
            &bucket,
            StorageAccess::AccessKeys {
                access_key_id: user.keys.access_key_id.clone(),
                secret_sealed: sealed,
            },
        )
        .await?;
    }
    env.broker().await?;

    let receiver = Receiver::start().await?;
    let endpoint = receiver.endpoint();
    let with_secrets = |cmd: &mut Command| {
        cmd.env("COFFER_DATABASE_URL", &users.database_url)
            .env("COFFER_AMQP_URL", &users.amqp_url)
            .env("COFFER_S3_ACCESS_KEY_ID", &vendor_keys.access_key_id)
            .env(
                "COFFER_S3_SECRET_ACCESS_KEY",
                vendor_keys.secret_access_key.expose_secret(),
            )
            .env("COFFER_ENVELOPE_KEY_FILE", &key_file)
            .env("COFFER_OTLP_ENDPOINT", &endpoint)
            .env("COFFER_OTLP_PROTOCOL", "http/json")
            .env("RUST_LOG", "debug");
    };
    let (stderr_path, stdout_path) = (dir.join("worker.err"), dir.join("worker.out"));
    let mut worker = coffer(&env);
    worker
        .arg("worker")
        .env("COFFER_HTTP_ADDR", "127.0.0.1:0")
        .stdout(std::fs::File::create(&stdout_path)?)
        .stderr(std::fs::File::create(&stderr_path)?);
    with_secrets(&mut worker);
    let mut worker = Reaped(worker.spawn()?);

    let mut cli_output = String::new();
    let mut jobs = Vec::new();
    for tenant in ["acme", "initech", "globex", "hooli"] {
        let mut enqueue = coffer(&env);
        enqueue.args(["enqueue", "backup", "--tenant", tenant, "--json"]);
        with_secrets(&mut enqueue);
        let out = enqueue.output()?;
        cli_output.push_str(&String::from_utf8_lossy(&out.stdout));
        cli_output.push_str(&String::from_utf8_lossy(&out.stderr));
        anyhow::ensure!(out.status.success(), "enqueue {tenant}: {cli_output}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let job: JobId = json["jobs"][0]["job_id"]
            .as_str()
            .context("job id")?
            .parse()?;
        jobs.push((tenant, job));
    }

    // The two good backups complete; the two bad ones are dead letters.
    let log = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(120);
    for (tenant, job) in &jobs[..2] {
        loop {
            if let Some(b) = env.catalog.backup_of_job(*job).await?
                && b.state == BackupState::Complete
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("{tenant}'s backup did not complete; worker log:\n{}", log());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let broker = Broker::connect(&env.queue).await?;
    let mut dead = Vec::new();
    while dead.len() < 2 {
        if let Some(letter) = broker.get_dead_letter().await? {
            dead.push(letter);
        } else if Instant::now() > deadline {
            bail!("{} dead letters; worker log:\n{}", dead.len(), log());
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let reasons: Vec<String> = dead.iter().filter_map(|d| d.reason.clone()).collect();
    let dead_text = format!("{dead:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("storage credentials were refused")),
        "the wrong S3 secret is the reason of a dead letter: {reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.to_lowercase().contains("salesforce") || r.contains("invalid_client")),
        "the wrong Salesforce secret is the reason of a dead letter: {reasons:?}"
    );

    let addr = http_addr_of(&stderr_path).await?;
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await?
        .text()
        .await?;
    assert!(metrics.contains("coffer_jobs_total"), "{metrics}");

    Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()?;
    let status = wait_for_exit(&mut worker, Duration::from_secs(60))?;
    assert!(status.success(), "worker exited with {status}");
    let spans = receiver.spans();
    assert!(
        spans.iter().any(|s| s.name == "extract"),
        "the worker exported its spans"
    );
    let span_text: String = spans
        .iter()
        .map(|s| format!("{} {:?} {:?}\n", s.name, s.attributes, s.resource))
        .collect();

    let stderr = log();
    let stdout = std::fs::read_to_string(&stdout_path)?;
    assert!(
        stderr.contains("\"level\":\"DEBUG\"") || stderr.contains("DEBUG"),
        "debug logging was on, so the search covers the libraries' own lines"
    );
    assert!(
        stderr.contains("storage client with an assumed role"),
        "acme's sessions came from STS"
    );
    let token_prefix = format!("{}!AQ", &TEST_ORG_ID[..15]);
    let mut secrets: Vec<(&str, String)> = vec![
        ("the Salesforce client secret", sf_secret.clone()),
        (
            "the wrong Salesforce client secret",
            wrong_sf_secret.clone(),
        ),
        ("a Salesforce access token", token_prefix),
        (
            "the vendor's S3 secret key",
            vendor_keys.secret_access_key.expose_secret().to_owned(),
        ),
        ("the wrong S3 secret key", wrong_s3_secret.clone()),
        ("an STS session token", "FQoGZXIvYXdzE".to_owned()),
        ("the envelope key", envelope_text.clone()),
        ("the database password", users.db_password.clone()),
        ("the AMQP password", users.amqp_password.clone()),
    ];
    for secret in &customer_secrets {
        secrets.push(("a customer's S3 secret key", secret.clone()));
    }
    let places = [
        ("the worker's stderr", &stderr),
        ("the worker's stdout", &stdout),
        ("coffer enqueue's output", &cli_output),
        ("a dead letter", &dead_text),
        ("the metrics", &metrics),
        ("a span", &span_text),
    ];
    for (what, secret) in &secrets {
        for (place, text) in &places {
            assert!(!text.contains(secret.as_str()), "{what} appears in {place}");
        }
    }

    users.remove(&env).await?;
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
    env.cleanup().await
}
