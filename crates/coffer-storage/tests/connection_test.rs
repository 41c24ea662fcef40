//! Reaching tenants' storage ([`coffer_storage::access`]) and the Test Connection
//! ([`coffer_storage::probe`]) against the emulator run with `--verify-sigv4 --iam strict`: real
//! IAM users, roles with trust policies and external ids, permission policies as customers paste
//! them (`coffer_core::policy`), bucket policies, and KMS keys, in one account or two.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use aws_sdk_s3::primitives::ByteStream;
use coffer_core::policy::{external_id, trust_policy};
use coffer_core::{Classify, ErrorClass, OrgId};
use coffer_storage::access::{ClientCache, SessionIdentity, StorageAccess, StorageSpec, connect};
use coffer_storage::probe::{ConnectionReport, test_connection};
use coffer_storage::provision;
use coffer_storage::{Encryption, S3Settings, StorageError};
use coffer_testkit::iam::{
    Vendor, admin_in_account, create_role, create_user_with_keys, create_vendor,
    emulator_permission_policy, put_bucket_policy,
};
use coffer_testkit::{TEST_ORG_ID, TestEnv};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

const STEPS: [&str; 6] = [
    "assume_role",
    "bucket_location",
    "put_probe",
    "get_probe",
    "list_prefix",
    "delete_probe",
];

fn ext() -> String {
    external_id("coffer", &OrgId::new(TEST_ORG_ID).expect("org id"))
}

fn identity(tenant: &str, external_id: &str) -> SessionIdentity {
    SessionIdentity {
        tenant: tenant.to_owned(),
        external_id: external_id.to_owned(),
        job: "job-1".to_owned(),
    }
}

fn spec(env: &TestEnv, prefix: &str, access: StorageAccess) -> StorageSpec {
    StorageSpec {
        region: env.stack.region.clone(),
        endpoint: None,
        bucket: env.bucket.clone(),
        prefix: prefix.to_owned(),
        encryption: Encryption::SseKms {
            key_id: env.kms_key.arn.clone(),
            bucket_key: false,
        },
        access,
    }
}

/// A customer's role trusting the vendor with the tenant's external id and the documented
/// permission policy, minus `without` (an action name).
async fn customer_role(
    env: &TestEnv,
    vendor: &Vendor,
    name: &str,
    prefix: &str,
    without: Option<&str>,
) -> anyhow::Result<String> {
    let mut permissions = emulator_permission_policy(&env.bucket, prefix, Some(&env.kms_key.arn));
    if let Some(action) = without {
        for statement in permissions["Statement"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if let Some(actions) = statement["Action"].as_array_mut() {
                actions.retain(|a| a != action);
            }
        }
        if let Some(statements) = permissions["Statement"].as_array_mut() {
            statements.retain(|s| s["Action"].as_array().is_none_or(|a| !a.is_empty()));
        }
    }
    create_role(
        env,
        &format!("{name}-{}", env.id),
        &trust_policy(&vendor.arn, &[ext()]),
        &permissions,
    )
    .await
}

fn names(report: &ConnectionReport) -> Vec<&str> {
    report.steps.iter().map(|s| s.name.as_str()).collect()
}

/// Asserts that `step` failed with `code`, with a message containing every one of `fix`, that
/// every step before it passed and every later one (but `delete_probe`, which cleans up) was
/// skipped.
fn assert_fails_at(report: &ConnectionReport, step: &str, code: &str, fix: &[&str]) {
    assert!(!report.ok, "{report:#?}");
    let failed = report.first_failure().expect("a failed step");
    assert_eq!(failed.name, step, "{report:#?}");
    assert_eq!(failed.code.as_deref(), Some(code), "{report:#?}");
    for part in fix {
        assert!(
            failed.message.contains(part),
            "{:?} lacks {part:?}",
            failed.message
        );
    }
    let at = report
        .steps
        .iter()
        .position(|s| s.name == step)
        .expect("step");
    for later in &report.steps[at + 1..] {
        if later.name != "delete_probe" {
            assert_eq!(later.code.as_deref(), Some("skipped"), "{report:#?}");
        }
    }
}

/// What is left under the tenant's probe folder (read with the emulator's admin identity).
async fn probes_left(env: &TestEnv, prefix: &str) -> anyhow::Result<Vec<String>> {
    Ok(coffer_storage::list::list_keys(
        &env.s3_client,
        &env.bucket,
        &format!("{prefix}/.coffer-probe/"),
    )
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_with_the_documented_policies_passes_every_step_and_leaves_nothing()
-> anyhow::Result<()> {
    capture();
    let env = TestEnv::new().await?;
    let vendor = create_vendor(&env).await?;
    let prefix = "base/acme";
    let role = customer_role(&env, &vendor, "coffer-ok", prefix, None).await?;
    let spec = spec(&env, prefix, StorageAccess::Role { role_arn: role });

    let report = test_connection(&vendor.settings, &spec, &identity("acme", &ext())).await;
    assert!(report.ok, "{report:#?}");
    assert_eq!(names(&report), STEPS);
    assert!(report.steps.iter().all(|s| s.ok && s.code.is_none()));
    let put = report.step("put_probe").expect("put step");
    assert!(put.message.contains("aws:kms"), "{}", put.message);
    assert!(
        probes_left(&env, prefix).await?.is_empty(),
        "the probe was left behind"
    );

    let json = serde_json::to_value(&report)?;
    assert_eq!(json["ok"], true);
    assert_eq!(json["steps"][0]["name"], "assume_role");
    assert!(json["steps"][0]["millis"].is_u64() && json["steps"][0]["code"].is_null());
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assume_role_fails_on_a_wrong_external_id_an_untrusting_role_a_missing_or_malformed_role()
-> anyhow::Result<()> {
    capture();
    let env = TestEnv::new().await?;
    let vendor = create_vendor(&env).await?;
    let prefix = "acme";
    let role = customer_role(&env, &vendor, "coffer-ext", prefix, None).await?;

    // The external id presented is the SessionIdentity's, whatever the role expects.
    let forged = "coffer-org-00D000000000666AAA";
    let report = test_connection(
        &vendor.settings,
        &spec(
            &env,
            prefix,
            StorageAccess::Role {
                role_arn: role.clone(),
            },
        ),
        &identity("acme", forged),
    )
    .await;
    assert_fails_at(
        &report,
        "assume_role",
        "trust_policy",
        &[
            "sts:ExternalId = \"coffer-org-00D000000000666AAA\"",
            "trust policy",
            &role,
        ],
    );
    assert_eq!(names(&report), STEPS, "later steps are reported as skipped");

    // A role whose trust policy names another principal, with the right external id.
    let someone = format!("arn:aws:iam::000000000000:user/someone-else-{}", env.id);
    let stranger = create_role(
        &env,
        &format!("coffer-stranger-{}", env.id),
        &trust_policy(&someone, &[ext()]),
        &emulator_permission_policy(&env.bucket, prefix, None),
    )
    .await?;
    let report = test_connection(
        &vendor.settings,
        &spec(&env, prefix, StorageAccess::Role { role_arn: stranger }),
        &identity("acme", &ext()),
    )
    .await;
    assert_fails_at(
        &report,
        "assume_role",
        "trust_policy",
        &["Coffer's principal"],
    );

    // A well-formed ARN of a role that does not exist: STS answers exactly as for a trust
    // policy mismatch (on AWS too), so the message names both causes.
    let missing = format!("arn:aws:iam::000000000000:role/does-not-exist-{}", env.id);
    let report = test_connection(
        &vendor.settings,
        &spec(&env, prefix, StorageAccess::Role { role_arn: missing }),
        &identity("acme", &ext()),
    )
    .await;
    assert_fails_at(
        &report,
        "assume_role",
        "trust_policy",
        &["the role does not exist"],
    );

    // A malformed ARN is refused by STS's validation: role_missing.
    let report = test_connection(
        &vendor.settings,
        &spec(
            &env,
            prefix,
            StorageAccess::Role {
                role_arn: "coffer".into(),
            },
        ),
        &identity("acme", &ext()),
    )
    .await;
    assert_fails_at(
        &report,
        "assume_role",
        "role_missing",
        &["check the role ARN"],
    );
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_policy_without_an_action_fails_the_step_that_needs_it_naming_the_action()
-> anyhow::Result<()> {
    capture();
    let env = TestEnv::new().await?;
    let vendor = create_vendor(&env).await?;
    let who = identity("acme", &ext());

    let prefix = "no-put";
    let role = customer_role(&env, &vendor, "coffer-noput", prefix, Some("s3:PutObject")).await?;
    let report = test_connection(
        &vendor.settings,
        &spec(&env, prefix, StorageAccess::Role { role_arn: role }),
        &who,
    )
    .await;
    let objects = format!("arn:aws:s3:::{}/{prefix}/*", env.bucket);
    assert_fails_at(
        &report,
        "put_probe",
        "access_denied",
        &[
            &format!("s3:PutObject denied on {objects}"),
            "add it to the role's permission policy or the bucket policy",
        ],
    );
    // Nothing was written, so nothing is deleted.
    assert_eq!(
        report.step("delete_probe").and_then(|s| s.code.as_deref()),
        Some("skipped")
    );

    let prefix = "no-location";
    let role = customer_role(
        &env,
        &vendor,
        "coffer-noloc",
        prefix,
        Some("s3:GetBucketLocation"),
    )
    .await?;
    let report = test_connection(
        &vendor.settings,
        &spec(&env, prefix, StorageAccess::Role { role_arn: role }),
        &who,
    )
    .await;
    assert_fails_at(
        &report,
        "bucket_location",
        "access_denied",
        &[&format!(
            "s3:GetBucketLocation denied on arn:aws:s3:::{}",
            env.bucket
        )],
    );
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_policy_denying_reads_fails_get_probe_and_the_probe_is_still_removed()
-> anyhow::Result<()> {
    capture();
    let env = TestEnv::new().await?;
    let vendor = create_vendor(&env).await?;
    let prefix = "acme";
    let role = customer_role(&env, &vendor, "coffer-denied", prefix, None).await?;
    put_bucket_policy(
        &env,
        &env.bucket,
        &json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "NoReads",
                "Effect": "Deny",
                "Principal": { "AWS": "*" },
                "Action": "s3:GetObject",
                "Resource": format!("arn:aws:s3:::{}/*", env.bucket)
            }]
        }),
    )
    .await?;
    let report = test_connection(
        &vendor.settings,
        &spec(&env, prefix, StorageAccess::Role { role_arn: role }),
        &identity("acme", &ext()),
    )
    .await;
    assert_fails_at(
        &report,
        "get_probe",
        "access_denied",
        &[&format!(
            "s3:GetObject denied on arn:aws:s3:::{}/{prefix}/*",
            env.bucket
        )],
    );
    let delete = report.step("delete_probe").expect("delete step");
    assert!(
        delete.ok,
        "the probe is cleaned up after a failure: {report:#?}"
    );
    assert!(probes_left(&env, prefix).await?.is_empty());
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_buckets_other_regions_and_unknown_kms_keys_are_named() -> anyhow::Result<()> {
    capture();
    let env = TestEnv::new().await?;
    let who = identity("acme", &ext());

    // The vendor's own storage, with the emulator's admin identity as the vendor.
    let mut missing = spec(&env, "acme", StorageAccess::Vendor);
    missing.bucket = format!("coffer-missing-{}", env.id);
    let report = test_connection(&env.s3, &missing, &who).await;
    assert_eq!(report.steps[0].name, "vendor_credentials");
    assert_fails_at(
        &report,
        "bucket_location",
        "bucket_missing",
        &[&missing.bucket, "create it in us-east-1"],
    );

    let elsewhere = format!("coffer-euw2-{}", env.id);
    provision::ensure_bucket(&env.s3_client, &elsewhere, "eu-west-2").await?;
    let mut wrong_region = spec(&env, "acme", StorageAccess::Vendor);
    wrong_region.bucket = elsewhere;
    let report = test_connection(&env.s3, &wrong_region, &who).await;
    assert_fails_at(
        &report,
        "bucket_location",
        "wrong_region",
        &["is in eu-west-2", "set the storage's region to eu-west-2"],
    );

    let mut unknown_key = spec(&env, "acme", StorageAccess::Vendor);
    let key_arn = format!(
        "arn:aws:kms:{}:000000000000:key/00000000-0000-4000-8000-{}",
        env.stack.region, env.id
    );
    unknown_key.encryption = Encryption::SseKms {
        key_id: key_arn.clone(),
        bucket_key: true,
    };
    let report = test_connection(&env.s3, &unknown_key, &who).await;
    assert_fails_at(
        &report,
        "put_probe",
        "kms_key_missing",
        &[
            &format!("KMS key {key_arn} does not exist"),
            "or use sse-s3",
        ],
    );
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_another_account_whose_policy_does_not_allow_the_role_is_kms_denied()
-> anyhow::Result<()> {
    capture();
    let env = TestEnv::new().await?;
    let vendor = create_vendor(&env).await?;
    // The customer keeps keys in a separate account; its default key policy trusts only itself.
    let kms_account =
        admin_in_account(&env, "210987654321", &format!("kms-admin-{}", env.id)).await?;
    let foreign = provision::create_kms_key(&kms_account.kms_client().await, "central key").await?;
    assert!(foreign.arn.contains(":210987654321:"), "{}", foreign.arn);

    let prefix = "acme";
    let role = create_role(
        &env,
        &format!("coffer-kms-{}", env.id),
        &trust_policy(&vendor.arn, &[ext()]),
        &emulator_permission_policy(&env.bucket, prefix, Some(&foreign.arn)),
    )
    .await?;
    let mut spec = spec(
        &env,
        prefix,
        StorageAccess::Role {
            role_arn: role.clone(),
        },
    );
    spec.encryption = Encryption::SseKms {
        key_id: foreign.arn.clone(),
        bucket_key: false,
    };
    let who = identity("acme", &ext());
    let report = test_connection(&vendor.settings, &spec, &who).await;
    assert_fails_at(
        &report,
        "put_probe",
        "kms_denied",
        &[
            "kms:GenerateDataKey refused on KMS key",
            "the key policy must allow",
        ],
    );

    // Once the key policy allows the customer's account, the same configuration passes.
    let role_account = role.split(':').nth(4).unwrap_or_default();
    let key_policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Sid": "Owner", "Effect": "Allow", "Principal": { "AWS": "arn:aws:iam::210987654321:root" }, "Action": "kms:*", "Resource": "*" },
            // The customer's account, which delegates to its IAM policies (the role's allows the key).
            { "Sid": "CustomerAccount", "Effect": "Allow", "Principal": { "AWS": format!("arn:aws:iam::{role_account}:root") }, "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": "*" }
        ]
    });
    kms_account
        .kms_client()
        .await
        .put_key_policy()
        .key_id(&foreign.key_id)
        .policy(key_policy.to_string())
        .send()
        .await?;
    let report = test_connection(&vendor.settings, &spec, &who).await;
    assert!(report.ok, "{report:#?}");
    env.cleanup().await
}

/// Everything logged by every test of this file (SDK and hyper included, at TRACE), for a
/// search for secrets.
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
    fn text(&self) -> String {
        String::from_utf8_lossy(
            &self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }
}

/// Installs the capturing subscriber as the global default (once); every test calls it first,
/// so no callsite is seen before it is installed.
fn capture() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        captured
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_keys_are_checked_and_their_secret_never_logged() -> anyhow::Result<()> {
    let captured = capture();
    let env = TestEnv::new().await?;
    let prefix = "acme";
    let user = create_user_with_keys(
        &env,
        &format!("customer-{}", env.id),
        &emulator_permission_policy(&env.bucket, prefix, Some(&env.kms_key.arn)),
    )
    .await?;
    let secret = user.keys.secret_access_key.expose_secret().to_owned();
    let keys = |id: &str, secret: &str| StorageAccess::AccessKeys {
        access_key_id: id.to_owned(),
        secret_access_key: SecretString::from(secret.to_owned()),
    };
    let who = identity("acme", &ext());
    let base = env.s3.clone();

    let good = spec(&env, prefix, keys(&user.keys.access_key_id, &secret));
    let report = test_connection(&base, &good, &who).await;
    assert!(report.ok, "{report:#?}");
    assert_eq!(report.steps[0].name, "check_keys");
    assert!(probes_left(&env, prefix).await?.is_empty());

    let wrong_secret = format!("{}x", &secret[..secret.len() - 1]);
    let bad = spec(&env, prefix, keys(&user.keys.access_key_id, &wrong_secret));
    let report = test_connection(&base, &bad, &who).await;
    assert_fails_at(
        &report,
        "check_keys",
        "invalid_keys",
        &[&user.keys.access_key_id, "create a new access key"],
    );
    let err = connect(&base, &bad, &who)
        .await
        .expect_err("a wrong secret");
    assert!(matches!(err, StorageError::BadCredentials { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(
        !err.to_string().contains(&wrong_secret) && !format!("{err:?}").contains(&wrong_secret)
    );

    let unknown = spec(&env, prefix, keys("AKIAUNKNOWNKEY000000", &secret));
    let report = test_connection(&base, &unknown, &who).await;
    assert_fails_at(
        &report,
        "check_keys",
        "invalid_keys",
        &["AKIAUNKNOWNKEY000000"],
    );

    let serialized = serde_json::to_string(&report)?;
    let logged = captured.text();
    assert!(
        logged.contains("storage connection test step"),
        "the capture works: {} bytes: {}",
        logged.len(),
        &logged[..logged.len().min(3000)]
    );
    assert!(
        logged.contains("aws_smithy_runtime"),
        "the SDK's own logs are searched too"
    );
    for s in [&secret, &wrong_secret] {
        assert!(!logged.contains(s.as_str()), "a secret key was logged");
        assert!(!serialized.contains(s.as_str()));
    }
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_nobody_listens_on_is_unreachable_for_every_kind_of_access()
-> anyhow::Result<()> {
    capture();
    let env = TestEnv::new().await?;
    // A port that was free a moment ago: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let nowhere = Some(format!("http://127.0.0.1:{port}"));
    let who = identity("acme", &ext());
    for (access, first) in [
        (StorageAccess::Vendor, "vendor_credentials"),
        (
            StorageAccess::Role {
                role_arn: "arn:aws:iam::000000000000:role/coffer".into(),
            },
            "assume_role",
        ),
        (
            StorageAccess::AccessKeys {
                access_key_id: "AKIAEXAMPLE".into(),
                secret_access_key: SecretString::from("s".to_owned()),
            },
            "check_keys",
        ),
    ] {
        let mut s = spec(&env, "acme", access);
        s.endpoint = nowhere.clone();
        let report = test_connection(&env.s3, &s, &who).await;
        assert_fails_at(
            &report,
            first,
            "endpoint_unreachable",
            &[&format!("127.0.0.1:{port}"), "check the endpoint URL"],
        );
    }
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_for_tenant_a_cannot_write_under_tenant_b_and_presents_its_own_external_id()
-> anyhow::Result<()> {
    capture();
    let env = TestEnv::new().await?;
    let vendor = create_vendor(&env).await?;
    // The customer's role allows the whole bucket; the session is narrowed by Coffer.
    let bucket_arn = format!("arn:aws:s3:::{}", env.bucket);
    let role = create_role(
        &env,
        &format!("coffer-shared-{}", env.id),
        &trust_policy(&vendor.arn, &[ext()]),
        &json!({
            "Version": "2012-10-17",
            "Statement": [{ "Effect": "Allow", "Action": "s3:*", "Resource": [bucket_arn, format!("{bucket_arn}/*")] }]
        }),
    )
    .await?;
    let cache = ClientCache::new(vendor.settings.clone());
    let acme = spec(
        &env,
        "base/acme",
        StorageAccess::Role {
            role_arn: role.clone(),
        },
    );
    let client = cache.client(&acme, &identity("acme", &ext())).await?;
    let put = |key: &str| {
        client
            .put_object()
            .bucket(&env.bucket)
            .key(key)
            .body(ByteStream::from_static(b"x"))
            .send()
    };
    put("base/acme/own").await.expect("own prefix is writable");
    let err = put("base/globex/theirs")
        .await
        .map_err(|e| StorageError::from_sdk("PutObject", &env.bucket, e))
        .expect_err("wrote into another tenant's prefix");
    assert_eq!(err.code(), "access_denied", "{err}");
    let err = put("base/acme-evil/x")
        .await
        .map_err(|e| StorageError::from_sdk("PutObject", &env.bucket, e))
        .expect_err("wrote into a sibling prefix sharing the tenant's name as a prefix");
    assert_eq!(err.code(), "access_denied", "{err}");

    // Same role and tenant, another external id: AssumeRole presents it and is refused.
    let err = cache
        .client(&acme, &identity("acme", "coffer-org-00D000000000666AAA"))
        .await
        .expect_err("assumed with another external id");
    assert_eq!(err.code(), "trust_policy", "{err}");
    assert!(
        err.to_string().contains("coffer-org-00D000000000666AAA"),
        "{err}"
    );
    assert_eq!(cache.len(), 1, "failures are not cached");
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_hands_out_one_client_per_storage_over_a_shared_pool() -> anyhow::Result<()> {
    capture();
    let env = TestEnv::new().await?;
    let cache = ClientCache::new(env.s3.clone());
    let acme = spec(&env, "acme", StorageAccess::Vendor);
    let who = identity("acme", "coffer-org-x");
    let client = cache.client(&acme, &who).await?;
    client
        .put_object()
        .bucket(&env.bucket)
        .key("acme/hello")
        .body(ByteStream::from_static(b"hi"))
        .send()
        .await?;
    cache
        .client(&acme, &who)
        .await?
        .head_object()
        .bucket(&env.bucket)
        .key("acme/hello")
        .send()
        .await?;
    assert_eq!(cache.len(), 1);
    cache
        .client(
            &spec(&env, "globex", StorageAccess::Vendor),
            &identity("globex", "coffer-org-y"),
        )
        .await?;
    assert_eq!(cache.len(), 2);
    assert!(cache.invalidate(&acme, &who));
    assert_eq!(cache.len(), 1);
    let _: &S3Settings = cache.base();
    env.cleanup().await
}
