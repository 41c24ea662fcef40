//! Executing a stored restore plan against the org, step by step, each step resumable:
//!
//! 1. **Undelete** what is in the Recycle Bin (parents first; a record its parent's undelete
//!    already brought back counts as restored). It keeps its id.
//! 2. **Skip** what the org holds unchanged: its id is its own.
//! 3. **Insert and update**, object by object in the plan's order, 200 records a request
//!    (sObject Collections, whose outcomes come in request order): every lookup is remapped
//!    through the id map (a parent restored under a new id gets it; a parent outside the restore
//!    keeps its id), lookups of the second pass are left empty, and each new id is stored in
//!    MySQL as soon as Salesforce returns it, before the next request. A required self-lookup is
//!    written by levels of the hierarchy. Where the target object has the restore key field,
//!    inserts are upserts on it carrying the source id, and many of them go as Bulk API 2.0
//!    ingest jobs ([`super::bulk`]).
//! 4. **Link** the lookups of the second pass, now that every record has its id.
//!
//! A redelivery resumes: only records still `pending` are sent again, and the link pass only
//! touches records not yet `linked`. A crash between Salesforce's answer to a create and the
//! commit of the ids it returned is harmless with the restore key: the records are sent again
//! as upserts and found by it. Without the key, the rows were stamped `sent_at` before the
//! request, and the next attempt looks for them in the org by their values before sending them
//! again ([`super::doubt`]); the plan warns that this search is by content, not by key.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use coffer_catalog::{RecordState, RestoreAction, RestoreRecord, RestoreRow};
use coffer_salesforce::{
    FieldDescribe, RecordOutcome, SObjectDescribe, SObjectRecord, SalesforceClient,
    collections::COLLECTION_MAX_RECORDS,
};
use serde_json::Value;

use super::plan::{StoredPlan, live_ids};
use super::source::{SourceRow, read_rows};
use crate::backup::BackupContext;
use crate::error::WorkerError;

/// What a write step needs.
pub(crate) struct Writer<'a> {
    pub(crate) ctx: &'a BackupContext,
    pub(crate) restore: &'a RestoreRecord,
    pub(crate) plan: &'a StoredPlan,
    pub(crate) sf: &'a SalesforceClient,
    pub(crate) describes: &'a BTreeMap<String, SObjectDescribe>,
}

impl Writer<'_> {
    /// Runs every step; returns once every record is written, linked or failed.
    pub(crate) async fn run(&self) -> Result<(), WorkerError> {
        self.undelete().await?;
        self.keep_unchanged().await?;
        let planned: HashSet<String> = self
            .rows(None, None)
            .await?
            .into_iter()
            .map(|r| r.source_id)
            .collect();
        for sobject in &self.plan.order.objects {
            // A file's document is created with its version (see `files`).
            if sobject == "ContentDocument" {
                continue;
            }
            if let Some(describe) = self.describes.get(sobject) {
                self.write_object(describe, &planned).await?;
                if sobject == "ContentVersion" {
                    self.adopt_documents(&planned).await?;
                }
            }
        }
        self.link(&planned).await
    }

    async fn rows(
        &self,
        sobject: Option<&str>,
        state: Option<RecordState>,
    ) -> Result<Vec<RestoreRow>, WorkerError> {
        Ok(self
            .ctx
            .catalog
            .restore_rows(&self.restore.restore_id, sobject, state)
            .await?)
    }

    /// Step 1: undeletes, parents first.
    async fn undelete(&self) -> Result<(), WorkerError> {
        for sobject in &self.plan.order.objects {
            let rows: Vec<String> = self
                .rows(Some(sobject), Some(RecordState::Pending))
                .await?
                .into_iter()
                .filter(|r| r.action == RestoreAction::Undelete)
                .map(|r| r.source_id)
                .collect();
            let mut refused = HashSet::new();
            for chunk in rows.chunks(COLLECTION_MAX_RECORDS) {
                let outcomes = self.sf.undelete_records(chunk).await?;
                let (done, failed) = split_outcomes(chunk, &outcomes, |id, _| Some(id.to_owned()));
                self.written(&done).await?;
                refused.extend(failed.into_iter().map(|(id, _)| id));
            }
            if refused.is_empty() {
                continue;
            }
            // Undeleting a parent brings back the children its delete took: they are live now.
            let live = live_ids(self.sf, sobject, &refused).await?;
            let (back, gone): (Vec<String>, Vec<String>) =
                refused.into_iter().partition(|id| live.contains(id));
            self.written(
                &back
                    .iter()
                    .map(|id| (id.clone(), id.clone()))
                    .collect::<Vec<_>>(),
            )
            .await?;
            let failed: Vec<(String, String)> = gone
                .into_iter()
                .map(|id| {
                    (
                        id,
                        "UNDELETE_FAILED: not in the Recycle Bin any more".to_owned(),
                    )
                })
                .collect();
            self.failed(&failed).await?;
        }
        Ok(())
    }

    /// Step 2: records the org holds unchanged keep their ids.
    async fn keep_unchanged(&self) -> Result<(), WorkerError> {
        let same: Vec<(String, String)> = self
            .rows(None, Some(RecordState::Pending))
            .await?
            .into_iter()
            .filter(|r| r.action == RestoreAction::Skip)
            .map(|r| (r.source_id.clone(), r.source_id))
            .collect();
        self.written(&same).await
    }

    /// Step 3 for one object: its pending inserts and updates, level by level.
    async fn write_object(
        &self,
        describe: &SObjectDescribe,
        planned: &HashSet<String>,
    ) -> Result<(), WorkerError> {
        let pending: Vec<RestoreRow> = self
            .rows(Some(&describe.name), Some(RecordState::Pending))
            .await?
            .into_iter()
            .filter(|r| matches!(r.action, RestoreAction::Insert | RestoreAction::Update))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let mut sources = read_rows(self.ctx, &pending).await?;
        let refused = self.add_bodies(describe, &pending, &mut sources).await?;
        self.failed(&refused).await?;
        let deferred = self.deferred_of(&describe.name);
        let key = self.restore_key(describe);
        let pending = match key {
            Some(_) => pending, // sent again as upserts, found by their key
            None => {
                self.without_found(describe, pending, &sources, &deferred, planned)
                    .await?
            }
        };
        for level in self.levels(describe, &pending, &sources) {
            let level = match self.bulk_key(describe, &level) {
                Some(key) => {
                    let (inserts, rest) = level
                        .into_iter()
                        .partition::<Vec<_>, _>(|r| r.action == RestoreAction::Insert);
                    for load in inserts.chunks(super::bulk::BULK_JOB_ROWS) {
                        let map = self.id_map(describe, load, &sources).await?;
                        let fields = self.mapping(describe, &deferred, &map, planned);
                        let records = self.keyed_records(load, &sources, &fields, key).await?;
                        self.bulk_upsert(&describe.name, key, records).await?;
                    }
                    rest
                }
                None => level,
            };
            for chunk in level.chunks(self.chunk_size(describe)) {
                let map = self.id_map(describe, chunk, &sources).await?;
                let fields = self.mapping(describe, &deferred, &map, planned);
                self.write_chunk(chunk, &sources, &fields, key).await?;
            }
        }
        tracing::info!(restore_id = %self.restore.restore_id, sobject = %describe.name, records = pending.len(), "restored records written");
        Ok(())
    }

    /// `pending` without the creates in doubt that the org turns out to hold (see
    /// [`super::doubt`]).
    async fn without_found(
        &self,
        describe: &SObjectDescribe,
        pending: Vec<RestoreRow>,
        sources: &HashMap<String, SourceRow>,
        deferred: &HashSet<String>,
        planned: &HashSet<String>,
    ) -> Result<Vec<RestoreRow>, WorkerError> {
        let in_doubt: Vec<RestoreRow> = pending
            .iter()
            .filter(|r| r.action == RestoreAction::Insert && r.sent_at.is_some())
            .cloned()
            .collect();
        if in_doubt.is_empty() {
            return Ok(pending);
        }
        let map = self.id_map(describe, &in_doubt, sources).await?;
        let fields = self.mapping(describe, deferred, &map, planned);
        let records: Vec<(String, SObjectRecord)> = in_doubt
            .iter()
            .filter_map(|r| {
                let source = sources.get(&r.source_id)?;
                Some((
                    r.source_id.clone(),
                    fields.insert(source, &r.source_id, None),
                ))
            })
            .collect();
        let found = self.find_in_doubt(describe, &in_doubt, &records).await?;
        Ok(pending
            .into_iter()
            .filter(|r| !found.contains(&r.source_id))
            .collect())
    }

    fn mapping<'m>(
        &'m self,
        describe: &'m SObjectDescribe,
        deferred: &'m HashSet<String>,
        map: &'m HashMap<String, String>,
        planned: &'m HashSet<String>,
    ) -> FieldMapping<'m> {
        FieldMapping {
            describe,
            deferred,
            map,
            planned,
            users: &self.plan.users.map,
            record_types: &self.plan.record_types,
            same_org: self.plan.same_org,
        }
    }

    /// The restore key of `describe`'s object, as the plan found it in the target org.
    /// Inserts into such an object are upserts on it.
    fn restore_key(&self, describe: &SObjectDescribe) -> Option<&str> {
        self.plan.restore_key.of(&describe.name)
    }

    /// The restore key, when `level`'s inserts are many enough for a Bulk API load (and carry
    /// no file bodies, which Bulk API 2.0 cannot take).
    fn bulk_key(&self, describe: &SObjectDescribe, level: &[RestoreRow]) -> Option<&str> {
        let inserts = level
            .iter()
            .filter(|r| r.action == RestoreAction::Insert)
            .count();
        let many = inserts >= self.ctx.settings.restore_bulk_threshold.max(1);
        match many && body_field(describe).is_none() {
            true => self.restore_key(describe),
            false => None,
        }
    }

    /// The records to insert for `rows`, each with its source id in the restore key; a row the
    /// backup does not hold is marked failed.
    async fn keyed_records(
        &self,
        rows: &[RestoreRow],
        sources: &HashMap<String, SourceRow>,
        fields: &FieldMapping<'_>,
        key: &str,
    ) -> Result<Vec<(String, SObjectRecord)>, WorkerError> {
        let (mut records, mut missing) = (Vec::new(), Vec::new());
        for row in rows {
            match sources.get(&row.source_id) {
                Some(source) => {
                    let record = fields.insert(source, &row.source_id, Some(key));
                    records.push((row.source_id.clone(), record));
                }
                None => missing.push((row.source_id.clone(), NOT_IN_BACKUP.to_owned())),
            }
        }
        self.failed(&missing).await?;
        Ok(records)
    }

    /// Records a request carries: 200, or fewer for records with file bodies so a request
    /// stays well under the API's size limits.
    fn chunk_size(&self, describe: &SObjectDescribe) -> usize {
        match body_field(describe) {
            Some(_) => 10,
            None => COLLECTION_MAX_RECORDS,
        }
    }

    /// Puts each record's file body (its object's blob field, e.g. `Attachment.Body`), read
    /// from the backup's content-addressed files and checked against its SHA-256, into its
    /// source row as base64. Returns the records whose body cannot be sent, with why.
    async fn add_bodies(
        &self,
        describe: &SObjectDescribe,
        pending: &[RestoreRow],
        sources: &mut HashMap<String, SourceRow>,
    ) -> Result<Vec<(String, String)>, WorkerError> {
        let Some(field) = body_field(describe) else {
            return Ok(Vec::new());
        };
        let files = super::source::file_bodies(self.ctx, pending).await?;
        let mut refused = Vec::new();
        for row in pending.iter().filter(|r| r.action == RestoreAction::Insert) {
            let Some(source) = sources.get_mut(&row.source_id) else {
                continue;
            };
            match files.get(&row.source_id) {
                Some(Ok(body)) => {
                    use base64::Engine as _;
                    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
                    source.insert(field.clone(), encoded);
                }
                Some(Err(why)) => refused.push((row.source_id.clone(), why.clone())),
                None => refused.push((
                    row.source_id.clone(),
                    "the backup holds no body for this file".to_owned(),
                )),
            }
        }
        Ok(refused)
    }

    /// Creates the inserts and updates of `chunk`; stores ids and errors before returning.
    /// With a restore `key`, inserts are upserts on it, so a chunk sent again creates nothing.
    async fn write_chunk(
        &self,
        chunk: &[RestoreRow],
        sources: &HashMap<String, SourceRow>,
        fields: &FieldMapping<'_>,
        key: Option<&str>,
    ) -> Result<(), WorkerError> {
        let mut missing = Vec::new();
        let (mut inserts, mut updates) = (Vec::new(), Vec::new());
        for row in chunk {
            let Some(source) = sources.get(&row.source_id) else {
                missing.push((row.source_id.clone(), NOT_IN_BACKUP.to_owned()));
                continue;
            };
            match row.action {
                RestoreAction::Update => {
                    updates.push((row, fields.record(source, Some(&row.source_id))))
                }
                _ => inserts.push((row, fields.insert(source, &row.source_id, key))),
            }
        }
        self.failed(&missing).await?;
        if !inserts.is_empty() {
            let records: Vec<SObjectRecord> = inserts.iter().map(|(_, r)| r.clone()).collect();
            let ids: Vec<String> = inserts.iter().map(|(r, _)| r.source_id.clone()).collect();
            let outcomes = match key {
                Some(key) => {
                    let sobject = &fields.describe.name;
                    self.sf
                        .upsert_records(sobject, key, &records, false)
                        .await?
                }
                None => {
                    // In doubt from here until the answer is recorded.
                    self.ctx
                        .catalog
                        .mark_sent(&self.restore.restore_id, &ids)
                        .await?;
                    self.sf.create_records(&records, false).await?
                }
            };
            self.settle(&ids, &outcomes, |_, outcome| {
                outcome.id().map(str::to_owned)
            })
            .await?;
        }
        if !updates.is_empty() {
            let records: Vec<SObjectRecord> = updates.iter().map(|(_, r)| r.clone()).collect();
            let ids: Vec<String> = updates.iter().map(|(r, _)| r.source_id.clone()).collect();
            let outcomes = self.sf.update_records(&records, false).await?;
            self.settle(&ids, &outcomes, |id, _| Some(id.to_owned()))
                .await?;
        }
        Ok(())
    }

    /// Stores what Salesforce said about each record of a request.
    async fn settle(
        &self,
        ids: &[String],
        outcomes: &[RecordOutcome],
        target: impl Fn(&str, &RecordOutcome) -> Option<String>,
    ) -> Result<(), WorkerError> {
        let (done, failed) = split_outcomes(ids, outcomes, target);
        self.written(&done).await?;
        self.failed(&failed).await
    }

    pub(crate) async fn written(&self, pairs: &[(String, String)]) -> Result<(), WorkerError> {
        if !pairs.is_empty() {
            self.ctx
                .catalog
                .mark_written(&self.restore.restore_id, pairs)
                .await?;
            crate::metrics::records_restored("written", pairs.len() as u64);
        }
        Ok(())
    }

    pub(crate) async fn failed(&self, pairs: &[(String, String)]) -> Result<(), WorkerError> {
        if !pairs.is_empty() {
            tracing::warn!(restore_id = %self.restore.restore_id, records = pairs.len(), first_error = %pairs[0].1, "records could not be restored");
            self.ctx
                .catalog
                .mark_failed(&self.restore.restore_id, pairs)
                .await?;
            crate::metrics::records_restored("failed", pairs.len() as u64);
        }
        Ok(())
    }

    /// The id map for the lookups of `chunk`.
    pub(crate) async fn id_map(
        &self,
        describe: &SObjectDescribe,
        chunk: &[RestoreRow],
        sources: &HashMap<String, SourceRow>,
    ) -> Result<HashMap<String, String>, WorkerError> {
        let parents: BTreeSet<String> = chunk
            .iter()
            .filter_map(|r| sources.get(&r.source_id))
            .flat_map(|source| {
                lookups(describe)
                    .filter_map(|f| source.get(&f.name).filter(|v| !v.is_empty()).cloned())
                    .collect::<Vec<_>>()
            })
            .collect();
        let parents: Vec<String> = parents.into_iter().collect();
        Ok(self
            .ctx
            .catalog
            .target_ids(&self.restore.restore_id, &parents)
            .await?)
    }

    /// The lookups of `sobject` that wait for the second pass.
    fn deferred_of(&self, sobject: &str) -> HashSet<String> {
        self.plan
            .order
            .deferred
            .iter()
            .filter(|f| f.sobject == sobject)
            .map(|f| f.field.clone())
            .collect()
    }

    /// The rows grouped in levels: one level, unless the object has a required self-lookup,
    /// whose parents must exist before their children are created.
    fn levels(
        &self,
        describe: &SObjectDescribe,
        pending: &[RestoreRow],
        sources: &HashMap<String, SourceRow>,
    ) -> Vec<Vec<RestoreRow>> {
        let Some(field) = self
            .plan
            .order
            .levelled
            .iter()
            .find(|f| f.sobject == describe.name)
            .map(|f| f.field.clone())
        else {
            return vec![pending.to_vec()];
        };
        let parent_of = |id: &str| {
            sources
                .get(id)
                .and_then(|s| s.get(&field))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let ids: HashSet<&str> = pending.iter().map(|r| r.source_id.as_str()).collect();
        let mut depth: HashMap<String, usize> = HashMap::new();
        for row in pending {
            let mut d = 0;
            let mut at = row.source_id.clone();
            while let Some(parent) = parent_of(&at).filter(|p| ids.contains(p.as_str())) {
                d += 1;
                if d > pending.len() {
                    break;
                }
                at = parent;
            }
            depth.insert(row.source_id.clone(), d);
        }
        let mut levels: BTreeMap<usize, Vec<RestoreRow>> = BTreeMap::new();
        for row in pending {
            let d = depth.get(&row.source_id).copied().unwrap_or(0);
            levels.entry(d).or_default().push(row.clone());
        }
        levels.into_values().collect()
    }

    /// Step 4: the lookups of the second pass, on every record inserted or updated and not yet
    /// linked.
    async fn link(&self, planned: &HashSet<String>) -> Result<(), WorkerError> {
        let mut by_object: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for field in &self.plan.order.deferred {
            by_object
                .entry(field.sobject.as_str())
                .or_default()
                .push(field.field.as_str());
        }
        for (sobject, fields) in by_object {
            // Inserted and updated records: undeleted ones kept their lookups, kept ones are
            // as the backup holds them.
            let rows: Vec<RestoreRow> = self
                .rows(Some(sobject), Some(RecordState::Written))
                .await?
                .into_iter()
                .filter(|r| matches!(r.action, RestoreAction::Insert | RestoreAction::Update))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let sources = read_rows(self.ctx, &rows).await?;
            for chunk in rows.chunks(COLLECTION_MAX_RECORDS) {
                self.link_chunk(sobject, &fields, chunk, &sources, planned)
                    .await?;
            }
        }
        Ok(())
    }

    async fn link_chunk(
        &self,
        sobject: &str,
        fields: &[&str],
        chunk: &[RestoreRow],
        sources: &HashMap<String, SourceRow>,
        planned: &HashSet<String>,
    ) -> Result<(), WorkerError> {
        let parents: Vec<String> = chunk
            .iter()
            .filter_map(|r| sources.get(&r.source_id))
            .flat_map(|s| {
                fields
                    .iter()
                    .filter_map(|f| s.get(*f).filter(|v| !v.is_empty()).cloned())
            })
            .collect();
        let map = self
            .ctx
            .catalog
            .target_ids(&self.restore.restore_id, &parents)
            .await?;
        let (mut ids, mut records, mut nothing) = (Vec::new(), Vec::new(), Vec::new());
        for row in chunk {
            let (Some(source), Some(target)) = (sources.get(&row.source_id), &row.target_id) else {
                continue;
            };
            let mut record = SObjectRecord::new(sobject).with_id(target.clone());
            for field in fields {
                let Some(parent) = source.get(*field).filter(|v| !v.is_empty()) else {
                    continue;
                };
                if let Some(id) = remap(parent, &map, planned, self.plan.same_org) {
                    record = record.field(*field, id);
                }
            }
            if record.fields.is_empty() {
                nothing.push(row.source_id.clone());
            } else {
                ids.push(row.source_id.clone());
                records.push(record);
            }
        }
        let catalog = &self.ctx.catalog;
        catalog
            .mark_linked(&self.restore.restore_id, &nothing)
            .await?;
        if records.is_empty() {
            return Ok(());
        }
        let outcomes = self.sf.update_records(&records, false).await?;
        let (done, failed) = split_outcomes(&ids, &outcomes, |id, _| Some(id.to_owned()));
        let linked: Vec<String> = done.into_iter().map(|(id, _)| id).collect();
        catalog
            .mark_linked(&self.restore.restore_id, &linked)
            .await?;
        let failed: Vec<(String, String)> = failed
            .into_iter()
            .map(|(id, e)| {
                (
                    id,
                    format!("second pass (lookups {}): {e}", fields.join(", ")),
                )
            })
            .collect();
        self.failed(&failed).await
    }
}

/// Why a planned record was not written: its row is missing from the backup's parts.
const NOT_IN_BACKUP: &str = "the backup's row was not found";

/// The target id for a lookup to `parent`: its new id if the restore wrote it; nothing if the
/// restore covers it but could not write it. A parent the restore does not cover keeps its id
/// in the org the backup was taken of (it exists there, or is a user, a record type...); in
/// another org that id means nothing, so the lookup is left empty (`--parents` brings such
/// parents along).
pub(crate) fn remap(
    parent: &str,
    map: &HashMap<String, String>,
    planned: &HashSet<String>,
    same_org: bool,
) -> Option<String> {
    match map.get(parent) {
        Some(target) => Some(target.clone()),
        None if planned.contains(parent) || !same_org => None,
        None => Some(parent.to_owned()),
    }
}

/// How a backed-up row becomes a record to write.
struct FieldMapping<'a> {
    describe: &'a SObjectDescribe,
    deferred: &'a HashSet<String>,
    map: &'a HashMap<String, String>,
    planned: &'a HashSet<String>,
    /// Into another org: its users for the backed-up ones.
    users: &'a BTreeMap<String, String>,
    /// Into another org: its record types for the backed-up ones.
    record_types: &'a super::plan::RecordTypeMap,
    /// Whether the target is the org the backup was taken of.
    same_org: bool,
}

impl FieldMapping<'_> {
    /// The record that creates `source_id`: [`FieldMapping::record`] without an id, carrying
    /// the source id in the restore `key` where the object has one.
    fn insert(&self, source: &SourceRow, source_id: &str, key: Option<&str>) -> SObjectRecord {
        let record = self.record(source, None);
        match key {
            Some(key) => record.field(key, source_id.to_owned()),
            None => record,
        }
    }

    /// The record to create (`id` none) or to update (`id` set): every field the operation may
    /// set, typed, lookups remapped, second-pass lookups left out. An update also clears what
    /// was empty in the backup.
    fn record(&self, source: &SourceRow, id: Option<&str>) -> SObjectRecord {
        let mut record = SObjectRecord::new(self.describe.name.clone());
        if let Some(id) = id {
            record = record.with_id(id);
        }
        let update = id.is_some();
        for field in &self.describe.fields {
            let writable = if update {
                field.updateable
            } else {
                field.createable
            };
            if !writable || field.name == "Id" || self.deferred.contains(&field.name) {
                continue;
            }
            let Some(cell) = source.get(&field.name) else {
                continue;
            };
            if cell.is_empty() {
                if update {
                    record = record.field(field.name.clone(), Value::Null);
                }
                continue;
            }
            if self.record_types.missing.contains_key(cell) {
                continue; // the target lacks it: its default applies (the plan warns)
            }
            let outside = self.users.get(cell).or(self.record_types.map.get(cell));
            let value = match (field.reference_to.is_empty(), outside) {
                (true, _) => typed(field, cell),
                (false, Some(target)) => Value::String(target.clone()),
                (false, None) => match remap(cell, self.map, self.planned, self.same_org) {
                    Some(id) => Value::String(id),
                    None => continue,
                },
            };
            record = record.field(field.name.clone(), value);
        }
        record
    }
}

/// A CSV cell as the JSON value of the field's type; numbers keep the form the backup holds
/// (`37781000` stays an integer, `0.5` a decimal).
fn typed(field: &FieldDescribe, cell: &str) -> Value {
    match field.field_type.as_str() {
        "boolean" => Value::Bool(cell.eq_ignore_ascii_case("true")),
        "int" | "double" | "currency" | "percent" => cell
            .parse::<serde_json::Number>()
            .map(Value::Number)
            .unwrap_or_else(|_| Value::String(cell.to_owned())),
        _ => Value::String(cell.to_owned()),
    }
}

/// The createable blob field of an object (`Attachment.Body`), if it has one.
fn body_field(describe: &SObjectDescribe) -> Option<String> {
    describe
        .fields
        .iter()
        .find(|f| f.field_type == "base64" && f.createable)
        .map(|f| f.name.clone())
}

/// The lookup fields of an object.
fn lookups(describe: &SObjectDescribe) -> impl Iterator<Item = &FieldDescribe> {
    describe
        .fields
        .iter()
        .filter(|f| !f.reference_to.is_empty())
}

/// (source id, target id) pairs written, and (source id, error) pairs failed.
pub(crate) type Settled = (Vec<(String, String)>, Vec<(String, String)>);

/// Splits outcomes (in request order) into pairs written and pairs failed.
fn split_outcomes(
    ids: &[String],
    outcomes: &[RecordOutcome],
    target: impl Fn(&str, &RecordOutcome) -> Option<String>,
) -> Settled {
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    for (id, outcome) in ids.iter().zip(outcomes) {
        match (outcome.is_success(), target(id, outcome)) {
            (true, Some(target)) => done.push((id.clone(), target)),
            _ => failed.push((id.clone(), describe_errors(outcome))),
        }
    }
    for id in ids.iter().skip(outcomes.len()) {
        failed.push((id.clone(), "no outcome returned for the record".to_owned()));
    }
    (done, failed)
}

fn describe_errors(outcome: &RecordOutcome) -> String {
    let errors: Vec<String> = outcome
        .errors()
        .iter()
        .map(|e| match e.fields.is_empty() {
            true => format!("{}: {}", e.status_code, e.message),
            false => format!("{}: {} ({})", e.status_code, e.message, e.fields.join(", ")),
        })
        .collect();
    match errors.is_empty() {
        true => "failed without an error message".to_owned(),
        false => errors.join("; "),
    }
}
