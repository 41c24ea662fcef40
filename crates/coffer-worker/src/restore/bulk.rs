//! Large inserts through Bulk API 2.0 ingest, keyed so that they happen once.
//!
//! An object with the restore key field ([`crate::WorkerSettings::restore_key_field`]) and at
//! least [`crate::WorkerSettings::restore_bulk_threshold`] records to insert in one level is
//! loaded with `upsert` jobs on that field, [`BULK_JOB_ROWS`] records a load: each record
//! carries its source id in the key, so the results (which come back in no particular order)
//! are matched to their rows by it, and a load sent again after a crash or a lost answer
//! updates the records the first one created instead of creating them twice. Each load's ids
//! are stored before the next load starts.

use std::collections::{BTreeSet, HashMap};

use coffer_salesforce::{
    IngestJobResult, IngestOperation, IngestOutcome, IngestSpec, IngestValue, SObjectRecord,
};
use serde_json::Value;

use super::write::{Settled, Writer};
use crate::error::WorkerError;

/// Records one ingest job carries: Salesforce processes them in internal batches of 10,000,
/// and the ids of one job are stored before the next is sent.
pub(crate) const BULK_JOB_ROWS: usize = 10_000;

/// Records of one object as the columns and cells of an ingest upload: every field any record
/// sets, the key first; a field a record leaves out is sent unchanged (its default).
pub(crate) fn upload_rows(
    key: &str,
    records: &[SObjectRecord],
) -> (Vec<String>, Vec<Vec<IngestValue>>) {
    let others: BTreeSet<&str> = records
        .iter()
        .flat_map(|r| r.fields.keys().map(String::as_str))
        .filter(|f| *f != key)
        .collect();
    let columns: Vec<String> = std::iter::once(key)
        .chain(others)
        .map(str::to_owned)
        .collect();
    let rows = records
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| r.fields.get(c).map_or(IngestValue::Unchanged, cell))
                .collect()
        })
        .collect();
    (columns, rows)
}

/// A JSON field value as a Bulk CSV cell.
fn cell(value: &Value) -> IngestValue {
    match value {
        Value::Null => IngestValue::Null,
        Value::String(s) => IngestValue::Value(s.clone()),
        other => IngestValue::Value(other.to_string()),
    }
}

/// (source id, new id) written, (source id, error) failed, from the results of the jobs of one
/// load, matched by the restore key. A row in none of the results files was not processed: it
/// fails with a reason that says so, and the report lists it.
pub(crate) fn settle_results(
    key: &str,
    sent: &[String],
    results: &[IngestJobResult],
) -> Result<Settled, WorkerError> {
    let mut outcomes: HashMap<String, IngestOutcome<'_>> = HashMap::new();
    for result in results {
        outcomes.extend(result.by_column(key)?);
    }
    let jobs: Vec<&str> = results.iter().map(|r| r.job_id.as_str()).collect();
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    for source in sent {
        match outcomes.get(source) {
            Some(IngestOutcome::Succeeded(s)) => done.push((source.clone(), s.id.clone())),
            Some(IngestOutcome::Failed(f)) => {
                failed.push((source.clone(), format!("{}: {}", f.code, f.message)))
            }
            Some(IngestOutcome::Unprocessed(_)) | None => failed.push((
                source.clone(),
                format!("not processed by bulk ingest job {}", jobs.join(", ")),
            )),
        }
    }
    Ok((done, failed))
}

impl Writer<'_> {
    /// Upserts `records` (source id, record with its key set) of `sobject` by `key` with
    /// ingest jobs (one, unless the upload is too big for one), then stores their outcomes.
    pub(crate) async fn bulk_upsert(
        &self,
        sobject: &str,
        key: &str,
        records: Vec<(String, SObjectRecord)>,
    ) -> Result<(), WorkerError> {
        let spec = IngestSpec::new(
            sobject,
            IngestOperation::Upsert {
                external_id_field: key.to_owned(),
            },
        );
        let (sent, records): (Vec<String>, Vec<SObjectRecord>) = records.into_iter().unzip();
        let (columns, rows) = upload_rows(key, &records);
        drop(records);
        let results = self.sf.ingest(&spec, &columns, rows).await?;
        let (done, failed) = settle_results(key, &sent, &results)?;
        self.written(&done).await?;
        self.failed(&failed).await?;
        tracing::info!(restore_id = %self.restore.restore_id, %sobject, records = sent.len(), written = done.len(), "restored records loaded with bulk api 2.0");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_columns_with_the_key_first_and_gaps_left_unchanged() {
        let a = SObjectRecord::new("Contact")
            .field("Coffer_Source_Id__c", "003A")
            .field("LastName", "Ng")
            .field("DoNotCall", true)
            .field("Title", Value::Null);
        let b = SObjectRecord::new("Contact")
            .field("Coffer_Source_Id__c", "003B")
            .field("LastName", "Ode")
            .field("Age__c", 41);
        let (columns, rows) = upload_rows("Coffer_Source_Id__c", &[a, b]);
        assert_eq!(
            columns,
            [
                "Coffer_Source_Id__c",
                "Age__c",
                "DoNotCall",
                "LastName",
                "Title"
            ]
        );
        let rendered: Vec<Vec<&str>> = rows
            .iter()
            .map(|r| r.iter().map(IngestValue::render).collect())
            .collect();
        assert_eq!(rendered[0], ["003A", "", "true", "Ng", "#N/A"]);
        assert_eq!(rendered[1], ["003B", "41", "", "Ode", ""]);
    }
}
