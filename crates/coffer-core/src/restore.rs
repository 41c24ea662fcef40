//! Restore ordering, decided before anything touches the org: in which order the objects of a
//! restore are written so that every record's parent exists (with its new id) before the record,
//! and which lookups must wait for a second pass.
//!
//! Objects are nodes; a lookup field of object `A` to object `B` (both restored) says `B` comes
//! before `A`. A self-lookup (`Account.ParentId`) never orders objects: an optional one is
//! written in the second pass, a required one by levels of the hierarchy
//! ([`WriteOrder::levelled`]). A cycle between objects is broken by moving one of its optional
//! lookups to the second pass (insert with the lookup empty, update it once every record has its
//! new id); a cycle made only of required lookups cannot be broken, and its lookups are reported
//! ([`WriteOrder::blocked`]) before the restore starts. The order is deterministic: among objects
//! ready at the same time the name decides.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A lookup field of an object and what it may point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupField {
    /// The field's API name (`AccountId`).
    pub name: String,
    /// The objects it may point at (several for a polymorphic field such as `WhatId`).
    pub targets: Vec<String>,
    /// Whether a record cannot be created without it (not nillable).
    pub required: bool,
}

/// An object of the restore and its lookup fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLookups {
    /// The object's API name.
    pub sobject: String,
    /// Its createable lookup fields.
    pub lookups: Vec<LookupField>,
}

/// One lookup: `sobject.field`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FieldRef {
    /// The object.
    pub sobject: String,
    /// The field.
    pub field: String,
}

impl FieldRef {
    /// `sobject.field`.
    pub fn new(sobject: &str, field: &str) -> Self {
        FieldRef {
            sobject: sobject.to_owned(),
            field: field.to_owned(),
        }
    }
}

impl std::fmt::Display for FieldRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.sobject, self.field)
    }
}

/// A lookup the restore cannot honour, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    /// The lookup.
    pub lookup: FieldRef,
    /// What is wrong, for the report.
    pub reason: String,
}

/// The order in which a restore writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOrder {
    /// Objects, parents first.
    pub objects: Vec<String>,
    /// Lookups inserted empty and set in the second pass, once every record has its new id.
    pub deferred: Vec<FieldRef>,
    /// Required self-lookups: the object's records are inserted by levels of the hierarchy
    /// (parents of a level in the levels before it).
    pub levelled: Vec<FieldRef>,
    /// Required lookups on a cycle of required lookups: records needing them may fail.
    pub blocked: Vec<Blocked>,
}

/// A dependency edge: `child.field` needs `parent` first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    child: String,
    field: String,
    parent: String,
    required: bool,
}

/// Orders `objects` parents first, deferring optional lookups that close a cycle.
pub fn write_order(objects: &[ObjectLookups]) -> WriteOrder {
    let names: BTreeSet<&str> = objects.iter().map(|o| o.sobject.as_str()).collect();
    let mut order = WriteOrder::default();
    let mut edges: Vec<Edge> = Vec::new();
    for object in objects {
        for lookup in &object.lookups {
            let field = FieldRef::new(&object.sobject, &lookup.name);
            if lookup.targets.contains(&object.sobject) {
                if lookup.required {
                    order.levelled.push(field.clone());
                } else {
                    order.deferred.push(field.clone());
                    continue;
                }
            }
            let parents = lookup
                .targets
                .iter()
                .filter(|t| **t != object.sobject && names.contains(t.as_str()));
            for parent in parents {
                edges.push(Edge {
                    child: object.sobject.clone(),
                    field: lookup.name.clone(),
                    parent: parent.clone(),
                    required: lookup.required,
                });
            }
        }
    }
    edges.sort();
    edges.dedup();
    order.objects = topological(&names, edges, &mut order);
    order.deferred.sort();
    order.deferred.dedup();
    order
}

/// Kahn's algorithm, smallest name first; when every remaining object waits on another, a cycle
/// is found and broken (see [`break_cycle`]).
fn topological(
    names: &BTreeSet<&str>,
    mut edges: Vec<Edge>,
    order: &mut WriteOrder,
) -> Vec<String> {
    let mut done: Vec<String> = Vec::with_capacity(names.len());
    let mut remaining: BTreeSet<String> = names.iter().map(|n| (*n).to_owned()).collect();
    while !remaining.is_empty() {
        let waiting: BTreeSet<&str> = edges
            .iter()
            .filter(|e| remaining.contains(&e.parent))
            .map(|e| e.child.as_str())
            .collect();
        let ready = remaining
            .iter()
            .find(|n| !waiting.contains(n.as_str()))
            .cloned();
        match ready {
            Some(next) => {
                remaining.remove(&next);
                done.push(next);
            }
            None => break_cycle(&remaining, &mut edges, order),
        }
    }
    done
}

/// Finds a cycle among `remaining` objects and removes one of its edges: an optional lookup
/// (deferred to the second pass) if it has one, else a required one (blocked).
fn break_cycle(remaining: &BTreeSet<String>, edges: &mut Vec<Edge>, order: &mut WriteOrder) {
    let cycle = find_cycle(remaining, edges);
    let pick = cycle
        .iter()
        .copied()
        .find(|i| !edges[*i].required)
        .or_else(|| cycle.first().copied());
    let Some(index) = pick else {
        return;
    };
    let edge = edges.remove(index);
    let lookup = FieldRef::new(&edge.child, &edge.field);
    if edge.required {
        let path: Vec<String> = cycle_names(&cycle, edges, &edge);
        order.blocked.push(Blocked {
            reason: format!(
                "{lookup} is required and on a cycle of required lookups ({}); records that need it cannot be created before their parent",
                path.join(" -> ")
            ),
            lookup,
        });
    } else {
        // Every edge of the same field goes to the second pass together.
        edges.retain(|e| !(e.child == edge.child && e.field == edge.field));
        order.deferred.push(lookup);
    }
}

/// Indices into `edges` of one cycle among `remaining` (child -> parent, each waiting on the
/// next). Every remaining object waits on a remaining one, so following waits from any of them
/// must come back to an object already seen.
fn find_cycle(remaining: &BTreeSet<String>, edges: &[Edge]) -> Vec<usize> {
    let next_of: BTreeMap<&str, usize> = edges
        .iter()
        .enumerate()
        .filter(|(_, e)| remaining.contains(&e.child) && remaining.contains(&e.parent))
        .rev()
        .map(|(i, e)| (e.child.as_str(), i))
        .collect();
    let Some(start) = remaining.iter().next() else {
        return Vec::new();
    };
    let mut path: Vec<usize> = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut at = start.as_str();
    while let Some(&edge) = next_of.get(at) {
        if let Some(&from) = seen.get(at) {
            return path[from..].to_vec();
        }
        seen.insert(at, path.len());
        path.push(edge);
        at = edges[edge].parent.as_str();
    }
    Vec::new()
}

fn cycle_names(cycle: &[usize], edges: &[Edge], removed: &Edge) -> Vec<String> {
    let mut names = vec![removed.child.clone(), removed.parent.clone()];
    names.extend(
        cycle
            .iter()
            .filter_map(|i| edges.get(*i))
            .map(|e| e.parent.clone()),
    );
    names.dedup();
    names
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lookup(name: &str, targets: &[&str], required: bool) -> LookupField {
        LookupField {
            name: name.to_owned(),
            targets: targets.iter().map(|t| (*t).to_owned()).collect(),
            required,
        }
    }

    fn object(sobject: &str, lookups: Vec<LookupField>) -> ObjectLookups {
        ObjectLookups {
            sobject: sobject.to_owned(),
            lookups,
        }
    }

    fn position(order: &WriteOrder, name: &str) -> usize {
        order.objects.iter().position(|o| o == name).unwrap()
    }

    #[test]
    fn parents_come_first_and_self_lookups_wait_for_the_second_pass() {
        let order = write_order(&[
            object(
                "Task",
                vec![lookup("WhatId", &["Account", "Opportunity", "Case"], false)],
            ),
            object("Contact", vec![lookup("AccountId", &["Account"], false)]),
            object(
                "Account",
                vec![
                    lookup("ParentId", &["Account"], false),
                    lookup("OwnerId", &["User"], true),
                ],
            ),
            object(
                "Opportunity",
                vec![lookup("AccountId", &["Account"], false)],
            ),
            object(
                "Case",
                vec![
                    lookup("AccountId", &["Account"], false),
                    lookup("ContactId", &["Contact"], false),
                ],
            ),
        ]);
        assert_eq!(order.objects.len(), 5);
        assert_eq!(order.objects[0], "Account");
        assert!(position(&order, "Contact") < position(&order, "Case"));
        for parent in ["Account", "Opportunity", "Case"] {
            assert!(position(&order, parent) < position(&order, "Task"));
        }
        assert_eq!(order.deferred, vec![FieldRef::new("Account", "ParentId")]);
        assert!(order.blocked.is_empty() && order.levelled.is_empty());
    }

    #[test]
    fn a_cycle_is_broken_at_an_optional_lookup() {
        // Master-detail child (required) and a lookup back from the parent (optional).
        let order = write_order(&[
            object(
                "Invoice__c",
                vec![lookup("Primary_Line__c", &["Line__c"], false)],
            ),
            object("Line__c", vec![lookup("Invoice__c", &["Invoice__c"], true)]),
        ]);
        assert_eq!(order.objects, vec!["Invoice__c", "Line__c"]);
        assert_eq!(
            order.deferred,
            vec![FieldRef::new("Invoice__c", "Primary_Line__c")]
        );
        assert!(order.blocked.is_empty());
    }

    #[test]
    fn a_cycle_of_required_lookups_is_reported_not_hidden() {
        let order = write_order(&[
            object("A__c", vec![lookup("B__c", &["B__c"], true)]),
            object("B__c", vec![lookup("A__c", &["A__c"], true)]),
            object("C__c", vec![lookup("A__c", &["A__c"], false)]),
        ]);
        assert_eq!(order.objects.len(), 3);
        assert_eq!(order.objects[2], "C__c");
        assert_eq!(order.blocked.len(), 1);
        assert!(
            order.blocked[0].reason.contains("required"),
            "{:?}",
            order.blocked
        );
        assert!(order.deferred.is_empty());
    }

    #[test]
    fn a_required_self_lookup_is_written_by_levels() {
        let order = write_order(&[object(
            "Node__c",
            vec![lookup("Parent__c", &["Node__c"], true)],
        )]);
        assert_eq!(order.objects, vec!["Node__c"]);
        assert_eq!(order.levelled, vec![FieldRef::new("Node__c", "Parent__c")]);
        assert!(order.deferred.is_empty());
    }

    #[test]
    fn lookups_outside_the_restore_do_not_order_it() {
        let order = write_order(&[
            object("Contact", vec![lookup("AccountId", &["Account"], false)]),
            object("Case", vec![lookup("ContactId", &["Contact"], false)]),
        ]);
        assert_eq!(order.objects, vec!["Contact", "Case"]);
    }
}
