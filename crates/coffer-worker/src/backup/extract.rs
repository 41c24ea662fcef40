//! Extracting one sObject: a Bulk API 2.0 query of every field the Bulk API can return, its CSV
//! pages written as records parts.

use coffer_catalog::NewObject;
use coffer_salesforce::{SObjectDescribe, SalesforceClient};
use csv::StringRecord;

use super::parts::{PartPlan, PartSink};
use crate::error::WorkerError;

/// The SOQL that reads every Bulk-queryable field of `describe`, in describe order; `None` when
/// the object has no such field.
pub fn full_query(describe: &SObjectDescribe) -> Option<(StringRecord, String)> {
    let fields: Vec<&str> = describe
        .bulk_queryable_fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    if fields.is_empty() {
        return None;
    }
    let soql = format!("SELECT {} FROM {}", fields.join(", "), describe.name);
    Some((StringRecord::from(fields), soql))
}

/// Reads every record of the object and writes it as parts; returns the parts written.
pub async fn extract_sobject(
    sf: &SalesforceClient,
    describe: &SObjectDescribe,
    plan: PartPlan,
) -> Result<Vec<NewObject>, WorkerError> {
    let Some((header, soql)) = full_query(describe) else {
        return Ok(Vec::new());
    };
    let mut results = sf.bulk_query(&soql).await?;
    tracing::info!(sobject = %describe.name, bulk_job_id = %results.job_id(), "extracting records");
    let mut sink = PartSink::new(plan, header.clone());
    while let Some(page) = results.next_page().await? {
        if page.headers != header {
            return Err(WorkerError::BadRecords {
                sobject: describe.name.clone(),
                detail: format!(
                    "page columns {:?} differ from the query's {:?}",
                    page.headers, header
                ),
            });
        }
        sink.write_rows(page.records).await?;
    }
    sink.finish().await
}
