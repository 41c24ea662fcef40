//! Reading a simulated org the way a restore test checks it: every live record with its
//! fields, the fields a restore can set (from a backup's schema snapshot), and the org as a
//! multiset of records compared up to their ids.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use coffer_catalog::Catalog;
use coffer_core::BackupId;
use coffer_sfsim::SimHandle;

/// Fields Salesforce sets itself: never compared.
pub const SYSTEM: &[&str] = &[
    "Id",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
    "IsDeleted",
    "CaseNumber",
    "IsClosed",
    "IsWon",
];

/// Every live record of an org by id: its object and its fields (null as empty).
pub type Snapshot = HashMap<String, (String, BTreeMap<String, String>)>;

/// Every live record of the simulated org.
pub fn snapshot(sim: &SimHandle) -> Snapshot {
    let mut out = HashMap::new();
    for sobject in sim.sobjects() {
        let Some((header, rows)) = sim.table(&sobject) else {
            continue;
        };
        for row in rows {
            let fields: BTreeMap<String, String> =
                header.iter().cloned().zip(row.iter().cloned()).collect();
            out.insert(fields["Id"].clone(), (sobject.clone(), fields));
        }
    }
    out
}

/// The fields a client can set on create, per object, from the backup's schema snapshot.
pub async fn createable_fields(
    catalog: &Catalog,
    backup: BackupId,
) -> anyhow::Result<HashMap<String, BTreeSet<String>>> {
    let mut out = HashMap::new();
    for task in catalog.tasks(backup).await? {
        let describe: serde_json::Value = serde_json::from_str(&task.describe_json)?;
        let fields = describe["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["createable"].as_bool() == Some(true))
            .filter_map(|f| f["name"].as_str().map(str::to_owned))
            .collect();
        out.insert(task.sobject, fields);
    }
    Ok(out)
}

/// Equal cells; numbers compare by value (Salesforce keeps `12490.10` and `12490.1` alike).
pub fn same_value(got: &str, want: &str) -> bool {
    got == want || matches!((got.parse::<f64>(), want.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
}

/// The org as a sorted list of records without their ids: each record's object and the values
/// of the fields in `compared` (per object; `skip` left out), with every id that `rename` knows
/// replaced (a restored record's new id by the id it had), and numbers in one form. Two orgs
/// with equal lists hold the same records, linked the same way, whatever ids they got.
pub fn records_up_to_ids(
    org: &Snapshot,
    compared: &HashMap<String, BTreeSet<String>>,
    skip: &[&str],
    rename: &HashMap<String, String>,
) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = org
        .values()
        .map(|(sobject, fields)| {
            let values = fields
                .iter()
                .filter(|(name, _)| compared.get(sobject).is_some_and(|c| c.contains(*name)))
                .filter(|(name, _)| {
                    !SYSTEM.contains(&name.as_str()) && !skip.contains(&name.as_str())
                })
                .map(|(name, value)| {
                    let value = rename
                        .get(value)
                        .cloned()
                        .unwrap_or_else(|| canonical(value));
                    (name.clone(), value)
                })
                .collect();
            (sobject.clone(), values)
        })
        .collect();
    out.sort();
    out
}

/// A number in one form (`12490.10` and `12490.1` alike); anything else as it is.
fn canonical(value: &str) -> String {
    let numeric = value.contains('.') && value.parse::<f64>().is_ok();
    match numeric {
        true => value
            .parse::<f64>()
            .map(|n| n.to_string())
            .unwrap_or_default(),
        false => value.to_owned(),
    }
}
