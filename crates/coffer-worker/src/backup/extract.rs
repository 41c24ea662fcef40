//! Extracting one sObject: a Bulk API 2.0 query of every field the Bulk API can return, its CSV
//! pages written as records parts.
//!
//! - [`extract_sobject`] reads every record of an id range (a full backup, an object new since
//!   the base, or one slice of a very large object), halving the range on `QUERY_TIMEOUT`.
//! - [`extract_changes`] reads what changed after a cursor (an incremental backup): `queryAll`
//!   over `SystemModstamp` ranges split on `QUERY_TIMEOUT`, deleted rows included, from the
//!   cursor less an overlap window (late commits) to the server's clock. Rows of the overlap
//!   that a complete backup of the org already holds, same id and same `SystemModstamp`, are
//!   dropped, so the backup holds exactly what changed.

use coffer_catalog::Catalog;
use coffer_core::{OrgId, TenantId};
use coffer_salesforce::incremental::{change_window, incremental_query};
use coffer_salesforce::{
    ChangePage, ChangeReader, Cursor, IdRange, IncrementalOptions, QueryOperation, SObjectDescribe,
    SalesforceClient, SalesforceError,
};
use csv::StringRecord;

use super::parts::{PartSink, Written};
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

/// Reads every record of the object in `range` into `sink` (whose header is [`full_query`]'s).
/// A Bulk job Salesforce gives up on (`QUERY_TIMEOUT`, before any page) is replaced by reads of
/// the two halves of its id range, lower half first; ids never change, so no record moves
/// between halves while they are read.
pub async fn extract_sobject(
    sf: &SalesforceClient,
    describe: &SObjectDescribe,
    header: &StringRecord,
    soql: &str,
    range: IdRange,
    mut sink: PartSink,
) -> Result<Written, WorkerError> {
    let mut pending = vec![range];
    while let Some(range) = pending.pop() {
        let mut results = match sf.bulk_query(&range.restrict(soql)).await {
            Ok(results) => results,
            Err(e) if e.needs_split() => {
                let (low, high) =
                    halves(sf, &describe.name, QueryOperation::Query, &range, e).await?;
                tracing::info!(sobject = %describe.name, from = ?low.from, mid = ?low.to, to = ?high.to, "query timed out; reading its id range in halves");
                pending.extend([high, low]);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(sobject = %describe.name, bulk_job_id = %results.job_id(), "extracting records");
        while let Some(page) = results.next_page().await? {
            same_columns(describe, &page.headers, header)?;
            sink.write_rows(page.records).await?;
        }
    }
    sink.finish().await
}

/// The halves of `range` of `sobject` (as `operation` sees it) for a read that timed out with
/// `timeout`. A range of one record or none cannot be cut: Salesforce timed out on a query that
/// small because it was busy, so that is a retryable error (the job is tried again later, and
/// dead-lettered with this reason only if it keeps happening), not a permanent one.
pub(crate) async fn halves(
    sf: &SalesforceClient,
    sobject: &str,
    operation: QueryOperation,
    range: &IdRange,
    timeout: SalesforceError,
) -> Result<(IdRange, IdRange), WorkerError> {
    let bounds = sf.id_bounds(sobject, operation, range).await?;
    bounds
        .and_then(|(lowest, highest)| range.halves(&lowest, &highest))
        .ok_or_else(|| {
            WorkerError::Task(format!(
                "{sobject}: {timeout}; the id range holds one record or none and cannot be split, so the read is tried again later"
            ))
        })
}

/// The columns and query of an incremental read of `describe`.
pub fn changes_query(
    describe: &SObjectDescribe,
) -> Result<(StringRecord, coffer_salesforce::RangeQuery), WorkerError> {
    let query = incremental_query(describe)?;
    Ok((StringRecord::from(query.fields.clone()), query))
}

/// Whose overlap rows to check against the catalog.
pub struct StoredVersions<'a> {
    /// The catalog.
    pub catalog: &'a Catalog,
    /// The backup's tenant.
    pub tenant_id: &'a TenantId,
    /// The backup's org.
    pub org_id: &'a OrgId,
}

/// Reads the object's changes after `since` into `sink` (whose header is [`changes_query`]'s).
pub async fn extract_changes(
    sf: &SalesforceClient,
    describe: &SObjectDescribe,
    since: Cursor,
    options: &IncrementalOptions,
    stored: StoredVersions<'_>,
    mut sink: PartSink,
) -> Result<Written, WorkerError> {
    let (header, query) = changes_query(describe)?;
    let until = sf.server_time().await? - options.safety_margin;
    let window = change_window(Some(&since), options.overlap, until);
    tracing::info!(sobject = %describe.name, from = %window.from(), to = %window.to(), "extracting changes");
    let mut reader = ChangeReader::new(
        sf.clone(),
        query,
        Some(since.clone()),
        window,
        options.min_split_width,
    );
    sink.start_cursor_from(Some(since));
    while let Some(page) = reader.next_page().await? {
        same_columns(describe, &page.page.headers, &header)?;
        let rows = new_rows(&stored, page).await?;
        sink.write_rows(rows).await?;
    }
    sink.finish().await
}

/// The rows of `page` a complete backup does not hold yet: every row above the cursor, and the
/// overlap rows whose (id, `SystemModstamp`) no backup stored (late commits).
async fn new_rows(
    stored: &StoredVersions<'_>,
    page: ChangePage,
) -> Result<Vec<StringRecord>, WorkerError> {
    let overlap: Vec<(String, time::OffsetDateTime)> = page
        .rows
        .iter()
        .filter(|m| m.seen_before)
        .map(|m| (m.key.id.clone(), m.key.system_modstamp))
        .collect();
    if overlap.is_empty() {
        return Ok(page.page.records);
    }
    let known = stored
        .catalog
        .stored_versions(stored.tenant_id, stored.org_id, &overlap)
        .await?;
    Ok(page
        .page
        .records
        .into_iter()
        .zip(page.rows)
        .filter(|(_, m)| {
            !(m.seen_before && known.contains(&(m.key.id.clone(), m.key.system_modstamp)))
        })
        .map(|(record, _)| record)
        .collect())
}

fn same_columns(
    describe: &SObjectDescribe,
    got: &StringRecord,
    want: &StringRecord,
) -> Result<(), WorkerError> {
    if got == want {
        return Ok(());
    }
    Err(WorkerError::BadRecords {
        sobject: describe.name.clone(),
        detail: format!("page columns {got:?} differ from the query's {want:?}"),
    })
}
