//! sObject Collections: create (`POST /composite/sobjects`), update (`PATCH`), upsert by an
//! external id field (`PATCH /composite/sobjects/{sobject}/{field}`) and delete
//! (`DELETE ?ids=…&allOrNone=…`) of up to 200 records per request, for small restores where
//! results in request order make id mapping trivial.
//!
//! Larger inputs are sent as consecutive requests of [`COLLECTION_MAX_RECORDS`]; the outcomes
//! come back in input order, one per record. `allOrNone` applies to each request on its own: with
//! more than 200 records, requests before a failing one stay committed. A request may mix object
//! types, but Salesforce processes it in chunks of consecutive records of one type and refuses more
//! than 10 chunks, so group records by type.
//!
//! Field values are JSON: `null` sets a field to null, a field left out of the map is unchanged,
//! and booleans and numbers go as JSON types when the caller passes them so.
//!
//! Creates and deletes are not idempotent (a replayed create duplicates records, a replayed
//! delete reports `ENTITY_IS_DELETED` for records it did delete), so a request is sent again only
//! when the connection could not be established; a 5xx or cut connection is returned as a
//! retryable error for the caller to resolve. An upsert is idempotent: sent again, it finds the
//! records the first request created by their external id and creates nothing new, which is
//! why a restore inserts through it when the object has such a field.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::describe::decode_json;
use crate::{SalesforceClient, SalesforceError};

/// Records one sObject Collections request takes at most.
pub const COLLECTION_MAX_RECORDS: usize = 200;

/// A record to create or update.
#[derive(Debug, Clone, PartialEq)]
pub struct SObjectRecord {
    /// The sObject's API name (`attributes.type`).
    pub sobject: String,
    /// The record id: required to update, absent to create.
    pub id: Option<String>,
    /// Field values; `Value::Null` sets a field to null, an absent field is left unchanged.
    pub fields: Map<String, Value>,
}

impl SObjectRecord {
    /// A record of `sobject` without id or fields.
    pub fn new(sobject: impl Into<String>) -> Self {
        SObjectRecord {
            sobject: sobject.into(),
            id: None,
            fields: Map::new(),
        }
    }

    /// The same record with an id (to update it).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The same record with `field` set to `value`.
    pub fn field(mut self, field: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields.insert(field.into(), value.into());
        self
    }

    fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("attributes".into(), json!({ "type": self.sobject }));
        if let Some(id) = &self.id {
            map.insert("id".into(), Value::String(id.clone()));
        }
        map.extend(self.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        Value::Object(map)
    }
}

/// One error of a record (`errors[]` of a SaveResult or DeleteResult).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordError {
    /// Salesforce status code (`DUPLICATES_DETECTED`, `MALFORMED_ID`, ...).
    #[serde(default)]
    pub status_code: String,
    /// The message.
    #[serde(default)]
    pub message: String,
    /// Fields the error concerns.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// What happened to one record, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Written; the record's id.
    Succeeded {
        /// Record id.
        id: String,
    },
    /// Not written. With `allOrNone`, a valid record rolled back because another failed keeps its
    /// id and carries `ALL_OR_NONE_OPERATION_ROLLED_BACK`.
    Failed {
        /// Record id, when Salesforce reported one.
        id: Option<String>,
        /// Why.
        errors: Vec<RecordError>,
    },
}

const ROLLED_BACK: &str = "ALL_OR_NONE_OPERATION_ROLLED_BACK";

impl RecordOutcome {
    /// Whether the record was written.
    pub fn is_success(&self) -> bool {
        matches!(self, RecordOutcome::Succeeded { .. })
    }

    /// The record id, if Salesforce reported one.
    pub fn id(&self) -> Option<&str> {
        match self {
            RecordOutcome::Succeeded { id } => Some(id),
            RecordOutcome::Failed { id, .. } => id.as_deref(),
        }
    }

    /// The errors (empty on success).
    pub fn errors(&self) -> &[RecordError] {
        match self {
            RecordOutcome::Succeeded { .. } => &[],
            RecordOutcome::Failed { errors, .. } => errors,
        }
    }

    /// Whether the record failed only because `allOrNone` rolled back the request after
    /// another record failed: it may succeed when sent again without the culprit.
    pub fn is_rolled_back(&self) -> bool {
        let errors = self.errors();
        !errors.is_empty() && errors.iter().all(|e| e.status_code == ROLLED_BACK)
    }
}

#[derive(Debug, Deserialize)]
struct SaveResult {
    #[serde(default)]
    id: Option<String>,
    success: bool,
    #[serde(default)]
    errors: Vec<RecordError>,
}

impl SaveResult {
    fn into_outcome(self, operation: &str) -> Result<RecordOutcome, SalesforceError> {
        match (self.success, self.id) {
            (true, Some(id)) => Ok(RecordOutcome::Succeeded { id }),
            (true, None) => Err(SalesforceError::UnexpectedResponse {
                operation: operation.to_owned(),
                detail: "a successful result has no id".into(),
            }),
            (false, id) => Ok(RecordOutcome::Failed {
                id,
                errors: self.errors,
            }),
        }
    }
}

/// The collection writes.
#[derive(Debug, Clone, Copy)]
enum Write {
    Create,
    Update,
    Upsert,
    Delete,
}

impl Write {
    fn verb(self) -> &'static str {
        match self {
            Write::Create => "create",
            Write::Update => "update",
            Write::Upsert => "upsert",
            Write::Delete => "delete",
        }
    }
}

impl SalesforceClient {
    /// Creates `records` (no ids), 200 per request; outcomes in input order.
    pub async fn create_records(
        &self,
        records: &[SObjectRecord],
        all_or_none: bool,
    ) -> Result<Vec<RecordOutcome>, SalesforceError> {
        check_ids(Write::Create, records)?;
        let path = "composite/sobjects".to_owned();
        let mut out = Vec::with_capacity(records.len());
        for chunk in records.chunks(COLLECTION_MAX_RECORDS) {
            out.extend(
                self.save_chunk(Write::Create, &path, chunk, all_or_none)
                    .await?,
            );
        }
        Ok(out)
    }

    /// Creates or updates `records` of `sobject` by `external_id_field`, 200 per request: a
    /// record whose field value matches a live record updates it, any other is created.
    /// Outcomes in input order. Idempotent, unlike [`SalesforceClient::create_records`].
    pub async fn upsert_records(
        &self,
        sobject: &str,
        external_id_field: &str,
        records: &[SObjectRecord],
        all_or_none: bool,
    ) -> Result<Vec<RecordOutcome>, SalesforceError> {
        check_upserts(sobject, external_id_field, records)?;
        let path = format!("composite/sobjects/{sobject}/{external_id_field}");
        let mut out = Vec::with_capacity(records.len());
        for chunk in records.chunks(COLLECTION_MAX_RECORDS) {
            out.extend(
                self.save_chunk(Write::Upsert, &path, chunk, all_or_none)
                    .await?,
            );
        }
        Ok(out)
    }

    /// Updates `records` (each with its id), 200 per request; outcomes in input order.
    pub async fn update_records(
        &self,
        records: &[SObjectRecord],
        all_or_none: bool,
    ) -> Result<Vec<RecordOutcome>, SalesforceError> {
        check_ids(Write::Update, records)?;
        let path = "composite/sobjects".to_owned();
        let mut out = Vec::with_capacity(records.len());
        for chunk in records.chunks(COLLECTION_MAX_RECORDS) {
            out.extend(
                self.save_chunk(Write::Update, &path, chunk, all_or_none)
                    .await?,
            );
        }
        Ok(out)
    }

    /// Deletes the records with `ids` (any object types), 200 per request; outcomes in input
    /// order.
    pub async fn delete_records<S: AsRef<str>>(
        &self,
        ids: &[S],
        all_or_none: bool,
    ) -> Result<Vec<RecordOutcome>, SalesforceError> {
        let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
        if let Some(bad) = ids.iter().find(|id| !is_record_id(id)) {
            return Err(bad_request(
                Write::Delete,
                &format!("{bad:?} is not a record id"),
            ));
        }
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(COLLECTION_MAX_RECORDS) {
            out.extend(self.delete_chunk(chunk, all_or_none).await?);
        }
        Ok(out)
    }

    async fn save_chunk(
        &self,
        write: Write,
        path: &str,
        records: &[SObjectRecord],
        all_or_none: bool,
    ) -> Result<Vec<RecordOutcome>, SalesforceError> {
        let url = self.data_url(self.api_version(), path);
        let body = json!({
            "allOrNone": all_or_none,
            "records": records.iter().map(SObjectRecord::to_json).collect::<Vec<_>>(),
        });
        let op = format!(
            "{} {} records (sobject collections)",
            write.verb(),
            records.len()
        );
        let results: Vec<SaveResult> = self
            .with_unsent_retries(&op, || async {
                let resp = self
                    .send(&op, |http| {
                        let req = match write {
                            Write::Update | Write::Upsert => http.patch(&url),
                            _ => http.post(&url),
                        };
                        req.header(reqwest::header::ACCEPT, "application/json")
                            .json(&body)
                    })
                    .await?;
                decode_json(&op, resp).await
            })
            .await?;
        outcomes(&op, records.len(), results)
    }

    async fn delete_chunk(
        &self,
        ids: &[&str],
        all_or_none: bool,
    ) -> Result<Vec<RecordOutcome>, SalesforceError> {
        // Ids are alphanumeric (checked), so the list goes as the documentation writes it.
        let url = format!(
            "{}?ids={}&allOrNone={all_or_none}",
            self.data_url(self.api_version(), "composite/sobjects"),
            ids.join(",")
        );
        let op = format!("delete {} records (sobject collections)", ids.len());
        let results: Vec<SaveResult> = self
            .with_unsent_retries(&op, || async {
                let resp = self
                    .send(&op, |http| {
                        http.delete(&url)
                            .header(reqwest::header::ACCEPT, "application/json")
                    })
                    .await?;
                decode_json(&op, resp).await
            })
            .await?;
        outcomes(&op, ids.len(), results)
    }
}

/// Maps results to outcomes, refusing a response that does not have one result per record.
fn outcomes(
    operation: &str,
    sent: usize,
    results: Vec<SaveResult>,
) -> Result<Vec<RecordOutcome>, SalesforceError> {
    if results.len() != sent {
        return Err(SalesforceError::UnexpectedResponse {
            operation: operation.to_owned(),
            detail: format!("{} results for {sent} records", results.len()),
        });
    }
    let outcomes = results
        .into_iter()
        .map(|r| r.into_outcome(operation))
        .collect::<Result<Vec<_>, _>>()?;
    let failed = outcomes.iter().filter(|o| !o.is_success()).count();
    tracing::debug!(
        operation,
        records = sent,
        failed,
        "sobject collections request done"
    );
    Ok(outcomes)
}

/// Upserts are of the one object the URL names, carry no id, and hold a value in the external
/// id field (Salesforce would refuse the record otherwise; better to say so before sending).
fn check_upserts(
    sobject: &str,
    external_id_field: &str,
    records: &[SObjectRecord],
) -> Result<(), SalesforceError> {
    let names_ok = [sobject, external_id_field]
        .iter()
        .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if !names_ok {
        return Err(bad_request(
            Write::Upsert,
            &format!("{sobject:?}.{external_id_field:?} is not an object and field name"),
        ));
    }
    for (i, record) in records.iter().enumerate() {
        let keyed = record
            .fields
            .get(external_id_field)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty());
        let problem = if record.sobject != sobject {
            Some(format!(
                "record {i} is a {}, not a {sobject}",
                record.sobject
            ))
        } else if record.id.is_some() {
            Some(format!(
                "record {i} has an id; an upsert matches by {external_id_field}"
            ))
        } else if !keyed {
            Some(format!("record {i} has no {external_id_field} value"))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(bad_request(Write::Upsert, &problem));
        }
    }
    Ok(())
}

/// Creates must not carry ids; updates must carry valid ones.
fn check_ids(write: Write, records: &[SObjectRecord]) -> Result<(), SalesforceError> {
    for (i, record) in records.iter().enumerate() {
        match (write, record.id.as_deref()) {
            (Write::Create, Some(_)) => {
                return Err(bad_request(
                    write,
                    &format!("record {i} has an id; creates take none"),
                ));
            }
            (Write::Update, None) => {
                return Err(bad_request(write, &format!("record {i} has no id")));
            }
            (Write::Update, Some(id)) if !is_record_id(id) => {
                return Err(bad_request(
                    write,
                    &format!("record {i}: {id:?} is not a record id"),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// 15 or 18 alphanumeric characters.
pub(crate) fn is_record_id(id: &str) -> bool {
    matches!(id.len(), 15 | 18) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn bad_request(write: Write, detail: &str) -> SalesforceError {
    SalesforceError::InvalidWriteRequest {
        operation: format!("{} records (sobject collections)", write.verb()),
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_serialize_with_attributes_id_and_json_types() {
        let record = SObjectRecord::new("Account")
            .with_id("001xx000003DGb2AAG")
            .field("NumberOfEmployees", 27000)
            .field("Active__c", true)
            .field("Fax", Value::Null);
        assert_eq!(
            record.to_json(),
            json!({
                "attributes": {"type": "Account"},
                "id": "001xx000003DGb2AAG",
                "NumberOfEmployees": 27000,
                "Active__c": true,
                "Fax": null
            })
        );
    }

    #[test]
    fn rolled_back_is_told_apart_from_the_culprit() {
        let rolled = RecordOutcome::Failed {
            id: Some("001RM000003oCprYAE".into()),
            errors: vec![RecordError {
                status_code: ROLLED_BACK.into(),
                message: String::new(),
                fields: vec![],
            }],
        };
        assert!(rolled.is_rolled_back() && !rolled.is_success());
        assert_eq!(rolled.id(), Some("001RM000003oCprYAE"));
        let culprit = RecordOutcome::Failed {
            id: None,
            errors: vec![RecordError {
                status_code: "MALFORMED_ID".into(),
                message: String::new(),
                fields: vec!["Id".into()],
            }],
        };
        assert!(!culprit.is_rolled_back());
    }

    #[test]
    fn ids_are_checked_before_anything_is_sent() {
        assert!(is_record_id("001xx000003DGb2AAG") && is_record_id("001xx000003DGb2"));
        assert!(!is_record_id("001xx000003DGb2AAG&x=1") && !is_record_id(""));
        let create = [SObjectRecord::new("Account").with_id("001xx000003DGb2AAG")];
        assert!(check_ids(Write::Create, &create).is_err());
        assert!(check_ids(Write::Update, &[SObjectRecord::new("Account")]).is_err());
    }
}
