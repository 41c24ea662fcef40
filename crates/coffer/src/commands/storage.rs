//! `coffer storage`: a tenant's own bucket (bring your own storage).
//!
//! The flow a customer's security team follows: `policy` prints what to grant (the permission
//! policy and the trust policy with the external ids), `set` records the bucket and how to reach
//! it, `test` runs the connection test and records its outcome, `enable` sends new backups there
//! (refused unless the last test passed), `disable` sends them back to the default storage while
//! keeping the configuration, `reset` forgets it. `show` prints the whole state; secrets never.

use anyhow::{Context, bail};
use coffer_catalog::{
    Catalog, NewStorage, OrgRecord, Sse, StorageAccess, StorageRecord, TenantRecord, secret_context,
};
use coffer_core::TenantId;
use coffer_core::layout::{BasePath, BucketName, tenant_prefix};
use coffer_core::policy::{external_id, permission_policy, trust_policy};
use coffer_storage::access::SessionIdentity;
use coffer_storage::probe::{ConnectionReport, test_connection};
use coffer_worker::storage::{identity_for, spec_of};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::{print_json, say};
use crate::args::Services;
use crate::connect;

/// Storage administration for one tenant.
#[derive(Debug, clap::Subcommand)]
pub enum StorageCommand {
    /// Configure the tenant's own bucket (disabled until tested and enabled).
    Set(SetArgs),
    /// Show the tenant's storages, which one new backups go to, and the last test.
    Show(TenantArgs),
    /// Test the tenant's own storage (or the default one if none): each step with its outcome.
    Test(TenantArgs),
    /// Send new backups to the tenant's own storage; refused unless its last test passed.
    Enable(TenantArgs),
    /// Send new backups to the default storage again, keeping the configuration.
    Disable(TenantArgs),
    /// Forget the tenant's own storage; new backups go to the default storage.
    Reset(TenantArgs),
    /// Print the IAM permission policy and trust policy to give Coffer access to the bucket.
    Policy(PolicyArgs),
}

/// Options shared by the commands that take only a tenant.
#[derive(Debug, clap::Args)]
pub struct TenantArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Encryption of the objects Coffer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SseArg {
    /// SSE-S3 (S3-managed keys).
    SseS3,
    /// SSE-KMS with `--kms-key-id`.
    SseKms,
}

/// `storage set` options.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// The customer's bucket.
    #[arg(long)]
    bucket: BucketName,
    /// The bucket's region (defaults to the service region).
    #[arg(long)]
    bucket_region: Option<String>,
    /// Prefix in the bucket under which Coffer writes.
    #[arg(long, default_value = "")]
    base_path: BasePath,
    /// Server-side encryption.
    #[arg(long, value_enum, default_value = "sse-kms")]
    sse: SseArg,
    /// KMS key id or ARN (with `--sse sse-kms`).
    #[arg(long)]
    kms_key_id: Option<String>,
    /// Use an S3 Bucket Key (fewer KMS calls).
    #[arg(long)]
    bucket_key: bool,
    /// The role Coffer assumes in the customer's account.
    #[arg(long, conflicts_with = "access_key_id")]
    role_arn: Option<String>,
    /// The customer's access key id (when the customer gives keys instead of a role).
    #[arg(long)]
    access_key_id: Option<String>,
    /// Name of the environment variable holding the secret access key (never a flag value, so
    /// it stays out of shell history and process lists).
    #[arg(long, default_value = "COFFER_STORAGE_SECRET_ACCESS_KEY")]
    secret_access_key_env: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `storage policy` options.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// The IAM principal (user or role ARN) Coffer's workers run as, which the trust policy
    /// must allow.
    #[arg(long, env = "COFFER_VENDOR_PRINCIPAL_ARN")]
    vendor_principal_arn: String,
    /// Print the policies as one line of JSON (without it, indented for pasting).
    #[arg(long)]
    json: bool,
}

/// Runs a storage command.
pub async fn run(cmd: StorageCommand) -> anyhow::Result<()> {
    match cmd {
        StorageCommand::Set(args) => set(args).await,
        StorageCommand::Show(args) => show(args).await,
        StorageCommand::Test(args) => test(args).await,
        StorageCommand::Enable(args) => enable(args).await,
        StorageCommand::Disable(args) => disable(args).await,
        StorageCommand::Reset(args) => reset(args).await,
        StorageCommand::Policy(args) => policy(args).await,
    }
}

async fn tenant(catalog: &Catalog, tenant: &TenantId) -> anyhow::Result<TenantRecord> {
    catalog.tenant(tenant).await?.with_context(|| {
        format!("tenant {tenant} does not exist: create it with `coffer tenant create`")
    })
}

async fn set(args: SetArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let access = access_of(&args)?;
    let sse = match (args.sse, &args.kms_key_id) {
        (SseArg::SseKms, Some(key_id)) => Sse::Kms {
            key_id: key_id.clone(),
            bucket_key: args.bucket_key,
        },
        (SseArg::SseKms, None) => bail!("--sse sse-kms needs --kms-key-id (a key id or ARN)"),
        (SseArg::SseS3, Some(_)) => bail!("--kms-key-id only applies to --sse sse-kms"),
        (SseArg::SseS3, None) => Sse::S3,
    };
    let storage = NewStorage {
        bucket: args.bucket.to_string(),
        region: args
            .bucket_region
            .clone()
            .unwrap_or_else(|| args.services.region.clone()),
        endpoint: None,
        base_path: args.base_path.clone(),
        sse,
        access,
    };
    tenant(&catalog, &args.tenant).await?;
    let record = catalog.set_own_storage(&args.tenant, &storage).await?;
    super::done(
        args.json,
        json!({"tenant": args.tenant.as_str(), "storage_id": record.storage_id, "bucket": storage.bucket, "enabled": false}),
        format!(
            "tenant {} has its own storage {} (bucket {}), not in use yet: run `coffer storage test --tenant {}`, then `coffer storage enable --tenant {}`; until then new backups go to the default storage",
            args.tenant, record.storage_id, storage.bucket, args.tenant, args.tenant
        ),
    )
}

/// The access of `storage set`: a role, or access keys whose secret is sealed at once.
fn access_of(args: &SetArgs) -> anyhow::Result<StorageAccess> {
    match (&args.role_arn, &args.access_key_id) {
        (Some(role_arn), None) => Ok(StorageAccess::Role {
            role_arn: role_arn.clone(),
        }),
        (None, Some(access_key_id)) => {
            let key = args.services.envelope_key()?.context(
                "storing access keys needs the envelope key: set COFFER_ENVELOPE_KEY_FILE (or COFFER_ENVELOPE_KEY) to 32 random bytes in base64",
            )?;
            let secret = std::env::var(&args.secret_access_key_env).with_context(|| {
                format!(
                    "the secret access key is read from the environment variable {}, which is not set",
                    args.secret_access_key_env
                )
            })?;
            let context = secret_context(&args.tenant, access_key_id);
            Ok(StorageAccess::AccessKeys {
                access_key_id: access_key_id.clone(),
                secret_sealed: key.seal(&SecretString::from(secret), &context),
            })
        }
        _ => bail!("give either --role-arn or --access-key-id"),
    }
}

async fn show(args: TenantArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let t = tenant(&catalog, &args.tenant).await?;
    let default = catalog.storage(t.default_storage_id).await?;
    let orgs = catalog.orgs_of(&args.tenant).await?;
    let own_enabled = t.own.as_ref().is_some_and(|o| o.enabled);
    let value = json!({
        "tenant": args.tenant.as_str(),
        "new_backups_go_to": if own_enabled { "own" } else { "default" },
        "default": storage_json(&default),
        "own": t.own.as_ref().map(|o| {
            let mut v = storage_json(&o.storage);
            v["enabled"] = json!(o.enabled);
            v
        }),
        "external_ids": external_ids(&args.services.vendor, &orgs),
    });
    if args.json {
        return print_json(&value);
    }
    say(serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// A storage for people and scripts: everything but the secret, which shows as sealed.
fn storage_json(s: &StorageRecord) -> Value {
    let settings = &s.settings;
    let access = match &settings.access {
        StorageAccess::Vendor => json!({ "kind": "vendor" }),
        StorageAccess::Role { role_arn } => json!({ "kind": "role", "role_arn": role_arn }),
        StorageAccess::AccessKeys { access_key_id, .. } => json!({
            "kind": "access_keys", "access_key_id": access_key_id, "secret_access_key": "(sealed)"
        }),
    };
    let encryption = match &settings.sse {
        Sse::Kms { key_id, bucket_key } => {
            json!({ "sse": "sse-kms", "kms_key_id": key_id, "bucket_key": bucket_key })
        }
        Sse::S3 => json!({ "sse": "sse-s3" }),
    };
    json!({
        "storage_id": s.storage_id,
        "bucket": settings.bucket,
        "region": settings.region,
        "base_path": settings.base_path.as_str(),
        "encryption": encryption,
        "access": access,
        "last_test": s.last_test.as_ref().map(|t| json!({
            "at": super::backups::rfc3339(t.at),
            "ok": t.ok,
        })),
    })
}

fn external_ids(vendor: &str, orgs: &[OrgRecord]) -> Vec<String> {
    orgs.iter()
        .map(|o| external_id(vendor, &o.org_id))
        .collect()
}

async fn test(args: TenantArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let t = tenant(&catalog, &args.tenant).await?;
    let storage = t.own.map_or(t.storage, |o| o.storage);
    let orgs = catalog.orgs_of(&args.tenant).await?;
    let report = run_test(&args.services, &storage, &orgs).await?;
    catalog
        .record_storage_test(
            storage.storage_id,
            report.ok,
            &serde_json::to_string(&report)?,
        )
        .await?;
    if args.json {
        print_json(&serde_json::to_value(&report)?)?;
    } else {
        print_report(&report);
    }
    if !report.ok {
        bail!(
            "the connection test of tenant {}'s storage failed",
            args.tenant
        );
    }
    Ok(())
}

/// Tests `storage` as each org's session would reach it (one external id per org).
async fn run_test(
    services: &Services,
    storage: &StorageRecord,
    orgs: &[OrgRecord],
) -> anyhow::Result<ConnectionReport> {
    let key = services.envelope_key()?;
    let spec = spec_of(storage, key.as_ref())?;
    let needs_org = matches!(storage.settings.access, StorageAccess::Role { .. });
    if needs_org && orgs.is_empty() {
        bail!(
            "the role's external id is derived from the org id: connect an org first (`coffer tenant connect-org`)"
        );
    }
    let identities: Vec<SessionIdentity> = if needs_org {
        orgs.iter()
            .map(|o| {
                identity_for(
                    &services.vendor,
                    &storage.tenant_id,
                    &o.org_id,
                    "storage-test",
                )
            })
            .collect()
    } else {
        vec![SessionIdentity {
            tenant: storage.tenant_id.to_string(),
            external_id: String::new(),
            job: "storage-test".to_owned(),
        }]
    };
    let mut merged: Option<ConnectionReport> = None;
    for (who, org) in identities
        .iter()
        .zip(orgs.iter().map(Some).chain(std::iter::repeat(None)))
    {
        let report = test_connection(&services.s3(), &spec, who).await;
        merged = Some(match merged {
            None => report,
            Some(mut all) => {
                all.ok &= report.ok;
                let org = org.map(|o| o.org_id.to_string()).unwrap_or_default();
                all.steps.extend(report.steps.into_iter().map(|mut s| {
                    s.name = format!("{} (org {org})", s.name);
                    s
                }));
                all
            }
        });
    }
    merged.context("no connection test ran")
}

fn print_report(report: &ConnectionReport) {
    for step in &report.steps {
        let mark = if step.ok { "ok  " } else { "FAIL" };
        let code = step.code.as_deref().unwrap_or("");
        say(format!(
            "{mark} {:<28} {:>6} ms  {code} {}",
            step.name, step.millis, step.message
        ));
    }
    say(if report.ok {
        "connection test passed"
    } else {
        "connection test failed"
    });
}

async fn enable(args: TenantArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let storage = catalog.enable_own_storage(&args.tenant).await?;
    say(format!(
        "new backups of tenant {} go to bucket {} (storage {})",
        args.tenant, storage.settings.bucket, storage.storage_id
    ));
    Ok(())
}

async fn disable(args: TenantArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    catalog.disable_own_storage(&args.tenant).await?;
    say(format!(
        "new backups of tenant {} go to the default storage; the own storage stays configured (`coffer storage enable` to use it again)",
        args.tenant
    ));
    Ok(())
}

async fn reset(args: TenantArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    catalog.reset_storage(&args.tenant).await?;
    say(format!(
        "tenant {} uses the default storage; backups written to its own bucket stay listed and restorable from there",
        args.tenant
    ));
    Ok(())
}

async fn policy(args: PolicyArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let t = tenant(&catalog, &args.tenant).await?;
    let storage = t.own.map_or(t.storage, |o| o.storage);
    let settings = &storage.settings;
    let prefix = tenant_prefix(&settings.base_path, &args.tenant);
    let key = match &settings.sse {
        Sse::Kms { key_id, .. } => Some(key_id.as_str()),
        Sse::S3 => None,
    };
    let orgs = catalog.orgs_of(&args.tenant).await?;
    let policies = json!({
        "permission_policy": permission_policy(&settings.bucket, &prefix, key),
        "trust_policy": trust_policy(&args.vendor_principal_arn, &external_ids(&args.services.vendor, &orgs)),
    });
    match args.json {
        true => print_json(&policies),
        false => {
            say(serde_json::to_string_pretty(&policies)?);
            Ok(())
        }
    }
}
