//! Least privilege, sufficient and nothing more.
//!
//! The customer's role carries exactly the permission policy `coffer storage policy` prints
//! (`coffer_core::policy::permission_policy`, plus the emulator's names of the same actions), and
//! every session Coffer opens is narrowed by its session policy. Under that, five operations run:
//! the connection test (`coffer storage test`), a backup through the queue and a worker, a restore
//! read (a record as of now, read back from the bucket), `coffer verify`, and a retention sweep
//! that deletes a back-dated backup and aborts an upload left open under it.
//!
//! Then, one test per action of the policy, the customer removes that one action from the role
//! (the test replaces the role's policy in the emulator, after two backups were taken under the
//! full policy), and the five operations run again: the test names which fail, and each failure
//! must carry the classified error naming the missing permission. Every other operation must
//! still pass, so an action no operation needs would show up as a case with no failure.
//!
//! Some actions cannot be refused by the emulator: it authorizes the S3 side of SSE-KMS only
//! against the key policy of another account's key (never the caller's identity policy), and a
//! delete with a version id as a plain `s3:DeleteObject` (`s3:DeleteObjects` for batches). Their
//! tests assert that everything still passes and say why, so a newer emulator that enforces them
//! fails the test and the case moves to the enforced ones.

use std::time::Duration;

use coffer_core::layout::OrgPrefix;
use coffer_core::retention::Policy;
use coffer_core::{BackupId, layout::BasePath};
use coffer_storage::probe::test_connection;
use coffer_testkit::iam::{emulator_permission_policy, set_role_policy, without_action};
use coffer_worker::janitor::sweep::{Janitor, SweepSettings, sweep_org};
use coffer_worker::lookup::record_as_of;
use coffer_worker::storage::{identity_for, spec_of};
use coffer_worker::verify::{VerifySettings, verify_tenant};
use serde_json::Value;

use crate::common::{Customer, VENDOR};

/// The operations every case runs, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    /// A record as of now, read back from its backup's part.
    RestoreRead,
    /// `coffer verify` of the tenant, every object read back.
    Verify,
    /// A full backup through the queue and a worker.
    Backup,
    /// A retention sweep deleting the back-dated backup and the upload left open under it.
    Sweep,
    /// `coffer storage test`: the connection test's steps.
    ConnectionTest,
}

/// What each operation did: `Ok` with a summary, or `Err` with the error a user sees.
type Outcomes = Vec<(Op, Result<String, String>)>;

/// A customer with two complete backups (the first back-dated 20 days, so a 10-day policy drops
/// it), an upload left open under the first, and a retention policy keeping 10 days (deleting
/// every version when `versioned`, on a bucket with versioning on).
async fn customer_with_history(versioned: bool) -> anyhow::Result<(Customer, BackupId)> {
    let customer =
        Customer::new(|bucket, prefix| emulator_permission_policy(bucket, prefix, None)).await?;
    let env = &customer.env;
    if versioned {
        env.enable_versioning(&customer.bucket).await?;
    }
    let first = customer
        .backup()
        .await?
        .map_err(|e| anyhow::anyhow!("first backup under the full policy: {e}"))?;
    coffer_testkit::history::back_date(&env.catalog, first.backup_id, 20).await?;
    customer
        .backup()
        .await?
        .map_err(|e| anyhow::anyhow!("second backup under the full policy: {e}"))?;
    let leftover = format!(
        "{}records/Account/part-99999.csv.gz",
        OrgPrefix::new(
            &BasePath::new(crate::common::BASE)?,
            &customer.tenant,
            &customer.org
        )
        .backup_prefix(&first.backup_id)
    );
    env.s3_client
        .create_multipart_upload()
        .bucket(&customer.bucket)
        .key(&leftover)
        .send()
        .await?;
    env.catalog
        .put_retention_policy(
            &customer.tenant,
            None,
            &Policy {
                keep_days: Some(10),
                delete_versions: versioned,
                ..Policy::default()
            },
        )
        .await?;
    Ok((customer, first.backup_id))
}

/// Runs the five operations as the customer's storage is configured now.
async fn run_operations(customer: &Customer, dropped: BackupId) -> anyhow::Result<Outcomes> {
    let mut outcomes = Vec::new();
    let catalog = &customer.env.catalog;

    let (header, rows) = customer.sim.table("Account").expect("accounts");
    let id_column = header.iter().position(|h| h == "Id").expect("Id column");
    let account = rows[0][id_column].clone();
    let clients = customer.clients();
    let read = record_as_of(
        catalog,
        &clients,
        (&customer.tenant, &customer.org),
        &account,
        time::OffsetDateTime::now_utc(),
    )
    .await;
    outcomes.push((
        Op::RestoreRead,
        match read {
            Ok(Some(record)) => Ok(format!("{} fields of {account}", record.fields.len())),
            Ok(None) => Err(format!("no backup holds {account}")),
            Err(e) => Err(e.to_string()),
        },
    ));

    let clients = customer.clients();
    let verified = verify_tenant(
        catalog,
        &clients,
        &customer.tenant,
        None,
        &VerifySettings::default(),
    )
    .await;
    outcomes.push((
        Op::Verify,
        match verified {
            Ok(report) if report.is_clean() => Ok(format!(
                "{} objects read",
                report.orgs.iter().map(|o| o.objects_read).sum::<u64>()
            )),
            Ok(report) => Err(format!(
                "problems: {:?}",
                report
                    .orgs
                    .iter()
                    .flat_map(|o| &o.problems)
                    .chain(&report.stray)
                    .map(|p| format!("{} {}: {}", p.kind.as_str(), p.key, p.detail))
                    .collect::<Vec<_>>()
            )),
            Err(e) => Err(e.to_string()),
        },
    ));

    outcomes.push((
        Op::Backup,
        customer
            .backup()
            .await?
            .map(|b| format!("backup {} complete", b.backup_id)),
    ));

    let clients = customer.clients();
    let settings = SweepSettings {
        grace: Duration::ZERO,
        stale_upload_age: Duration::ZERO,
        ..SweepSettings::default()
    };
    let janitor = Janitor {
        catalog,
        storage: &clients,
        settings: &settings,
        name: "security-test",
    };
    let swept = sweep_org(&janitor, &customer.tenant, &customer.org).await;
    outcomes.push((
        Op::Sweep,
        match swept {
            Ok(sweep)
                if sweep.failures.is_empty()
                    && sweep.expired.iter().any(|e| e.backup_id == dropped) =>
            {
                Ok(format!(
                    "{} backups deleted, {} uploads aborted",
                    sweep.expired.len(),
                    sweep.uploads_aborted
                ))
            }
            Ok(sweep) if sweep.failures.is_empty() => Err(format!(
                "the dropped backup {dropped} was not deleted: {:?}",
                sweep.refused
            )),
            Ok(sweep) => Err(sweep.failures.join("; ")),
            Err(e) => Err(e.to_string()),
        },
    ));
    // Last: a probe it cannot delete would be an unknown object to `coffer verify`.
    let spec = spec_of(&customer.storage, None)?;
    let who = identity_for(VENDOR, &customer.tenant, &customer.org, "security-probe");
    let report = test_connection(&customer.vendor.settings, &spec, &who).await;
    outcomes.push((
        Op::ConnectionTest,
        match report.first_failure() {
            None => Ok("every step passed".to_owned()),
            Some(step) => Err(format!(
                "{}: {}: {}",
                step.name,
                step.code.as_deref().unwrap_or_default(),
                step.message
            )),
        },
    ));

    for (op, outcome) in &outcomes {
        eprintln!("{op:?}: {outcome:?}");
    }
    Ok(outcomes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_policy_suffices_for_backup_restore_read_verify_and_sweep()
-> anyhow::Result<()> {
    let (customer, dropped) = Box::pin(customer_with_history(false)).await?;
    let outcomes = Box::pin(run_operations(&customer, dropped)).await?;
    for (op, outcome) in &outcomes {
        assert!(
            outcome.is_ok(),
            "{op:?} failed under the documented policy: {outcome:?}"
        );
    }
    let keys = coffer_e2e::list_keys(&customer.env.s3_client, &customer.bucket, "").await?;
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&format!("{}/", customer.prefix()))),
        "everything under the tenant's prefix: {keys:?}"
    );
    let open =
        coffer_storage::list::list_open_uploads(&customer.env.s3_client, &customer.bucket, "")
            .await?;
    assert!(
        open.is_empty(),
        "the sweep aborted the upload left open: {open:?}"
    );
    customer.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_policy_deletes_every_version_on_a_versioned_bucket() -> anyhow::Result<()> {
    let (customer, dropped) = Box::pin(customer_with_history(true)).await?;
    let outcomes = Box::pin(run_operations(&customer, dropped)).await?;
    for (op, outcome) in &outcomes {
        assert!(
            outcome.is_ok(),
            "{op:?} failed under the documented policy: {outcome:?}"
        );
    }
    let prefix = OrgPrefix::new(
        &customer.storage.settings.base_path,
        &customer.tenant,
        &customer.org,
    )
    .backup_prefix(&dropped);
    let left =
        coffer_storage::list::list_versions(&customer.env.s3_client, &customer.bucket, &prefix)
            .await?;
    assert!(
        left.is_empty(),
        "versions or delete markers of the deleted backup stay: {left:?}"
    );
    customer.finish().await
}

/// What a case expects of the operations once its action is gone.
enum Expect {
    /// These operations fail, each with an error containing every one of its strings; the
    /// others pass.
    Fails(&'static [(Op, &'static [&'static str])]),
    /// The emulator cannot refuse the action (the reason); every operation passes.
    NotEnforcedByTheEmulator(&'static str),
}

/// Removes `action` from the customer's role and checks the operations against `expect`.
async fn without(action: &str, versioned: bool, expect: Expect) -> anyhow::Result<()> {
    let (customer, dropped) = Box::pin(customer_with_history(versioned)).await?;
    let policy: Value = without_action(
        coffer_core::policy::permission_policy(&customer.bucket, &customer.prefix(), None),
        action,
    );
    assert_ne!(
        policy,
        coffer_core::policy::permission_policy(&customer.bucket, &customer.prefix(), None),
        "{action} is in the documented policy"
    );
    set_role_policy(
        &customer.env,
        &customer.role_name,
        &coffer_core::policy::with_emulator_equivalents(policy),
    )
    .await?;
    let outcomes = Box::pin(run_operations(&customer, dropped)).await?;
    match expect {
        Expect::Fails(failing) => {
            for (op, outcome) in &outcomes {
                match failing.iter().find(|(f, _)| f == op) {
                    Some((_, names)) => {
                        let Err(error) = outcome else {
                            panic!("{op:?} passed without {action}: {outcome:?}");
                        };
                        for name in *names {
                            assert!(
                                error.contains(name),
                                "{op:?} without {action} failed, but its error lacks {name:?}: {error}"
                            );
                        }
                    }
                    None => assert!(
                        outcome.is_ok(),
                        "{op:?} failed without {action}, which it should not need: {outcome:?}"
                    ),
                }
            }
        }
        Expect::NotEnforcedByTheEmulator(why) => {
            eprintln!("{action} is not enforced by the emulator: {why}");
            for (op, outcome) in &outcomes {
                assert!(
                    outcome.is_ok(),
                    "the emulator now refuses {op:?} without {action}: move this case to the enforced ones, with what fails: {outcome:?}"
                );
            }
        }
    }
    customer.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_s3_put_object() -> anyhow::Result<()> {
    Box::pin(without(
        "s3:PutObject",
        false,
        Expect::Fails(&[
            (
                Op::ConnectionTest,
                &["put_probe", "access_denied", "s3:PutObject denied"],
            ),
            (Op::Backup, &["access denied", "s3:PutObject"]),
        ]),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_s3_get_object() -> anyhow::Result<()> {
    Box::pin(without(
        "s3:GetObject",
        false,
        Expect::Fails(&[
            (
                Op::ConnectionTest,
                &["get_probe", "access_denied", "s3:GetObject denied"],
            ),
            (Op::RestoreRead, &["access denied", "s3:GetObject"]),
            (Op::Verify, &["s3:GetObject"]),
        ]),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_s3_delete_object() -> anyhow::Result<()> {
    Box::pin(without(
        "s3:DeleteObject",
        false,
        Expect::Fails(&[
            (
                Op::ConnectionTest,
                &["delete_probe", "access_denied", "s3:DeleteObject denied"],
            ),
            (Op::Sweep, &["access denied", "s3:DeleteObject"]),
        ]),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_s3_abort_multipart_upload() -> anyhow::Result<()> {
    Box::pin(without(
        "s3:AbortMultipartUpload",
        false,
        Expect::Fails(&[(Op::Sweep, &["access denied", "s3:AbortMultipartUpload"])]),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_s3_list_bucket() -> anyhow::Result<()> {
    Box::pin(without(
        "s3:ListBucket",
        false,
        Expect::Fails(&[
            (
                Op::ConnectionTest,
                &["list_prefix", "access_denied", "s3:ListBucket denied"],
            ),
            (Op::Verify, &["access denied", "s3:ListBucket"]),
            // Each task lists what an earlier attempt may have left under its keys.
            (Op::Backup, &["access denied", "s3:ListBucket"]),
            (Op::Sweep, &["access denied", "s3:ListBucket"]),
        ]),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_s3_list_bucket_multipart_uploads() -> anyhow::Result<()> {
    Box::pin(without(
        "s3:ListBucketMultipartUploads",
        false,
        Expect::Fails(&[
            (
                Op::Verify,
                &["access denied", "s3:ListBucketMultipartUploads"],
            ),
            (
                Op::Sweep,
                &["access denied", "s3:ListBucketMultipartUploads"],
            ),
        ]),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_s3_get_bucket_location() -> anyhow::Result<()> {
    Box::pin(without(
        "s3:GetBucketLocation",
        false,
        Expect::Fails(&[(
            Op::ConnectionTest,
            &[
                "bucket_location",
                "access_denied",
                "s3:GetBucketLocation denied",
            ],
        )]),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_s3_get_bucket_versioning() -> anyhow::Result<()> {
    Box::pin(without(
        "s3:GetBucketVersioning",
        true,
        Expect::Fails(&[(Op::Sweep, &["access denied", "s3:GetBucketVersioning"])]),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_s3_list_bucket_versions() -> anyhow::Result<()> {
    Box::pin(without(
        "s3:ListBucketVersions",
        true,
        Expect::Fails(&[(Op::Sweep, &["access denied", "s3:ListBucketVersions"])]),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_s3_delete_object_version() -> anyhow::Result<()> {
    Box::pin(without(
        "s3:DeleteObjectVersion",
        true,
        Expect::NotEnforcedByTheEmulator(
            "it authorizes a delete with a version id as s3:DeleteObject, and DeleteObjects as \
             s3:DeleteObjects on the bucket; AWS checks s3:DeleteObjectVersion per versioned key, \
             so there the sweep of a versioned bucket fails without it",
        ),
    ))
    .await
}

/// The connection test of an SSE-KMS storage on a role whose policy lacks `action` (a KMS
/// action): the only operation that touches the key without reading an SSE-KMS object back
/// while others write (which hangs fakecloud 0.51.0, see `TestEnv::create_tenant_with`).
async fn kms_without(action: &str) -> anyhow::Result<()> {
    let env = coffer_testkit::TestEnv::new().await?;
    let vendor = coffer_testkit::iam::create_vendor(&env).await?;
    let org = coffer_core::OrgId::new(coffer_testkit::TEST_ORG_ID)?;
    let prefix = "byo/acme";
    let full = coffer_core::policy::permission_policy(&env.bucket, prefix, Some(&env.kms_key.arn));
    let narrowed = without_action(full.clone(), action);
    assert_ne!(narrowed, full, "{action} is in the documented policy");
    let role = coffer_testkit::iam::create_role(
        &env,
        &format!("coffer-kms-{}", env.id),
        &coffer_core::policy::trust_policy(
            &vendor.arn,
            &[coffer_core::policy::external_id(VENDOR, &org)],
        ),
        &coffer_core::policy::with_emulator_equivalents(narrowed),
    )
    .await?;
    let spec = coffer_storage::access::StorageSpec {
        region: env.stack.region.clone(),
        endpoint: None,
        bucket: env.bucket.clone(),
        prefix: prefix.to_owned(),
        encryption: coffer_storage::Encryption::SseKms {
            key_id: env.kms_key.arn.clone(),
            bucket_key: false,
        },
        access: coffer_storage::access::StorageAccess::Role { role_arn: role },
    };
    let who = identity_for(
        VENDOR,
        &coffer_core::TenantId::new("acme")?,
        &org,
        "kms-probe",
    );
    let report = test_connection(&vendor.settings, &spec, &who).await;
    eprintln!(
        "{action} is not enforced by the emulator: it checks SSE-KMS use against the key policy \
         of another account's key only, never the caller's identity policy; on AWS the \
         connection test fails at put_probe (kms:GenerateDataKey) or get_probe (kms:Decrypt) \
         with code kms_denied"
    );
    assert!(
        report.ok,
        "the emulator now refuses the connection test without {action}: move this case to the \
         enforced ones, with what fails: {report:#?}"
    );
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_kms_generate_data_key() -> anyhow::Result<()> {
    kms_without("kms:GenerateDataKey").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_kms_decrypt() -> anyhow::Result<()> {
    kms_without("kms:Decrypt").await
}
