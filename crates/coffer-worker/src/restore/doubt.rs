//! Creates in doubt: records sent to Salesforce without a restore key whose answer was never
//! recorded.
//!
//! Before a create of an object without the restore key, its rows are stamped `sent_at`
//! ([`coffer_catalog::Catalog::mark_sent`]); the answer records their ids. If the process dies
//! (or the answer is lost) in between, the rows are still pending with a `sent_at`, and
//! Salesforce may hold the records. Before sending them again, [`Writer::find_in_doubt`] looks
//! for each one in the org, the way Gearset looks in its deployment history: a record of the
//! object created since it was sent (less [`CLOCK_MARGIN`]; by `SystemModstamp` on objects
//! without `CreatedDate`), holding every value it was sent with, and not already another
//! restored row's record, is taken as its record. Only rows not found are sent again.
//!
//! Values are compared as text on the fields whose text form does not vary (text, picklists,
//! ids and lookups, booleans); numbers, dates and bodies are left out of the comparison. Two
//! rows sent with the same values are interchangeable, so matching them in any order is right.

use std::collections::{BTreeSet, HashMap, HashSet};

use coffer_catalog::{RestoreAction, RestoreRow};
use coffer_salesforce::{QueryOperation, SObjectDescribe, SObjectRecord};
use serde_json::Value;
use time::OffsetDateTime;

use super::write::Writer;
use crate::error::WorkerError;

/// How far before `sent_at` the search starts: the catalog's clock and Salesforce's may
/// differ by this much.
pub(crate) const CLOCK_MARGIN: time::Duration = time::Duration::minutes(10);

/// Field types whose values Salesforce returns in the text they were sent in.
const COMPARABLE_TYPES: &[&str] = &[
    "string",
    "textarea",
    "email",
    "phone",
    "url",
    "picklist",
    "combobox",
    "reference",
    "boolean",
];

/// The comparable values a record was sent with, as text.
pub(crate) fn fingerprint(
    describe: &SObjectDescribe,
    record: &SObjectRecord,
) -> Vec<(String, String)> {
    let comparable: HashSet<&str> = describe
        .fields
        .iter()
        .filter(|f| COMPARABLE_TYPES.contains(&f.field_type.as_str()))
        .map(|f| f.name.as_str())
        .collect();
    let mut out: Vec<(String, String)> = record
        .fields
        .iter()
        .filter(|(name, _)| comparable.contains(name.as_str()))
        .filter_map(|(name, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((name.clone(), text))
        })
        .collect();
    out.sort();
    out
}

/// The field that dates a record's creation: `CreatedDate`, or `SystemModstamp` on objects
/// without it (`ContentDocumentLink`), which a create sets too and later writes only move on.
fn creation_stamp(describe: &SObjectDescribe) -> Option<&'static str> {
    ["CreatedDate", "SystemModstamp"]
        .into_iter()
        .find(|stamp| describe.fields.iter().any(|f| f.name == *stamp))
}

/// Pairs each sent record (source id, fingerprint) with an unused candidate (id, values by
/// field) holding the same values; one candidate per record.
pub(crate) fn match_candidates(
    sent: &[(String, Vec<(String, String)>)],
    candidates: &[(String, HashMap<String, String>)],
) -> Vec<(String, String)> {
    let mut used: HashSet<&str> = HashSet::new();
    let mut found = Vec::new();
    for (source, print) in sent {
        if print.is_empty() {
            continue; // nothing to recognise it by: it is sent again
        }
        let hit = candidates.iter().find(|(id, values)| {
            !used.contains(id.as_str())
                && print
                    .iter()
                    .all(|(field, want)| values.get(field).is_some_and(|got| got == want))
        });
        if let Some((id, _)) = hit {
            used.insert(id);
            found.push((source.clone(), id.clone()));
        }
    }
    found
}

impl Writer<'_> {
    /// Looks for the in-doubt creates among `records` (source id, the record as it is sent) in
    /// the org; records the ones found as written and returns their source ids.
    pub(crate) async fn find_in_doubt(
        &self,
        describe: &SObjectDescribe,
        rows: &[RestoreRow],
        records: &[(String, SObjectRecord)],
    ) -> Result<HashSet<String>, WorkerError> {
        let sent_at: HashMap<&str, OffsetDateTime> = rows
            .iter()
            .filter(|r| r.action == RestoreAction::Insert)
            .filter_map(|r| Some((r.source_id.as_str(), r.sent_at?)))
            .collect();
        let Some(since) = sent_at.values().min().map(|t| *t - CLOCK_MARGIN) else {
            return Ok(HashSet::new());
        };
        let sent: Vec<(String, Vec<(String, String)>)> = records
            .iter()
            .filter(|(id, _)| sent_at.contains_key(id.as_str()))
            .map(|(id, record)| (id.clone(), fingerprint(describe, record)))
            .collect();
        let fields: BTreeSet<&str> = sent
            .iter()
            .flat_map(|(_, print)| print.iter().map(|(f, _)| f.as_str()))
            .collect();
        let Some(stamp) = creation_stamp(describe) else {
            return Ok(HashSet::new()); // nothing to search by: they are sent again
        };
        let candidates = self
            .created_since(&describe.name, stamp, &fields, since)
            .await?;
        let found = match_candidates(&sent, &candidates);
        tracing::info!(restore_id = %self.restore.restore_id, sobject = %describe.name, in_doubt = sent.len(), found = found.len(), "looked for creates whose answer was lost");
        self.written(&found).await?;
        Ok(found.into_iter().map(|(source, _)| source).collect())
    }

    /// Records of `sobject` whose `stamp` is `since` or later that no row of this restore has
    /// as its record: (id, `fields` by name).
    async fn created_since(
        &self,
        sobject: &str,
        stamp: &str,
        fields: &BTreeSet<&str>,
        since: OffsetDateTime,
    ) -> Result<Vec<(String, HashMap<String, String>)>, WorkerError> {
        let taken: HashSet<String> = self
            .ctx
            .catalog
            .restore_rows(&self.restore.restore_id, Some(sobject), None)
            .await?
            .into_iter()
            .filter_map(|r| r.target_id)
            .collect();
        let columns: Vec<&str> = std::iter::once("Id")
            .chain(fields.iter().copied())
            .collect();
        let since = since
            .replace_nanosecond(0)
            .unwrap_or(since)
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| WorkerError::Task(format!("formatting a query time: {e}")))?;
        let soql = format!(
            "SELECT {} FROM {sobject} WHERE {stamp} >= {since}",
            columns.join(", ")
        );
        let mut out = Vec::new();
        let mut results = self.sf.rest_query(&soql, QueryOperation::Query);
        while let Some(page) = results.next_page().await? {
            let headers: Vec<String> = page.headers.iter().map(str::to_owned).collect();
            for record in &page.records {
                let values: HashMap<String, String> = headers
                    .iter()
                    .cloned()
                    .zip(record.iter().map(str::to_owned))
                    .collect();
                match values.get("Id") {
                    Some(id) if !taken.contains(id) => out.push((id.clone(), values)),
                    _ => {}
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: &str, values: &[(&str, &str)]) -> (String, HashMap<String, String>) {
        let values = values
            .iter()
            .map(|(f, v)| ((*f).to_owned(), (*v).to_owned()))
            .collect();
        (id.to_owned(), values)
    }

    fn print(values: &[(&str, &str)]) -> Vec<(String, String)> {
        values
            .iter()
            .map(|(f, v)| ((*f).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn each_sent_record_takes_one_candidate_with_all_its_values() {
        let sent = vec![
            (
                "a".to_owned(),
                print(&[("Name", "Acme"), ("ParentId", "001X")]),
            ),
            (
                "b".to_owned(),
                print(&[("Name", "Acme"), ("ParentId", "001X")]),
            ),
            ("c".to_owned(), print(&[("Name", "Globex")])),
            ("d".to_owned(), print(&[("Name", "Initech")])),
            ("e".to_owned(), Vec::new()),
        ];
        let candidates = vec![
            candidate("new1", &[("Name", "Acme"), ("ParentId", "001X")]),
            candidate("new2", &[("Name", "Acme"), ("ParentId", "001Y")]),
            candidate("new3", &[("Name", "Acme"), ("ParentId", "001X")]),
            candidate("other", &[("Name", "Globex Ltd")]),
            candidate("any", &[]),
        ];
        let found = match_candidates(&sent, &candidates);
        // Twins take one record each; a near miss is not a match; a record with nothing to
        // compare is never matched.
        assert_eq!(
            found,
            [
                ("a".to_owned(), "new1".to_owned()),
                ("b".to_owned(), "new3".to_owned())
            ]
        );
    }
}
