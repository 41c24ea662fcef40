//! `coffer backups`: what the catalog knows about an org's backups.

use anyhow::Context;
use coffer_catalog::BackupRecord;
use coffer_core::{BackupId, OrgId, TenantId};
use serde_json::json;

use coffer_worker::lookup::record_as_of;
use coffer_worker::storage::StorageClients;

use super::{print_json, say};
use crate::args::Services;
use crate::connect;

/// Backup inspection.
#[derive(Debug, clap::Subcommand)]
pub enum BackupsCommand {
    /// List an org's backups, newest first.
    List {
        #[command(flatten)]
        services: Services,
        /// The tenant.
        #[arg(long)]
        tenant: TenantId,
        /// The org.
        #[arg(long)]
        org: OrgId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a record as of a time: the newest complete backup that held it by then (an
    /// incremental, or the older backup an unchanged record was last read in) and its fields,
    /// read back from that backup's bucket.
    Record {
        #[command(flatten)]
        services: Services,
        /// The tenant.
        #[arg(long)]
        tenant: TenantId,
        /// The org.
        #[arg(long)]
        org: OrgId,
        /// The record's Salesforce id.
        #[arg(long)]
        id: String,
        /// The time (RFC 3339, e.g. 2026-11-30T18:00:00Z); now by default.
        #[arg(long, value_parser = parse_rfc3339)]
        as_of: Option<time::OffsetDateTime>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one backup and its objects.
    Show {
        #[command(flatten)]
        services: Services,
        /// The backup.
        #[arg(long)]
        backup: BackupId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a backups command.
pub async fn run(cmd: BackupsCommand) -> anyhow::Result<()> {
    match cmd {
        BackupsCommand::List {
            services,
            tenant,
            org,
            json,
        } => {
            let catalog = connect::catalog(&services).await?;
            let backups = catalog.backups_of(&tenant, &org).await?;
            if json {
                return print_json(
                    &json!({ "backups": backups.iter().map(backup_json).collect::<Vec<_>>() }),
                );
            }
            say(format!(
                "{:<36}  {:<11}  {:<8}  {:>8}  {:>10}  {:>12}  started",
                "backup", "kind", "state", "objects", "records", "bytes"
            ));
            for b in &backups {
                say(format!(
                    "{:<36}  {:<11}  {:<8}  {:>8}  {:>10}  {:>12}  {}",
                    b.backup_id,
                    b.kind,
                    b.state.as_str(),
                    b.objects,
                    b.record_count,
                    b.bytes,
                    rfc3339(b.started_at)
                ));
            }
            Ok(())
        }
        BackupsCommand::Record {
            services,
            tenant,
            org,
            id,
            as_of,
            json,
        } => {
            let catalog = connect::catalog(&services).await?;
            let storage = StorageClients::new(
                services.s3(),
                services.vendor.clone(),
                services.envelope_key()?,
            );
            let at = as_of.unwrap_or_else(time::OffsetDateTime::now_utc);
            let found = Box::pin(record_as_of(&catalog, &storage, (&tenant, &org), &id, at))
                .await?
                .with_context(|| {
                    format!(
                        "no complete backup of org {org} held record {id} by {}",
                        rfc3339(at)
                    )
                })?;
            let v = &found.version;
            let out = json!({
                "record_id": id,
                "as_of": rfc3339(at),
                "backup_id": v.backup_id.to_string(),
                "backup_completed_at": rfc3339(v.backup_completed_at),
                "sobject": v.sobject,
                "object_key": v.object_key,
                "row": v.row,
                "deleted": v.deleted,
                "system_modstamp": v.system_modstamp.map(rfc3339),
                "fields": found.fields.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            });
            if json {
                return print_json(&out);
            }
            say(serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        BackupsCommand::Show {
            services,
            backup,
            json,
        } => {
            let catalog = connect::catalog(&services).await?;
            let record = catalog
                .backup(backup)
                .await?
                .with_context(|| format!("no backup {backup}"))?;
            let storage = catalog.storage(record.storage_id).await?;
            let objects = catalog.backup_objects(backup).await?;
            let objects_json: Vec<_> = objects
                .iter()
                .map(|o| json!({"key": o.key, "rows": o.rows, "bytes": o.size, "sha256": o.sha256}))
                .collect();
            let mut out = backup_json(&record);
            out["bucket"] = json!(storage.settings.bucket);
            out["objects"] = json!(objects_json);
            if json {
                return print_json(&out);
            }
            say(serde_json::to_string_pretty(&out)?);
            Ok(())
        }
    }
}

pub(super) fn parse_rfc3339(s: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time ({e}), e.g. 2026-11-30T18:00:00Z"))
}

/// A timestamp as scripts expect it, e.g. `2026-11-25T06:36:47.468054Z`.
pub(super) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// A backup row as JSON.
pub fn backup_json(b: &BackupRecord) -> serde_json::Value {
    json!({
        "backup_id": b.backup_id.to_string(),
        "tenant": b.tenant_id.as_str(),
        "org_id": b.org_id.as_str(),
        "state": b.state.as_str(),
        "kind": b.kind,
        "base_backup_id": b.base_backup_id.map(|id| id.to_string()),
        "objects": b.objects,
        "records": b.record_count,
        "bytes": b.bytes,
        "started_at": rfc3339(b.started_at),
        "completed_at": b.completed_at.map(rfc3339),
    })
}
