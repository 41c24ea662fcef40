//! Planning a restore, before anything touches the org:
//!
//! 1. **Scope.** The records named (ids, or every record of the objects named) as the backup
//!    holds them: for an incremental, each record's newest version in the backup's chain.
//!    Records deleted as of the backup are not part of its state and are left out.
//! 2. **Expansion** through the stored relationships: `parent_depth` levels of parents and
//!    `child_depth` levels of children (a child counts if the version restored points at a
//!    record of the level above).
//! 3. **Decision** per record, from the target org's state (`queryAll` of `Id`, `IsDeleted`,
//!    `SystemModstamp`): in the Recycle Bin -> undelete (it keeps its id); live and stamped as in
//!    the backup -> skip; live and changed -> update; gone (purged, or another org) -> insert
//!    (a new id).
//! 4. **Order** of objects, parents first, with the lookups that wait for a second pass and
//!    those that cannot be honoured ([`coffer_core::restore::write_order`]).
//!
//! The plan is stored (`restores.plan_json`, one `restore_records` row per record) and printable
//! with `coffer restore plan`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use coffer_catalog::{ChainRecord, PlannedRecord, RestoreAction, RestoreRecord};
use coffer_core::BackupId;
use coffer_core::restore::{LookupField, ObjectLookups, WriteOrder, write_order};
use coffer_salesforce::{QueryOperation, SObjectDescribe, SalesforceClient};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::backup::BackupContext;
use crate::error::WorkerError;

/// Which records a restore covers, as the request says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Every record of these objects.
    pub sobjects: Vec<String>,
    /// These records.
    pub record_ids: Vec<String>,
    /// Levels of children to add.
    pub child_depth: u32,
    /// Levels of parents to add.
    pub parent_depth: u32,
}

/// The stored plan (`restores.plan_json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPlan {
    /// The backup restored from.
    pub backup_id: String,
    /// It and its bases, newest first: where the records' rows are read.
    pub chain: Vec<String>,
    /// Whether the target is the org the backup was taken of (else every record is inserted).
    pub same_org: bool,
    /// Write order, deferred lookups, required self-lookups and blocked lookups.
    pub order: WriteOrder,
    /// Records per object and action (`insert`, `update`, `undelete`, `skip`).
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
    /// Records in scope the restore leaves out, per object, and why.
    pub left_out: BTreeMap<String, LeftOut>,
    /// Into another org: each backed-up user to the target org's user with the same email, or
    /// to the default owner when none has it.
    #[serde(default)]
    pub users: UserMap,
    /// The restore key: the external id field inserts are keyed by, and the objects whose
    /// target has it. Inserts into other objects are plain creates.
    #[serde(default)]
    pub restore_key: RestoreKey,
    /// What the operator should know before executing (inserts that a crash could repeat,
    /// record types the target lacks).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Into another org: each backed-up record type to the target's of the same object and
    /// developer name.
    #[serde(default)]
    pub record_types: RecordTypeMap,
}

/// How record types of the backed-up org become record types of the target org.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordTypeMap {
    /// Source record type id to target record type id.
    pub map: BTreeMap<String, String>,
    /// Source record types the target org lacks (id to `Object.DeveloperName`): records of
    /// them are written without one, and take the target's default.
    pub missing: BTreeMap<String, String>,
}

/// Which objects of the target org take keyed inserts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreKey {
    /// The field ([`crate::WorkerSettings::restore_key_field`] when planned).
    pub field: String,
    /// Objects with inserts whose target describe has the field as a createable external id.
    pub objects: BTreeSet<String>,
}

impl RestoreKey {
    /// The key field of `sobject`, if its inserts are keyed.
    pub fn of(&self, sobject: &str) -> Option<&str> {
        self.objects
            .contains(sobject)
            .then_some(self.field.as_str())
    }
}

/// How users of the backed-up org become users of the target org.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMap {
    /// Source user id to target user id.
    pub map: BTreeMap<String, String>,
    /// Source users no active target user matched, given to `default_owner`.
    pub defaulted: Vec<String>,
    /// The target org's user that takes what no matched user can (its first active user).
    pub default_owner: Option<String>,
}

/// Records of one object a restore leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    /// How many.
    pub records: u64,
    /// Why.
    pub reason: String,
}

/// Objects this version does not restore (Documents live in folders it does not recreate);
/// they are reported, not written. Attachments and Salesforce Files are restored with their
/// bodies.
const FILE_OBJECTS: &[&str] = &["Document"];

/// The schema snapshot of the backup: each object's describe, from its tasks.
pub(crate) async fn snapshot(
    ctx: &BackupContext,
    backup_id: BackupId,
) -> Result<BTreeMap<String, SObjectDescribe>, WorkerError> {
    let mut out = BTreeMap::new();
    for task in ctx.catalog.tasks(backup_id).await? {
        if task.slice.no != 0 {
            continue;
        }
        let describe: SObjectDescribe = serde_json::from_str(&task.describe_json)
            .map_err(|e| WorkerError::Task(format!("schema snapshot of {}: {e}", task.sobject)))?;
        out.insert(task.sobject, describe);
    }
    Ok(out)
}

/// Plans `restore` and stores the plan; returns it.
pub(crate) async fn plan_restore(
    ctx: &BackupContext,
    restore: &RestoreRecord,
    scope: &Scope,
    target: &SalesforceClient,
) -> Result<StoredPlan, WorkerError> {
    let catalog = &ctx.catalog;
    let chain: Vec<BackupId> = catalog
        .backup_chain(restore.backup_id)
        .await?
        .iter()
        .map(|b| b.backup_id)
        .collect();
    let describes = snapshot(ctx, restore.backup_id).await?;
    let same_org = restore.target_org_id == restore.org_id;
    // Into another org a record cannot be created without its required parents (masters,
    // required lookups), which exist there only if the restore brings them.
    let required = match same_org {
        true => HashSet::new(),
        false => required_lookups(&describes),
    };
    let (records, mut left_out) = leave_out_files(expand(ctx, &chain, scope, &required).await?);
    let erased = catalog
        .erased_records(&restore.tenant_id, &restore.org_id)
        .await?;
    let records = leave_out_erased(records, &erased, &mut left_out);
    let earlier = ctx
        .catalog
        .restored_before(
            &restore.tenant_id,
            &restore.target_org_id,
            &ids_of(&records),
        )
        .await?;
    let decided = decide(target, &records, same_org, &describes, &earlier).await?;
    let actions = &decided.actions;
    let objects: BTreeSet<&String> = records.keys().map(|(sobject, _)| sobject).collect();
    let in_scope: Vec<&SObjectDescribe> = objects
        .into_iter()
        .filter_map(|sobject| describes.get(sobject))
        .collect();
    let order = write_order(&lookups_of(&in_scope));
    let mut counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let planned: Vec<PlannedRecord> = records
        .iter()
        .map(|((sobject, id), version)| {
            let action = actions.get(id).copied().unwrap_or(RestoreAction::Insert);
            *counts
                .entry(sobject.clone())
                .or_default()
                .entry(action.as_str().to_owned())
                .or_default() += 1;
            PlannedRecord {
                source_id: id.clone(),
                sobject: sobject.clone(),
                action,
                backup_id: version.backup_id,
                part: version.part,
                row_no: version.row_no,
            }
        })
        .collect();
    let restore_key = restore_key(ctx, target, &counts).await?;
    let record_types = match same_org {
        true => RecordTypeMap::default(),
        false => map_record_types(ctx, &chain, target).await?,
    };
    let mut warnings = unkeyed_warnings(&restore_key, &counts);
    warnings.extend(record_types.missing.iter().map(|(id, name)| {
        format!(
            "record type {name} ({id}) has no match in the target org: records of it are \
             restored with the target's default record type. Create {name} there first to \
             keep it."
        )
    }));
    let plan = StoredPlan {
        restore_key,
        warnings,
        record_types,
        backup_id: restore.backup_id.to_string(),
        chain: chain.iter().map(ToString::to_string).collect(),
        same_org,
        order,
        counts,
        left_out,
        users: match same_org {
            true => UserMap::default(),
            false => map_users(ctx, &chain, target).await?,
        },
    };
    let json = serde_json::to_string(&plan)
        .map_err(|e| WorkerError::Task(format!("restore plan encoding: {e}")))?;
    catalog
        .record_restore_plan(&restore.restore_id, &json, &planned)
        .await?;
    // Records an earlier restore put back are where it put them.
    let found: Vec<(String, String)> = decided.found_at.into_iter().collect();
    catalog.mark_written(&restore.restore_id, &found).await?;
    tracing::info!(restore_id = %restore.restore_id, records = planned.len(), objects = plan.order.objects.len(), deferred = plan.order.deferred.len(), blocked = plan.order.blocked.len(), "restore planned");
    Ok(plan)
}

/// The objects with inserts whose target describe has the restore key field.
async fn restore_key(
    ctx: &BackupContext,
    target: &SalesforceClient,
    counts: &BTreeMap<String, BTreeMap<String, u64>>,
) -> Result<RestoreKey, WorkerError> {
    let field = ctx.settings.restore_key_field.clone();
    let mut objects = BTreeSet::new();
    for (sobject, actions) in counts {
        if !actions.contains_key(RestoreAction::Insert.as_str()) {
            continue;
        }
        let name =
            coffer_core::SObjectName::new(sobject.clone()).map_err(crate::backup::invalid)?;
        let describe = target.describe_sobject(&name).await?;
        let keyed = describe
            .fields
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(&field) && f.external_id && f.createable);
        if keyed {
            objects.insert(sobject.clone());
        }
    }
    Ok(RestoreKey { field, objects })
}

/// One warning per object whose inserts are not keyed: after a crash between Salesforce's
/// answer and its commit, those records are found again only by their values.
fn unkeyed_warnings(
    key: &RestoreKey,
    counts: &BTreeMap<String, BTreeMap<String, u64>>,
) -> Vec<String> {
    counts
        .iter()
        .filter(|(sobject, _)| !key.objects.contains(*sobject))
        .filter_map(|(sobject, actions)| {
            let inserts = actions.get(RestoreAction::Insert.as_str())?;
            Some(format!(
                "{sobject}: {inserts} inserts without the restore key field {field}; after a \
                 crash between Salesforce's answer and its record in the catalog they are looked \
                 for by their values, which cannot tell them from identical records someone \
                 else created meanwhile. Add {field} (Text(18), External ID, Unique) to \
                 {sobject} for inserts found by key and Bulk API loads.",
                field = key.field
            ))
        })
        .collect()
}

/// Splits off the records of file objects.
fn leave_out_files(
    records: BTreeMap<(String, String), ChainRecord>,
) -> (
    BTreeMap<(String, String), ChainRecord>,
    BTreeMap<String, LeftOut>,
) {
    let mut left_out: BTreeMap<String, LeftOut> = BTreeMap::new();
    let kept = records
        .into_iter()
        .filter(|((sobject, _), _)| {
            let file = FILE_OBJECTS.contains(&sobject.as_str());
            if file {
                left_out
                    .entry(sobject.clone())
                    .or_insert_with(|| LeftOut {
                        records: 0,
                        reason: "Salesforce Files and Documents are not restored by this version"
                            .to_owned(),
                    })
                    .records += 1;
            }
            !file
        })
        .collect();
    (kept, left_out)
}

/// Leaves out the records erased on request (their tombstones): never restored, from any
/// backup, even one taken before the erasure was asked.
fn leave_out_erased(
    records: BTreeMap<(String, String), ChainRecord>,
    erased: &BTreeSet<String>,
    left_out: &mut BTreeMap<String, LeftOut>,
) -> BTreeMap<(String, String), ChainRecord> {
    records
        .into_iter()
        .filter(|((sobject, id), _)| {
            let gone = erased.contains(id);
            if gone {
                left_out
                    .entry(format!("{sobject} (erased)"))
                    .or_insert_with(|| LeftOut {
                        records: 0,
                        reason: "erased on request (coffer erase): never restored".to_owned(),
                    })
                    .records += 1;
            }
            !gone
        })
        .collect()
}

/// The records in scope, by (sobject, id), each at its newest version in the chain.
async fn expand(
    ctx: &BackupContext,
    chain: &[BackupId],
    scope: &Scope,
    required: &HashSet<(String, String)>,
) -> Result<BTreeMap<(String, String), ChainRecord>, WorkerError> {
    let catalog = &ctx.catalog;
    let mut found: BTreeMap<String, ChainRecord> = BTreeMap::new();
    let mut seeds = Vec::new();
    if !scope.sobjects.is_empty() {
        seeds.extend(
            catalog
                .chain_records(chain, Some(&scope.sobjects), None)
                .await?,
        );
    }
    if !scope.record_ids.is_empty() {
        seeds.extend(
            catalog
                .chain_records(chain, None, Some(&scope.record_ids))
                .await?,
        );
    }
    let mut frontier = add_live(&mut found, seeds);
    for _ in 0..scope.parent_depth {
        let versions: Vec<(BackupId, String)> = frontier
            .iter()
            .filter_map(|id| found.get(id).map(|r| (r.backup_id, id.clone())))
            .collect();
        let parents: Vec<String> = catalog
            .version_links(&versions)
            .await?
            .into_iter()
            .map(|(_, _, parent)| parent)
            .filter(|p| !found.contains_key(p))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let records = catalog.chain_records(chain, None, Some(&parents)).await?;
        frontier = add_live(&mut found, records);
    }
    let mut frontier: Vec<String> = found.keys().cloned().collect();
    for _ in 0..scope.child_depth {
        let children = children_of(ctx, chain, &frontier, &found).await?;
        frontier = add_live(&mut found, children);
    }
    add_required_parents(ctx, chain, required, &mut found).await?;
    add_file_documents(ctx, chain, &mut found).await?;
    Ok(found
        .into_values()
        .map(|r| ((r.sobject.clone(), r.record_id.clone()), r))
        .collect())
}

/// The (object, field) pairs of lookups a record cannot be created without, as
/// [`lookups_of`] marks them required.
fn required_lookups(describes: &BTreeMap<String, SObjectDescribe>) -> HashSet<(String, String)> {
    let all: Vec<&SObjectDescribe> = describes.values().collect();
    lookups_of(&all)
        .into_iter()
        .flat_map(|o| {
            let sobject = o.sobject;
            o.lookups
                .into_iter()
                .filter(|l| l.required)
                .map(move |l| (sobject.clone(), l.name))
        })
        .collect()
}

/// Adds, until none is missing, the parents that records in `found` point at through a
/// `required` lookup.
async fn add_required_parents(
    ctx: &BackupContext,
    chain: &[BackupId],
    required: &HashSet<(String, String)>,
    found: &mut BTreeMap<String, ChainRecord>,
) -> Result<(), WorkerError> {
    if required.is_empty() {
        return Ok(());
    }
    let mut frontier: Vec<String> = found.keys().cloned().collect();
    while !frontier.is_empty() {
        let versions: Vec<(BackupId, String)> = frontier
            .iter()
            .filter_map(|id| found.get(id).map(|r| (r.backup_id, id.clone())))
            .collect();
        let parents: BTreeSet<String> = ctx
            .catalog
            .version_links(&versions)
            .await?
            .into_iter()
            .filter(|(child, field, parent)| {
                let sobject = found
                    .get(child)
                    .map(|r| r.sobject.clone())
                    .unwrap_or_default();
                required.contains(&(sobject, field.clone())) && !found.contains_key(parent)
            })
            .map(|(_, _, parent)| parent)
            .collect();
        let parents: Vec<String> = parents.into_iter().collect();
        let records = ctx
            .catalog
            .chain_records(chain, None, Some(&parents))
            .await?;
        frontier = add_live(found, records);
    }
    Ok(())
}

/// Maps the backed-up org's users to the target org's active users by email (case-insensitive);
/// the rest go to the target's first active user, and are listed.
async fn map_users(
    ctx: &BackupContext,
    chain: &[BackupId],
    target: &SalesforceClient,
) -> Result<UserMap, WorkerError> {
    let users = ctx
        .catalog
        .chain_records(chain, Some(&["User".to_owned()]), None)
        .await?;
    let source = super::source::read_versions(ctx, &users).await?;
    let mut results = target.rest_query(
        "SELECT Id, Email, IsActive FROM User",
        QueryOperation::Query,
    );
    let mut by_email: BTreeMap<String, String> = BTreeMap::new();
    let mut active: Vec<String> = Vec::new();
    while let Some(page) = results.next_page().await? {
        for row in &page.records {
            let (id, email, is_active) = (row.get(0), row.get(1), row.get(2));
            if is_active != Some("true") {
                continue;
            }
            if let Some(id) = id {
                active.push(id.to_owned());
                if let Some(email) = email.filter(|e| !e.is_empty()) {
                    by_email
                        .entry(email.to_ascii_lowercase())
                        .or_insert_with(|| id.to_owned());
                }
            }
        }
    }
    active.sort();
    let mut map = UserMap {
        default_owner: active.first().cloned(),
        ..UserMap::default()
    };
    for (id, row) in &source {
        let email = row.get("Email").map(|e| e.to_ascii_lowercase());
        match email.and_then(|e| by_email.get(&e)) {
            Some(target) => {
                map.map.insert(id.clone(), target.clone());
            }
            None => {
                map.defaulted.push(id.clone());
                if let Some(owner) = &map.default_owner {
                    map.map.insert(id.clone(), owner.clone());
                }
            }
        }
    }
    map.defaulted.sort();
    Ok(map)
}

/// Maps the record types the backup holds to the target org's by object and developer name
/// (their ids differ from org to org).
async fn map_record_types(
    ctx: &BackupContext,
    chain: &[BackupId],
    target: &SalesforceClient,
) -> Result<RecordTypeMap, WorkerError> {
    let kinds = ctx
        .catalog
        .chain_records(chain, Some(&["RecordType".to_owned()]), None)
        .await?;
    let source = super::source::read_versions(ctx, &kinds).await?;
    let mut results = target.rest_query(
        "SELECT Id, SobjectType, DeveloperName FROM RecordType",
        QueryOperation::Query,
    );
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    while let Some(page) = results.next_page().await? {
        for row in &page.records {
            if let (Some(id), Some(object), Some(name)) = (row.get(0), row.get(1), row.get(2)) {
                by_name.insert(format!("{object}.{name}"), id.to_owned());
            }
        }
    }
    let mut map = RecordTypeMap::default();
    for (id, row) in &source {
        let object = row
            .get("SobjectType")
            .map(String::as_str)
            .unwrap_or_default();
        let name = row
            .get("DeveloperName")
            .map(String::as_str)
            .unwrap_or_default();
        let key = format!("{object}.{name}");
        match by_name.get(&key) {
            Some(target) => map.map.insert(id.clone(), target.clone()),
            None => map.missing.insert(id.clone(), key),
        };
    }
    Ok(map)
}

/// Adds the ContentDocument of every file version and sharing link in scope: a file comes back
/// as a new document, which its links must point at.
async fn add_file_documents(
    ctx: &BackupContext,
    chain: &[BackupId],
    found: &mut BTreeMap<String, ChainRecord>,
) -> Result<(), WorkerError> {
    let files: Vec<(BackupId, String)> = found
        .values()
        .filter(|r| matches!(r.sobject.as_str(), "ContentVersion" | "ContentDocumentLink"))
        .map(|r| (r.backup_id, r.record_id.clone()))
        .collect();
    if files.is_empty() {
        return Ok(());
    }
    let documents: Vec<String> = ctx
        .catalog
        .version_links(&files)
        .await?
        .into_iter()
        .filter(|(_, field, parent)| field == "ContentDocumentId" && !found.contains_key(parent))
        .map(|(_, _, parent)| parent)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let records = ctx
        .catalog
        .chain_records(chain, None, Some(&documents))
        .await?;
    add_live(found, records);
    Ok(())
}

/// Records whose restored version points at one of `parents`, not yet in `found`.
async fn children_of(
    ctx: &BackupContext,
    chain: &[BackupId],
    parents: &[String],
    found: &BTreeMap<String, ChainRecord>,
) -> Result<Vec<ChainRecord>, WorkerError> {
    let candidates: Vec<String> = ctx
        .catalog
        .chain_children(chain, parents)
        .await?
        .into_iter()
        .map(|(child, _)| child)
        .filter(|c| !found.contains_key(c))
        .collect();
    let versions = ctx
        .catalog
        .chain_records(chain, None, Some(&candidates))
        .await?;
    let keys: Vec<(BackupId, String)> = versions
        .iter()
        .map(|v| (v.backup_id, v.record_id.clone()))
        .collect();
    let parents: BTreeSet<&String> = parents.iter().collect();
    let pointing: BTreeSet<String> = ctx
        .catalog
        .version_links(&keys)
        .await?
        .into_iter()
        .filter(|(_, _, parent)| parents.contains(parent))
        .map(|(child, _, _)| child)
        .collect();
    Ok(versions
        .into_iter()
        .filter(|v| pointing.contains(&v.record_id))
        .collect())
}

/// Adds the records that are live in their version; returns the ids added.
fn add_live(found: &mut BTreeMap<String, ChainRecord>, records: Vec<ChainRecord>) -> Vec<String> {
    let mut added = Vec::new();
    for record in records.into_iter().filter(|r| !r.deleted) {
        if !found.contains_key(&record.record_id) {
            added.push(record.record_id.clone());
            found.insert(record.record_id.clone(), record);
        }
    }
    added
}

/// The action for each record, and where records restored before are now.
struct Decided {
    /// By source id; a record absent from the map is inserted.
    actions: HashMap<String, RestoreAction>,
    /// (source id, target id) of records an earlier restore wrote that the org still holds.
    found_at: HashMap<String, String>,
}

fn ids_of(records: &BTreeMap<(String, String), ChainRecord>) -> Vec<String> {
    records.keys().map(|(_, id)| id.clone()).collect()
}

/// The action for each record, from the target org's state: a record the org holds under its
/// own id is undeleted, kept or updated; one an earlier restore wrote (`earlier`: source id to
/// the id it got) that the org still holds live is kept where it is; any other is inserted.
async fn decide(
    target: &SalesforceClient,
    records: &BTreeMap<(String, String), ChainRecord>,
    same_org: bool,
    describes: &BTreeMap<String, SObjectDescribe>,
    earlier: &HashMap<String, String>,
) -> Result<Decided, WorkerError> {
    let mut decided = Decided {
        actions: HashMap::with_capacity(records.len()),
        found_at: HashMap::new(),
    };
    let mut by_object: BTreeMap<&str, HashMap<&str, &ChainRecord>> = BTreeMap::new();
    for ((sobject, id), record) in records {
        by_object
            .entry(sobject.as_str())
            .or_default()
            .insert(id.as_str(), record);
    }
    for (sobject, wanted) in by_object {
        let restored_to: HashMap<&str, &str> = wanted
            .keys()
            .filter_map(|id| earlier.get(*id).map(|t| (t.as_str(), *id)))
            .collect();
        if !same_org && restored_to.is_empty() {
            continue; // another org, and no earlier restore there: every record is inserted
        }
        let stamped = describes
            .get(sobject)
            .is_some_and(|d| d.field("SystemModstamp").is_some());
        let in_org =
            |id: &str| (same_org && wanted.contains_key(id)) || restored_to.contains_key(id);
        for (id, state) in org_state(target, sobject, stamped, in_org).await? {
            if let Some(source) = restored_to.get(id.as_str()) {
                if matches!(state, TargetState::Live(_)) && !decided.actions.contains_key(*source) {
                    decided
                        .actions
                        .insert((*source).to_owned(), RestoreAction::Skip);
                    decided.found_at.insert((*source).to_owned(), id.clone());
                }
                continue;
            }
            let Some(record) = wanted.get(id.as_str()) else {
                continue;
            };
            let action = match state {
                TargetState::Deleted => RestoreAction::Undelete,
                TargetState::Live(stamp) if stamp.is_some() && stamp == record.system_modstamp => {
                    RestoreAction::Skip
                }
                TargetState::Live(_) => RestoreAction::Update,
            };
            decided.found_at.remove(&id);
            decided.actions.insert(id, action);
        }
    }
    Ok(decided)
}

/// A record as the target org has it.
enum TargetState {
    /// In the Recycle Bin.
    Deleted,
    /// Live, last stamped then.
    Live(Option<OffsetDateTime>),
}

/// The state in the org of the `wanted` records of `sobject` (those absent are gone). A read
/// Salesforce gives up on (`QUERY_TIMEOUT`) is replaced by reads of the halves of its id range,
/// as a backup's read is.
async fn org_state(
    target: &SalesforceClient,
    sobject: &str,
    stamped: bool,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<(String, TargetState)>, WorkerError> {
    let soql = match stamped {
        true => format!("SELECT Id, IsDeleted, SystemModstamp FROM {sobject}"),
        false => format!("SELECT Id, IsDeleted FROM {sobject}"),
    };
    let mut out = Vec::new();
    let mut pending = vec![coffer_salesforce::IdRange::default()];
    while let Some(range) = pending.pop() {
        let query = range.restrict(&soql);
        let mut results = match target
            .bulk_query_with(&query, QueryOperation::QueryAll)
            .await
        {
            Ok(results) => results,
            Err(e) if e.needs_split() => {
                let operation = QueryOperation::QueryAll;
                let (low, high) =
                    crate::backup::extract::halves(target, sobject, operation, &range, e).await?;
                tracing::info!(%sobject, "query timed out; reading its id range in halves");
                pending.extend([high, low]);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        while let Some(page) = results.next_page().await? {
            out.extend(page.records.iter().filter_map(|row| state_of(row, &wanted)));
        }
    }
    Ok(out)
}

/// The id and state of a `SELECT Id, IsDeleted[, SystemModstamp]` row, if `wanted`.
fn state_of(
    row: &csv::StringRecord,
    wanted: &impl Fn(&str) -> bool,
) -> Option<(String, TargetState)> {
    let id = row.get(0).unwrap_or_default();
    if !wanted(id) {
        return None;
    }
    let stamp = row
        .get(2)
        .and_then(coffer_salesforce::split::parse_datetime);
    let state = match row.get(1) == Some("true") {
        true => TargetState::Deleted,
        false => TargetState::Live(stamp),
    };
    Some((id.to_owned(), state))
}

/// Which of `ids` of `sobject` are live (not in the Recycle Bin) in the org now.
pub(crate) async fn live_ids(
    target: &SalesforceClient,
    sobject: &str,
    ids: &HashSet<String>,
) -> Result<HashSet<String>, WorkerError> {
    let states = org_state(target, sobject, false, |id| ids.contains(id)).await?;
    Ok(states
        .into_iter()
        .filter(|(_, state)| matches!(state, TargetState::Live(_)))
        .map(|(id, _)| id)
        .collect())
}

/// A file's document is created by inserting its version: a lookup to ContentDocument waits
/// for ContentVersion.
fn file_targets(sobject: &str, targets: &[String]) -> Vec<String> {
    let mut out = targets.to_vec();
    if sobject != "ContentVersion" && targets.iter().any(|t| t == "ContentDocument") {
        out.push("ContentVersion".to_owned());
    }
    out
}

/// The createable lookups of each object (required when not nillable).
fn lookups_of(describes: &[&SObjectDescribe]) -> Vec<ObjectLookups> {
    describes
        .iter()
        .map(|d| ObjectLookups {
            sobject: d.name.clone(),
            lookups: d
                .fields
                .iter()
                .filter(|f| f.createable && !f.reference_to.is_empty())
                .map(|f| LookupField {
                    name: f.name.clone(),
                    targets: file_targets(&d.name, &f.reference_to),
                    required: !f.nillable,
                })
                .collect(),
        })
        .collect()
}
