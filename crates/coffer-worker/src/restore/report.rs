//! The report of a finished restore, for the customer: every record, what was done with it,
//! where it went and, for those that failed, Salesforce's error, as `report.csv.gz` next to the
//! org's backups (`{org prefix}/restores/{restore_id}/report.csv.gz`), in the storage of the
//! backup restored from and under its encryption. It is written again, whole, if the restore is.

use std::io::Write;

use coffer_catalog::{BackupRecord, RestoreRecord};
use coffer_storage::MultipartWriter;
use coffer_storage::multipart::UploadOptions;
use flate2::write::GzEncoder;

use crate::backup::{BackupContext, BackupPlace};
use crate::error::WorkerError;

/// Writes the report of `restore` (restored from `backup`); returns its key.
pub(crate) async fn write_report(
    ctx: &BackupContext,
    restore: &RestoreRecord,
    backup: &BackupRecord,
) -> Result<String, WorkerError> {
    let rows = ctx
        .catalog
        .restore_rows(&restore.restore_id, None, None)
        .await?;
    let body = tokio::task::spawn_blocking(move || encode(&rows))
        .await
        .map_err(|e| WorkerError::Task(e.to_string()))??;
    let id: uuid::Uuid = restore
        .restore_id
        .parse()
        .map_err(|e| WorkerError::Task(format!("restore id {}: {e}", restore.restore_id)))?;
    let place = BackupPlace::of(ctx, backup).await?;
    let key = place.prefix.restore_report_key(&id);
    let options = UploadOptions {
        content_type: "text/csv; charset=utf-8".to_owned(),
        overwrite: true,
        ..UploadOptions::default()
    };
    let mut upload = MultipartWriter::create(&place.client, &place.target, key, options).await?;
    upload.write(&body).await?;
    let written = upload.finish().await?;
    tracing::info!(restore_id = %restore.restore_id, key = %written.key, bytes = written.size, "restore report written");
    Ok(written.key)
}

/// The report as gzip CSV.
fn encode(rows: &[coffer_catalog::RestoreRow]) -> Result<Vec<u8>, WorkerError> {
    let bad = |e: &dyn std::fmt::Display| WorkerError::Task(format!("restore report: {e}"));
    let gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut csv = csv::Writer::from_writer(gz);
    csv.write_record([
        "sobject",
        "source_id",
        "action",
        "outcome",
        "target_id",
        "error",
    ])
    .map_err(|e| bad(&e))?;
    for row in rows {
        csv.write_record([
            row.sobject.as_str(),
            row.source_id.as_str(),
            row.action.as_str(),
            row.state.as_str(),
            row.target_id.as_deref().unwrap_or(""),
            row.error.as_deref().unwrap_or(""),
        ])
        .map_err(|e| bad(&e))?;
    }
    let mut gz = csv.into_inner().map_err(|e| bad(&e))?;
    gz.flush().map_err(|e| bad(&e))?;
    gz.finish().map_err(|e| bad(&e))
}
