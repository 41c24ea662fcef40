//! Writes with Salesforce's rules: insert, update, upsert, delete (to the Recycle Bin, with
//! cascades, restrictions and SetNull), hard delete, undelete and purge, each failing per record
//! with Salesforce's status codes.
//!
//! A [`Writer`] works on a draft [`Overlay`] inside [`crate::store::Store::write`]. Values are
//! checked as Salesforce checks them: only `createable` fields on insert (plus `CreatedDate` and
//! `LastModifiedDate`, as with the "Set Audit Fields upon Record Creation" permission) and
//! `updateable` ones on update (`INVALID_FIELD_FOR_INSERT_UPDATE`), required fields
//! (`REQUIRED_FIELD_MISSING`), typed values (`INVALID_TYPE_ON_FIELD_IN_RECORD`), text length
//! (`STRING_TOO_LONG`) and references to live records of the field's `referenceTo` objects
//! (`MALFORMED_ID`, `FIELD_INTEGRITY_EXCEPTION`, `ENTITY_IS_DELETED`,
//! `INVALID_CROSS_REFERENCE_KEY`). Each record either fails before anything is written or is
//! written whole.
//!
//! Deleting a record deletes the children whose reference field is `cascadeDelete`, refuses
//! (`DELETE_FAILED`) while a `restrictedDelete` child would survive, and clears other lookups
//! (SetNull). Finding children scans the child objects, so deletes run off the async runtime.
//! Undelete restores a root record with its cascaded children and, as Salesforce documents,
//! re-points the cleared lookups of parent accounts, contacts' managers (Reports To) and custom
//! lookups that were not replaced meanwhile.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use crate::data::{Org, Row, format_datetime};
use crate::ids::record_id;
use crate::schema::{FieldDef, ObjectDef};
use crate::soql::parse_datetime;
use crate::store::{Batch, Cleared, Deletion, Overlay, Record, Slot, State, Store, normalize_id};

/// Why one record was not written: a Salesforce status code, message and the fields involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The status code (`REQUIRED_FIELD_MISSING`, ...).
    pub code: &'static str,
    /// The message.
    pub message: String,
    /// Fields involved, if any.
    pub fields: Vec<String>,
}

impl RecordError {
    /// An error about no field in particular.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        RecordError {
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    fn on(code: &'static str, message: impl Into<String>, field: &str) -> Self {
        RecordError {
            code,
            message: message.into(),
            fields: vec![field.to_owned()],
        }
    }

    /// The `sf__Error` cell of Bulk API 2.0 failed results: `CODE:message:fields --`.
    pub fn bulk_text(&self) -> String {
        format!(
            "{}:{}:{} --",
            self.code,
            self.message,
            self.fields.join(",")
        )
    }
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for RecordError {}

/// Values to write: field API name (any case) and value (`None`: set null).
pub type Changes = [(String, Option<String>)];

/// The cell of a blob field that holds a body (the bytes are kept beside the record).
pub const BLOB_CELL: &str = "(body)";

/// Fields a client may set on insert although they are not `createable` (with the "Set Audit
/// Fields upon Record Creation" permission).
const AUDIT_ON_INSERT: &[&str] = &["CreatedDate", "LastModifiedDate"];

/// The `INVALID_FIELD` error for a field `def` does not have.
pub fn no_such_field(def: &ObjectDef, name: &str) -> RecordError {
    RecordError::new(
        "INVALID_FIELD",
        format!("No such column '{name}' on sobject of type {}", def.name),
    )
}

/// Records matching an external id value: lowercased value -> slots of live records.
pub type ExternalIndex = HashMap<String, Vec<Slot>>;

/// A batch of writes against a draft overlay.
#[derive(Debug)]
pub struct Writer<'a> {
    org: &'a Org,
    overlay: &'a mut Overlay,
    store: &'a Store,
    now: String,
    /// Records restored by this writer's undeletes (a later id of the same call that was
    /// restored with its parent succeeds).
    undeleted: HashSet<String>,
}

/// A record found by id: its object, slot, id and current contents.
struct Found<'a> {
    def: &'a ObjectDef,
    slot: Slot,
    id: String,
    record: Record,
}

/// What one delete will do.
struct Doomed<'a> {
    records: Vec<(&'a ObjectDef, Slot, String)>,
    cleared: Vec<Cleared>,
}

impl<'a> Writer<'a> {
    /// A writer stamping changes with the store's clock.
    pub fn new(org: &'a Org, store: &'a Store, overlay: &'a mut Overlay) -> Self {
        let now = format_datetime(store.clock.now().unix_timestamp());
        Writer {
            org,
            overlay,
            store,
            now,
            undeleted: HashSet::new(),
        }
    }

    /// The draft overlay.
    pub fn overlay(&self) -> &Overlay {
        self.overlay
    }

    /// Replaces the draft (to roll back to a copy taken earlier).
    pub fn restore(&mut self, saved: Overlay) {
        *self.overlay = saved;
    }

    /// Inserts a record of `def`; returns its new id.
    pub fn insert(&mut self, def: &ObjectDef, changes: &Changes) -> Result<String, RecordError> {
        let values = self.values(def, changes, true)?;
        let missing: Vec<String> = def
            .fields
            .iter()
            .enumerate()
            .filter(|(i, f)| {
                f.required_on_create() && !values.iter().any(|(v, x)| v == i && x.is_some())
            })
            .map(|(_, f)| f.name.to_owned())
            .collect();
        if !missing.is_empty() {
            return Err(RecordError {
                code: "REQUIRED_FIELD_MISSING",
                message: format!("Required fields are missing: [{}]", missing.join(", ")),
                fields: missing,
            });
        }
        let id = self.new_id(def);
        let row = self.new_row(def, &id, values);
        self.overlay.push(
            def.name,
            id.clone(),
            Record {
                row,
                state: State::Live,
            },
        );
        if def.name == "ContentVersion" {
            self.publish_version(def, &id)?;
        }
        Ok(id)
    }

    /// What Salesforce does when a ContentVersion is inserted without a ContentDocumentId (a new
    /// file): it creates the ContentDocument (titled like the version, whose latest version it
    /// is) and, when `FirstPublishLocationId` names a record, the ContentDocumentLink that shares
    /// the file with it; the version is the document's first and latest.
    fn publish_version(&mut self, def: &ObjectDef, version_id: &str) -> Result<(), RecordError> {
        let cell = |w: &Self, name: &str| -> Option<String> {
            let (found, slot) = w.overlay.locate(w.org, version_id)?;
            let record = w.overlay.record(w.org, found, slot)?;
            def.index_of(name).and_then(|i| record.row[i].clone())
        };
        if cell(self, "ContentDocumentId").is_some() {
            return Ok(());
        }
        let title = cell(self, "Title");
        let document_def = self.object("ContentDocument")?;
        let document = self.insert(document_def, &[("Title".to_owned(), title)])?;
        self.set_cells(
            document_def,
            &document,
            &[("LatestPublishedVersionId", version_id)],
        );
        self.set_cells(
            def,
            version_id,
            &[
                ("ContentDocumentId", document.as_str()),
                ("IsLatest", "true"),
                ("VersionNumber", "1"),
            ],
        );
        if let Some(location) = cell(self, "FirstPublishLocationId") {
            let link_def = self.object("ContentDocumentLink")?;
            let link = [
                ("LinkedEntityId".to_owned(), Some(location)),
                ("ContentDocumentId".to_owned(), Some(document)),
                ("ShareType".to_owned(), Some("V".to_owned())),
                ("Visibility".to_owned(), Some("AllUsers".to_owned())),
            ];
            self.insert(link_def, &link)?;
        }
        Ok(())
    }

    fn object(&self, name: &str) -> Result<&'a ObjectDef, RecordError> {
        self.org
            .object(name)
            .ok_or_else(|| RecordError::new("INVALID_TYPE", format!("no {name} object")))
    }

    /// Sets cells Salesforce maintains itself (read-only to clients) on a record.
    fn set_cells(&mut self, def: &ObjectDef, id: &str, cells: &[(&str, &str)]) {
        let Some((found, slot)) = self.overlay.locate(self.org, id) else {
            return;
        };
        let Some(mut record) = self.overlay.record(self.org, found, slot) else {
            return;
        };
        for (name, value) in cells {
            if let Some(i) = def.index_of(name) {
                record.row[i] = Some((*value).to_owned());
            }
        }
        self.overlay.put(def.name, slot, record);
    }

    /// Updates record `id` (of `expect`, if given); `modstamp` overrides the time stamped on it
    /// (a late commit). Returns the record's id.
    pub fn update(
        &mut self,
        expect: Option<&ObjectDef>,
        id: &str,
        changes: &Changes,
        modstamp: Option<&str>,
    ) -> Result<String, RecordError> {
        let found = self.live(expect, id)?;
        let values = self.values(found.def, changes, false)?;
        if let Some((i, _)) = values
            .iter()
            .find(|(i, v)| v.is_none() && !found.def.fields[*i].nillable)
        {
            let name = found.def.fields[*i].name;
            return Err(RecordError::on(
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{name}]"),
                name,
            ));
        }
        let mut record = found.record;
        for (i, value) in values {
            record.row[i] = value;
        }
        let at = modstamp.unwrap_or(&self.now).to_owned();
        stamp(found.def, &mut record.row, &at, false);
        self.overlay.put(found.def.name, found.slot, record);
        Ok(found.id)
    }

    /// Upserts on `field` (an external id, or `Id`): updates the one live record whose field
    /// holds the row's value, inserts when none does. Returns (id, created).
    pub fn upsert(
        &mut self,
        def: &ObjectDef,
        field: &FieldDef,
        index: &mut ExternalIndex,
        changes: &Changes,
    ) -> Result<(String, bool), RecordError> {
        let key = changes
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(field.name))
            .and_then(|(_, v)| v.clone())
            .ok_or_else(|| {
                RecordError::on(
                    "MISSING_ARGUMENT",
                    format!("{} not specified", field.name),
                    field.name,
                )
            })?;
        if field.name == "Id" {
            let rest: Vec<_> = changes
                .iter()
                .filter(|(n, _)| !n.eq_ignore_ascii_case("Id"))
                .cloned()
                .collect();
            return self
                .update(Some(def), &key, &rest, None)
                .map(|id| (id, false));
        }
        let matches = index.get(&key.to_lowercase()).cloned().unwrap_or_default();
        match matches.as_slice() {
            [] => {
                let id = self.insert(def, changes)?;
                if let Some((_, slot)) = self.overlay.locate(self.org, &id) {
                    index.entry(key.to_lowercase()).or_default().push(slot);
                }
                Ok((id, true))
            }
            [slot] => {
                let id = self.id_at(def, *slot).unwrap_or_default();
                self.update(Some(def), &id, changes, None)
                    .map(|id| (id, false))
            }
            many => {
                let ids: Vec<String> = many.iter().filter_map(|s| self.id_at(def, *s)).collect();
                Err(RecordError::on(
                    "DUPLICATE_EXTERNAL_ID",
                    format!(
                        "{}: more than one record found for external id field: [{}]",
                        field.name,
                        ids.join(", ")
                    ),
                    field.name,
                ))
            }
        }
    }

    /// The live records of `def` by the (lowercased) value of `field`, for [`Writer::upsert`].
    pub fn external_index(&self, def: &ObjectDef, field: &FieldDef) -> ExternalIndex {
        let mut index = ExternalIndex::new();
        let Some(at) = def.index_of(field.name) else {
            return index;
        };
        for slot in self.overlay.slots(self.org, def) {
            let Some(record) = self.overlay.record(self.org, def, slot) else {
                continue;
            };
            if let (State::Live, Some(Some(value))) = (record.state, record.row.get(at)) {
                index.entry(value.to_lowercase()).or_default().push(slot);
            }
        }
        index
    }

    /// Deletes record `id` (of `expect`, if given) with its cascade: to the Recycle Bin, or for
    /// good when `hard`. Returns the record's id.
    pub fn delete(
        &mut self,
        expect: Option<&ObjectDef>,
        id: &str,
        hard: bool,
    ) -> Result<String, RecordError> {
        let found = self.live(expect, id)?;
        if !found.def.deletable() {
            return Err(RecordError::new(
                "INVALID_TYPE_FOR_OPERATION",
                "entity type cannot be deleted",
            ));
        }
        let doomed = self.cascade(found.def, found.slot, &found.id)?;
        let batch = self.store.next_batch.fetch_add(1, Ordering::Relaxed);
        let mut members = Vec::with_capacity(doomed.records.len());
        for (k, (def, slot, _)) in doomed.records.iter().enumerate() {
            let state = if hard {
                State::Purged
            } else {
                State::Deleted(Some(Deletion {
                    batch,
                    root: k == 0,
                }))
            };
            self.set_state(def, *slot, state);
            members.push((def.name, *slot));
        }
        for cleared in &doomed.cleared {
            self.set_field(cleared, None);
        }
        if !hard {
            self.overlay.add_batch(
                batch,
                Batch {
                    members,
                    cleared: doomed.cleared,
                },
            );
        }
        Ok(found.id)
    }

    /// Undeletes record `id` from the Recycle Bin; a record deleted by a delete call comes back
    /// with the children that call cascade-deleted. Returns the record's id.
    pub fn undelete(&mut self, id: &str) -> Result<String, RecordError> {
        let not_in_bin = || RecordError::new("UNDELETE_FAILED", "Entity is not in the recycle bin");
        let id = normalize_id(id)
            .ok_or_else(|| RecordError::new("MALFORMED_ID", format!("malformed id {id}")))?;
        let (def, slot) = self.overlay.locate(self.org, &id).ok_or_else(not_in_bin)?;
        let record = self
            .overlay
            .record(self.org, def, slot)
            .ok_or_else(not_in_bin)?;
        let deletion = match record.state {
            State::Deleted(d) => d,
            State::Live if self.undeleted.contains(&id) => return Ok(id),
            _ => return Err(not_in_bin()),
        };
        if let Some(parent) = self.deleted_master(def, &record.row) {
            return Err(RecordError::new(
                "UNDELETE_FAILED",
                format!("Entity's parent {parent} is deleted; undelete it first"),
            ));
        }
        let batch = deletion
            .filter(|d| d.root)
            .and_then(|d| self.overlay.batch(d.batch).map(|b| (d.batch, b)));
        let Some((batch_id, batch)) = batch else {
            self.revive(def, slot);
            return Ok(id);
        };
        for (object, member) in &batch.members {
            let Some(member_def) = self.org.object(object) else {
                continue;
            };
            let current = self.overlay.record(self.org, member_def, *member);
            let same = matches!(current.map(|r| r.state), Some(State::Deleted(Some(d))) if d.batch == batch_id);
            if same {
                self.revive(member_def, *member);
            }
        }
        for cleared in &batch.cleared {
            self.relink(cleared);
        }
        Ok(id)
    }

    /// Undeletes `ids`, results in their order: records a delete call was asked for first, so a
    /// cascaded child listed with its parent comes back with it (and succeeds).
    pub fn undelete_all(&mut self, ids: &[String]) -> Vec<Result<String, RecordError>> {
        let mut results: Vec<Option<Result<String, RecordError>>> = vec![None; ids.len()];
        let cascaded: Vec<bool> = ids.iter().map(|id| self.is_cascaded(id)).collect();
        for pass in [false, true] {
            for (k, id) in ids.iter().enumerate() {
                if cascaded[k] == pass {
                    results[k] = Some(self.undelete(id));
                }
            }
        }
        results.into_iter().flatten().collect()
    }

    /// Whether `id` is in the Recycle Bin as the cascaded child of another deleted record.
    fn is_cascaded(&self, id: &str) -> bool {
        let record = normalize_id(id)
            .and_then(|id| self.overlay.locate(self.org, &id))
            .and_then(|(def, slot)| self.overlay.record(self.org, def, slot));
        matches!(record.map(|r| r.state), Some(State::Deleted(Some(d))) if !d.root)
    }

    /// Purges Recycle Bin records for which `which(object, id)` holds; returns how many.
    pub fn purge(&mut self, which: impl Fn(&ObjectDef, &str) -> bool) -> usize {
        let mut purged = 0;
        for def in self.org.objects.iter().filter(|d| d.deletable()) {
            let doomed: Vec<Slot> = self
                .overlay
                .recycle_bin(self.org, def)
                .into_iter()
                .filter(|(_, id)| which(def, id))
                .map(|(slot, _)| slot)
                .collect();
            purged += doomed.len();
            for slot in doomed {
                self.overlay.put(
                    def.name,
                    slot,
                    Record {
                        row: Row::new(),
                        state: State::Purged,
                    },
                );
            }
        }
        purged
    }

    fn new_id(&self, def: &ObjectDef) -> String {
        let n = self.store.next_id.fetch_add(1, Ordering::Relaxed);
        record_id(def.key_prefix, self.org.pod(), n)
    }

    /// A fresh row: defaults, system fields and audit stamps, then the given values.
    fn new_row(&self, def: &ObjectDef, id: &str, values: Vec<(usize, Option<String>)>) -> Row {
        let inserted = self.overlay.table(def.name).map_or(0, |t| t.inserted_len());
        let number = self.org.row_count(def.name) + self.org.deleted_count(def.name) + inserted + 1;
        let mut row: Row = def
            .fields
            .iter()
            .map(|f| match (f.name, f.ftype) {
                ("Id", _) => Some(id.to_owned()),
                ("OwnerId", _) => Some(self.org.user_id.clone()),
                (_, "boolean") => Some("false".to_owned()),
                _ if f.auto_number => Some(auto_number(def, number)),
                _ => None,
            })
            .collect();
        stamp(def, &mut row, &self.now, true);
        for (i, value) in values {
            row[i] = value;
        }
        row
    }

    /// Checks and converts `changes` against `def`'s fields.
    fn values(
        &self,
        def: &ObjectDef,
        changes: &Changes,
        insert: bool,
    ) -> Result<Vec<(usize, Option<String>)>, RecordError> {
        let mut out = Vec::with_capacity(changes.len());
        for (name, value) in changes {
            let i = def
                .fields
                .iter()
                .position(|f| f.name.eq_ignore_ascii_case(name))
                .ok_or_else(|| no_such_field(def, name))?;
            let field = &def.fields[i];
            if field.name == "Id" {
                if insert && value.is_some() {
                    return Err(RecordError::on(
                        "INVALID_FIELD_FOR_INSERT_UPDATE",
                        "cannot specify Id in an insert call",
                        "Id",
                    ));
                }
                continue;
            }
            let allowed = if insert {
                field.createable || AUDIT_ON_INSERT.contains(&field.name)
            } else {
                field.updateable
            };
            if !allowed {
                return Err(RecordError::on(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    format!(
                        "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                        field.name
                    ),
                    field.name,
                ));
            }
            let converted = match value {
                None => None,
                Some(raw) => Some(self.convert(field, raw)?),
            };
            out.push((i, converted));
        }
        Ok(out)
    }

    /// `raw` as the value `field` stores, or the error Salesforce gives for it.
    fn convert(&self, field: &FieldDef, raw: &str) -> Result<String, RecordError> {
        let mistyped = || {
            RecordError::on(
                "INVALID_TYPE_ON_FIELD_IN_RECORD",
                format!("{}: value not of required type: {raw}", field.label),
                field.name,
            )
        };
        match field.ftype {
            "boolean" => match raw.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok("true".to_owned()),
                "false" | "0" => Ok("false".to_owned()),
                _ => Err(mistyped()),
            },
            "int" => raw
                .trim()
                .parse::<i64>()
                .map(|n| n.to_string())
                .map_err(|_| mistyped()),
            "double" | "currency" | "percent" => match raw.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => Ok(raw.trim().to_owned()),
                _ => Err(mistyped()),
            },
            "date" => time::Date::parse(
                raw,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .map(|_| raw.to_owned())
            .map_err(|_| mistyped()),
            "datetime" => parse_datetime(raw)
                .map(|t| format_datetime(t.unix_timestamp()))
                .ok_or_else(mistyped),
            "reference" => self.reference(field, raw),
            // The body itself is kept beside the record (see `Sim::set_blob`); the cell only
            // says there is one.
            "base64" => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(raw.trim())
                    .map(|_| BLOB_CELL.to_owned())
                    .map_err(|_| {
                        RecordError::on(
                            "INVALID_TYPE_ON_FIELD_IN_RECORD",
                            format!("{}: value not of required type: base64", field.label),
                            field.name,
                        )
                    })
            }
            _ => text(field, raw),
        }
    }

    /// A reference value: an id of a live record of one of the field's `referenceTo` objects.
    fn reference(&self, field: &FieldDef, raw: &str) -> Result<String, RecordError> {
        let mistyped = |code| {
            RecordError::on(
                code,
                format!("{}: id value of incorrect type: {raw}", field.label),
                field.name,
            )
        };
        let id = normalize_id(raw).ok_or_else(|| mistyped("MALFORMED_ID"))?;
        let target = self
            .org
            .object_by_prefix(&id[..3])
            .filter(|o| field.reference_to.contains(&o.name))
            .ok_or_else(|| mistyped("FIELD_INTEGRITY_EXCEPTION"))?;
        let state = self
            .overlay
            .locate(self.org, &id)
            .filter(|(def, _)| def.name == target.name)
            .and_then(|(def, slot)| self.overlay.record(self.org, def, slot))
            .map(|r| r.state);
        match state {
            Some(State::Live) => Ok(id),
            Some(State::Deleted(_)) => Err(RecordError::on(
                "ENTITY_IS_DELETED",
                "entity is deleted",
                field.name,
            )),
            _ => Err(RecordError::on(
                "INVALID_CROSS_REFERENCE_KEY",
                format!("invalid cross reference id: {raw}"),
                field.name,
            )),
        }
    }

    /// Record `id`, which must exist, be live and (if `expect` is given) be of that object.
    fn live(&self, expect: Option<&ObjectDef>, raw: &str) -> Result<Found<'a>, RecordError> {
        let label = expect.map_or("Record ID", |d| d.fields[0].label);
        let malformed = || {
            RecordError::new(
                "MALFORMED_ID",
                format!("{label}: id value of incorrect type: {raw}"),
            )
        };
        let id = normalize_id(raw).ok_or_else(malformed)?;
        let missing =
            || RecordError::new("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id");
        let located = self.overlay.locate(self.org, &id);
        if let (Some(want), Some((def, _))) = (expect, located)
            && want.name != def.name
        {
            return Err(malformed());
        }
        let (def, slot) = located.ok_or_else(missing)?;
        let record = self
            .overlay
            .record(self.org, def, slot)
            .ok_or_else(missing)?;
        match record.state {
            State::Live => Ok(Found {
                def,
                slot,
                id,
                record,
            }),
            State::Deleted(_) => Err(RecordError::new("ENTITY_IS_DELETED", "entity is deleted")),
            State::Purged => Err(missing()),
        }
    }

    fn id_at(&self, def: &ObjectDef, slot: Slot) -> Option<String> {
        self.overlay
            .record(self.org, def, slot)
            .and_then(|r| id_of(def, &r.row))
    }

    /// Every record a delete of `root` takes with it, or `DELETE_FAILED` if a restricting child
    /// would survive.
    fn cascade(&self, def: &'a ObjectDef, slot: Slot, id: &str) -> Result<Doomed<'a>, RecordError> {
        let mut records = vec![(def, slot, id.to_owned())];
        let mut seen: HashSet<String> = HashSet::from([id.to_owned()]);
        let mut restricting: Vec<(&ObjectDef, String)> = Vec::new();
        let mut cleared: Vec<(Cleared, String)> = Vec::new();
        let mut level = 0;
        while level < records.len() {
            let frontier: Vec<(&ObjectDef, String)> = records[level..]
                .iter()
                .map(|(d, _, i)| (*d, i.clone()))
                .collect();
            level = records.len();
            for (child, field, hits) in self.children(&frontier) {
                let f = &child.fields[field];
                for (child_slot, child_id, parent) in hits {
                    if f.cascade_delete {
                        if seen.insert(child_id.clone()) {
                            records.push((child, child_slot, child_id));
                        }
                    } else if f.restricted_delete {
                        restricting.push((child, child_id));
                    } else {
                        let entry = Cleared {
                            object: child.name,
                            slot: child_slot,
                            field,
                            parent,
                        };
                        cleared.push((entry, child_id));
                    }
                }
            }
        }
        let blocking: Vec<_> = restricting
            .into_iter()
            .filter(|(_, c)| !seen.contains(c))
            .collect();
        if let Some((child, _)) = blocking.first() {
            let ids: Vec<&str> = blocking.iter().map(|(_, c)| c.as_str()).collect();
            return Err(RecordError::new(
                "DELETE_FAILED",
                format!(
                    "Your attempt to delete {id} could not be completed because it is associated with the following {}s.: {}",
                    child.label.to_lowercase(),
                    ids.join(", ")
                ),
            ));
        }
        let cleared = cleared
            .into_iter()
            .filter(|(_, c)| !seen.contains(c))
            .map(|(e, _)| e)
            .collect();
        Ok(Doomed { records, cleared })
    }

    /// Live records pointing at any of `parents`, by (child object, field): one scan of each
    /// child object. Each hit is (child slot, child id, parent id).
    #[allow(clippy::type_complexity)]
    fn children(
        &self,
        parents: &[(&ObjectDef, String)],
    ) -> Vec<(&'a ObjectDef, usize, Vec<(Slot, String, String)>)> {
        let mut out = Vec::new();
        for child in self.org.objects.iter() {
            let fields: Vec<usize> = child
                .fields
                .iter()
                .enumerate()
                .filter(|(_, f)| {
                    f.ftype == "reference"
                        && parents
                            .iter()
                            .any(|(p, _)| f.reference_to.contains(&p.name))
                })
                .map(|(i, _)| i)
                .collect();
            if fields.is_empty() {
                continue;
            }
            let wanted: HashSet<&str> = parents.iter().map(|(_, id)| id.as_str()).collect();
            let mut hits: Vec<Vec<(Slot, String, String)>> = vec![Vec::new(); fields.len()];
            for slot in self.overlay.slots(self.org, child) {
                let Some(record) = self.overlay.record(self.org, child, slot) else {
                    continue;
                };
                if record.state != State::Live {
                    continue;
                }
                for (k, field) in fields.iter().enumerate() {
                    if let Some(Some(value)) = record.row.get(*field)
                        && wanted.contains(value.as_str())
                    {
                        let child_id = id_of(child, &record.row).unwrap_or_default();
                        hits[k].push((slot, child_id, value.clone()));
                    }
                }
            }
            for (field, found) in fields.into_iter().zip(hits) {
                if !found.is_empty() {
                    out.push((child, field, found));
                }
            }
        }
        out
    }

    /// The id of a deleted record a cascade-delete field of `row` points at, if any.
    fn deleted_master(&self, def: &ObjectDef, row: &Row) -> Option<String> {
        def.fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.cascade_delete)
            .find_map(|(i, _)| {
                let parent = row.get(i)?.as_deref()?;
                let (pdef, slot) = self.overlay.locate(self.org, parent)?;
                let state = self.overlay.record(self.org, pdef, slot)?.state;
                (state != State::Live && !self.undeleted.contains(parent))
                    .then(|| parent.to_owned())
            })
    }

    fn set_state(&mut self, def: &ObjectDef, slot: Slot, state: State) {
        let Some(mut record) = self.overlay.record(self.org, def, slot) else {
            return;
        };
        if state == State::Purged {
            record.row = Row::new();
        } else {
            let deleted = !matches!(state, State::Live);
            if let Some(cell) = def
                .index_of("IsDeleted")
                .and_then(|i| record.row.get_mut(i))
            {
                *cell = Some(deleted.to_string());
            }
            stamp(def, &mut record.row, &self.now, false);
        }
        record.state = state;
        self.overlay.put(def.name, slot, record);
    }

    fn revive(&mut self, def: &ObjectDef, slot: Slot) {
        if let Some(id) = self.id_at(def, slot) {
            self.undeleted.insert(id);
        }
        self.set_state(def, slot, State::Live);
    }

    /// Sets the cleared lookup of `c` to `value` (stamping the child).
    fn set_field(&mut self, c: &Cleared, value: Option<String>) {
        let Some(def) = self.org.object(c.object) else {
            return;
        };
        let Some(mut record) = self.overlay.record(self.org, def, c.slot) else {
            return;
        };
        record.row[c.field] = value;
        stamp(def, &mut record.row, &self.now, false);
        self.overlay.put(def.name, c.slot, record);
    }

    /// Restores a lookup cleared by a delete, where Salesforce does: a restorable field of a
    /// live child that is still blank.
    fn relink(&mut self, c: &Cleared) {
        let Some(def) = self.org.object(c.object) else {
            return;
        };
        let restorable = def.fields[c.field].restored_on_undelete();
        let record = self.overlay.record(self.org, def, c.slot);
        let blank = record.is_some_and(|r| r.state == State::Live && r.row[c.field].is_none());
        if restorable && blank {
            self.set_field(c, Some(c.parent.clone()));
        }
    }
}

impl crate::server::Sim {
    /// Runs `write` with a [`Writer`] on a draft of the overlay, then publishes the draft
    /// (serialized with other writes; blocking, as deletes scan child objects).
    pub fn write<R>(&self, write: impl FnOnce(&mut Writer<'_>) -> R) -> R {
        self.store
            .write(|overlay| write(&mut Writer::new(&self.org, &self.store, overlay)))
    }
}

/// The record id in `row` (its `Id` cell).
pub fn id_of(def: &ObjectDef, row: &Row) -> Option<String> {
    def.index_of("Id")
        .and_then(|i| row.get(i))
        .cloned()
        .flatten()
}

/// Text `raw` if it fits `field`.
fn text(field: &FieldDef, raw: &str) -> Result<String, RecordError> {
    let chars = raw.chars().count();
    if field.length > 0 && chars > field.length as usize {
        return Err(RecordError::on(
            "STRING_TOO_LONG",
            format!(
                "{}: data value too large: {raw} (max length={})",
                field.label, field.length
            ),
            field.name,
        ));
    }
    if field.ftype == "email" && !raw.contains('@') {
        return Err(RecordError::on(
            "INVALID_EMAIL_ADDRESS",
            format!("{}: invalid email address: {raw}", field.label),
            field.name,
        ));
    }
    Ok(raw.to_owned())
}

/// Stamps `LastModifiedDate` and `SystemModstamp` (and `CreatedDate` on insert) with `at`.
fn stamp(def: &ObjectDef, row: &mut Row, at: &str, insert: bool) {
    let names: &[&str] = if insert {
        &["CreatedDate", "LastModifiedDate", "SystemModstamp"]
    } else {
        &["LastModifiedDate", "SystemModstamp"]
    };
    for name in names {
        if let Some(cell) = def.index_of(name).and_then(|i| row.get_mut(i)) {
            *cell = Some(at.to_owned());
        }
    }
}

/// The auto-number value of record number `n` (`INV-000042` for invoices, `00000042` else).
fn auto_number(def: &ObjectDef, n: usize) -> String {
    match def.name {
        "Invoice__c" => format!("INV-{n:06}"),
        _ => format!("{n:08}"),
    }
}
