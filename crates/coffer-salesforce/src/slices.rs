//! Slicing a very large object into ranges of record ids, so that several workers read it side
//! by side, as Bulk API 1.0's PK chunking does (`Id >= 'a' AND Id < 'b'`).
//!
//! A record's id never changes, so each record falls in exactly one slice however it is edited
//! during the backup, and records created meanwhile (higher ids) fall in the last slice, whose
//! upper end is open (as is the first slice's lower end). Slice boundaries interpolate between
//! the object's lowest and highest id read as 15-character base-62 numbers (Salesforce ids are
//! a key prefix, a pod, a reserved character and a counter, so ids of one object on one pod
//! are dense); gaps from deleted records only make slices uneven, never wrong.
//!
//! [`SalesforceClient::record_counts`] (`/limits/recordCount`) says which objects are large and
//! [`SalesforceClient::id_bounds`] (`ORDER BY Id ... LIMIT 1`) where their ids lie.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::bulk::QueryOperation;
use crate::rest::RestQuery;
use crate::{SalesforceClient, SalesforceError};

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A half-open range of record ids `[from, to)`; an end that is `None` is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IdRange {
    /// First id in the range (15 characters), or none: from the lowest.
    pub from: Option<String>,
    /// First id after the range (15 characters), or none: to the highest, including records
    /// created during the read.
    pub to: Option<String>,
}

impl IdRange {
    /// The SOQL condition selecting the range (`Id >= 'a' AND Id < 'b'`); `None` for the whole
    /// object.
    pub fn soql_filter(&self) -> Option<String> {
        let conditions: Vec<String> = [
            self.from.as_ref().map(|from| format!("Id >= '{from}'")),
            self.to.as_ref().map(|to| format!("Id < '{to}'")),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!conditions.is_empty()).then(|| conditions.join(" AND "))
    }

    /// `query` with the range's condition added (`WHERE` or `AND`).
    pub fn restrict(&self, query: &str) -> String {
        match self.soql_filter() {
            None => query.to_owned(),
            Some(filter) if has_where(query) => format!("{query} AND {filter}"),
            Some(filter) => format!("{query} WHERE {filter}"),
        }
    }
}

fn has_where(query: &str) -> bool {
    query
        .split_whitespace()
        .any(|word| word.eq_ignore_ascii_case("WHERE"))
}

/// The value of a 15-character id (or the first 15 characters of an 18-character one) as a
/// base-62 number; `None` if it holds other characters.
fn id_value(id: &str) -> Option<u128> {
    let id15 = id.get(..15)?;
    id15.bytes().try_fold(0u128, |acc, b| {
        let digit = BASE62.iter().position(|c| *c == b)?;
        Some(acc * 62 + digit as u128)
    })
}

fn id_of_value(mut value: u128) -> String {
    let mut id = [b'0'; 15];
    for slot in id.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8_lossy(&id).into_owned()
}

/// Cuts `[lowest, highest]` into at most `slices` id ranges, the first open below and the last
/// open above, covering every id. One range (the whole object) when `slices` is below 2, when
/// the ids are not base-62, or when there are too few ids between them to cut.
pub fn id_slices(lowest: &str, highest: &str, slices: u32) -> Vec<IdRange> {
    let (Some(low), Some(high)) = (id_value(lowest), id_value(highest)) else {
        return vec![IdRange::default()];
    };
    if slices < 2 || high <= low {
        return vec![IdRange::default()];
    }
    let width = high - low + 1;
    let slices = u128::from(slices).min(width);
    let mut bounds: Vec<String> = (1..slices)
        .map(|k| id_of_value(low + width * k / slices))
        .collect();
    bounds.dedup();
    let mut ranges = Vec::with_capacity(bounds.len() + 1);
    let mut from = None;
    for bound in bounds {
        ranges.push(IdRange {
            from: from.clone(),
            to: Some(bound.clone()),
        });
        from = Some(bound);
    }
    ranges.push(IdRange { from, to: None });
    ranges
}

impl IdRange {
    /// The two halves of the range at the id midway between `lowest` and `highest` (ids of
    /// records in it), keeping the range's own ends; `None` when there is no id to cut at.
    pub fn halves(&self, lowest: &str, highest: &str) -> Option<(IdRange, IdRange)> {
        let mid = id_slices(lowest, highest, 2).first()?.to.clone()?;
        Some((
            IdRange {
                from: self.from.clone(),
                to: Some(mid.clone()),
            },
            IdRange {
                from: Some(mid),
                to: self.to.clone(),
            },
        ))
    }
}

/// How many slices of about `rows_per_slice` records an object of `count` records needs, at
/// most `max_slices`.
pub fn slice_count(count: u64, rows_per_slice: u64, max_slices: u32) -> u32 {
    if rows_per_slice == 0 || count <= rows_per_slice {
        return 1;
    }
    let wanted = count.div_ceil(rows_per_slice);
    u32::try_from(wanted)
        .unwrap_or(u32::MAX)
        .clamp(1, max_slices.max(1))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordCounts {
    #[serde(default)]
    s_objects: Vec<RecordCount>,
}

#[derive(Deserialize)]
struct RecordCount {
    count: u64,
    name: String,
}

/// Objects per `/limits/recordCount` request (the list goes in the URL).
const COUNT_BATCH: usize = 100;

impl SalesforceClient {
    /// Approximate record counts of `objects` (`GET /limits/recordCount?sObjects=...`, one API
    /// call per 100 objects); an object Salesforce does not count is absent.
    pub async fn record_counts(
        &self,
        objects: &[&str],
    ) -> Result<HashMap<String, u64>, SalesforceError> {
        let mut counts = HashMap::new();
        for batch in objects.chunks(COUNT_BATCH) {
            let url = format!(
                "{}?sObjects={}",
                self.data_url(self.api_version(), "limits/recordCount"),
                batch.join(",")
            );
            let answer: RecordCounts = self.get_json("read record counts", &url).await?;
            counts.extend(answer.s_objects.into_iter().map(|c| (c.name, c.count)));
        }
        Ok(counts)
    }

    /// The lowest and highest id of `object` within `range` (two REST queries ordered by
    /// `Id`), or `None` when it has no record there.
    pub async fn id_bounds(
        &self,
        object: &str,
        operation: QueryOperation,
        range: &IdRange,
    ) -> Result<Option<(String, String)>, SalesforceError> {
        let first = |order: &str| {
            let select = range.restrict(&format!("SELECT Id FROM {object}"));
            RestQuery::new(&format!("{select} ORDER BY Id {order} LIMIT 1"), operation)
        };
        let lowest = first("ASC").page(self, None).await?;
        let highest = first("DESC").page(self, None).await?;
        let id = |page: crate::CsvPage| {
            page.records
                .first()
                .and_then(|r| r.get(0).map(str::to_owned))
        };
        Ok(id(lowest).zip(id(highest)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_every_id_once_with_open_ends() {
        let ranges = id_slices("001000000000000", "00100000000zzzz", 4);
        assert_eq!(ranges.len(), 4);
        assert_eq!(ranges[0].from, None);
        assert_eq!(ranges[3].to, None);
        for pair in ranges.windows(2) {
            assert_eq!(
                pair[0].to, pair[1].from,
                "adjacent slices share their boundary"
            );
            assert!(pair[0].to.as_deref().unwrap() > pair[0].from.as_deref().unwrap_or(""));
        }
        // Boundaries are increasing 15-character ids of the same key prefix.
        let bounds: Vec<&str> = ranges.iter().filter_map(|r| r.to.as_deref()).collect();
        assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        assert!(
            bounds
                .iter()
                .all(|b| b.len() == 15 && b.starts_with("00100"))
        );
    }

    #[test]
    fn an_id_lies_in_exactly_one_slice() {
        let ranges = id_slices("0015g0000000001AAA", "0015g000000ZZZZAAA", 7);
        for probe in [
            "0015g0000000001",
            "0015g00000001aB",
            "0015g000000ZZZZ",
            "0015g00001",
        ] {
            let holding = ranges
                .iter()
                .filter(|r| {
                    r.from.as_deref().is_none_or(|f| probe >= f)
                        && r.to.as_deref().is_none_or(|t| probe < t)
                })
                .count();
            assert_eq!(holding, 1, "{probe}");
        }
    }

    #[test]
    fn degenerate_bounds_give_the_whole_object() {
        assert_eq!(id_slices("001", "002", 4), vec![IdRange::default()]);
        assert_eq!(
            id_slices("001000000000001", "001000000000001", 4),
            vec![IdRange::default()]
        );
        assert_eq!(id_slices("001000000000001", "001000000000009", 1).len(), 1);
        assert_eq!(id_slices("001000000000001", "001000000000003", 10).len(), 3);
    }

    #[test]
    fn halves_keep_the_outer_ends() {
        let range = IdRange {
            from: Some("001000000000000".into()),
            to: None,
        };
        let (low, high) = range.halves("001000000000001", "00100000000000z").unwrap();
        assert_eq!(low.from, range.from);
        assert_eq!(high.to, None);
        assert_eq!(low.to, high.from);
        assert!(range.halves("001000000000001", "001000000000001").is_none());
    }

    #[test]
    fn filters_and_counts() {
        let range = IdRange {
            from: Some("001A".into()),
            to: Some("001B".into()),
        };
        assert_eq!(
            range.restrict("SELECT Id FROM Account"),
            "SELECT Id FROM Account WHERE Id >= '001A' AND Id < '001B'"
        );
        assert_eq!(
            IdRange {
                from: None,
                to: Some("x".into())
            }
            .restrict("SELECT Id FROM A WHERE X = 1"),
            "SELECT Id FROM A WHERE X = 1 AND Id < 'x'"
        );
        assert_eq!(
            IdRange::default().restrict("SELECT Id FROM A"),
            "SELECT Id FROM A"
        );
        assert_eq!(slice_count(10, 100, 8), 1);
        assert_eq!(slice_count(1_000, 100, 8), 8);
        assert_eq!(slice_count(250, 100, 8), 3);
    }
}
