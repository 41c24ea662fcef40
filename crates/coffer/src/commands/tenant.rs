//! `coffer tenant`: create tenants (with their storage), connect their orgs, and resume an org
//! paused on its API limits.

use anyhow::Context;
use coffer_catalog::{NewStorage, OrgRecord, Sse, StorageAccess};
use coffer_core::layout::BasePath;
use coffer_core::{OrgId, TenantId};
use secrecy::SecretString;

use serde_json::json;

use super::done;
use crate::args::Services;
use crate::connect;

/// Tenant administration.
#[derive(Debug, clap::Subcommand)]
pub enum TenantCommand {
    /// Create a tenant, or move an existing one to new storage (old backups keep theirs).
    Create(CreateArgs),
    /// Connect a Salesforce org to a tenant (OAuth client credentials).
    ConnectOrg(ConnectOrgArgs),
    /// End an org's pause now (it was paused when its Salesforce API allowance ran out; run
    /// this once the customer raised the allocation). Its deferred jobs run on their next
    /// delivery.
    ResumeOrg(OrgArgs),
}

/// Options naming one org of a tenant.
#[derive(Debug, clap::Args)]
pub struct OrgArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// Salesforce org id (00D...).
    #[arg(long)]
    org: OrgId,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `tenant create` options.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    services: Services,
    /// Tenant id (a-z, 0-9, '-').
    #[arg(long)]
    tenant: TenantId,
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// Bucket backups go to.
    #[arg(long)]
    bucket: String,
    /// Prefix in the bucket.
    #[arg(long, default_value = "")]
    base_path: BasePath,
    /// SSE-KMS key id or ARN; without it objects use SSE-S3.
    #[arg(long)]
    kms_key_id: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `tenant connect-org` options.
#[derive(Debug, clap::Args)]
pub struct ConnectOrgArgs {
    #[command(flatten)]
    services: Services,
    /// The tenant.
    #[arg(long)]
    tenant: TenantId,
    /// Salesforce org id (00D...).
    #[arg(long)]
    org: OrgId,
    /// OAuth login URL (the org's My Domain).
    #[arg(long)]
    login_url: String,
    /// Connected app consumer key.
    #[arg(long)]
    client_id: String,
    /// Name of the environment variable holding the consumer secret (never a flag value, so
    /// it stays out of shell history and process lists).
    #[arg(long, default_value = "COFFER_SF_CLIENT_SECRET")]
    client_secret_env: String,
    /// REST API version.
    #[arg(long, default_value = "62.0")]
    api_version: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a tenant command.
pub async fn run(cmd: TenantCommand) -> anyhow::Result<()> {
    match cmd {
        TenantCommand::Create(args) => create(args).await,
        TenantCommand::ConnectOrg(args) => connect_org(args).await,
        TenantCommand::ResumeOrg(args) => resume_org(args).await,
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let sse = match args.kms_key_id {
        Some(key_id) => Sse::Kms {
            key_id,
            bucket_key: false,
        },
        None => Sse::S3,
    };
    let storage = NewStorage {
        bucket: args.bucket,
        region: args.services.region.clone(),
        endpoint: None,
        base_path: args.base_path,
        sse,
        access: StorageAccess::Vendor,
    };
    let name = args.name.unwrap_or_else(|| args.tenant.to_string());
    let tenant = catalog.put_tenant(&args.tenant, &name, &storage).await?;
    done(
        args.json,
        json!({"tenant": tenant.tenant_id.as_str(), "bucket": storage.bucket, "storage_id": tenant.storage.storage_id}),
        format!(
            "tenant {} writes new backups to bucket {} (storage {})",
            tenant.tenant_id, storage.bucket, tenant.storage.storage_id
        ),
    )
}

async fn connect_org(args: ConnectOrgArgs) -> anyhow::Result<()> {
    let secret = std::env::var(&args.client_secret_env)
        .with_context(|| format!("set the consumer secret in ${}", args.client_secret_env))?;
    let catalog = connect::catalog(&args.services).await?;
    catalog
        .tenant(&args.tenant)
        .await?
        .with_context(|| format!("unknown tenant {}", args.tenant))?;
    let org = OrgRecord {
        tenant_id: args.tenant,
        org_id: args.org,
        login_url: args.login_url,
        client_id: args.client_id,
        client_secret: SecretString::from(secret),
        api_version: args.api_version,
    };
    catalog.put_org(&org).await?;
    done(
        args.json,
        json!({"tenant": org.tenant_id.as_str(), "org_id": org.org_id.as_str()}),
        format!("org {} connected to tenant {}", org.org_id, org.tenant_id),
    )
}

async fn resume_org(args: OrgArgs) -> anyhow::Result<()> {
    let catalog = connect::catalog(&args.services).await?;
    let resumed = catalog.resume_org(&args.tenant, &args.org).await?;
    done(
        args.json,
        json!({"tenant": args.tenant.as_str(), "org_id": args.org.as_str(), "was_paused": resumed}),
        format!(
            "org {} of tenant {} {}",
            args.org,
            args.tenant,
            if resumed { "resumed" } else { "was not paused" }
        ),
    )
}
