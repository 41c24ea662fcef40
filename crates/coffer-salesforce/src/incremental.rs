//! Incremental reads: an object's changes since a [`Cursor`], the `(SystemModstamp, Id)`
//! high-water mark of the rows read last time.
//!
//! The read covers `[cursor.system_modstamp - overlap, until)` with `queryAll`, so deleted rows
//! come back with `IsDeleted = true`. `until` is the server's clock
//! ([`SalesforceClient::server_time`], from the `Date` header), not the worker's, less an
//! optional safety margin. The overlap re-reads the last minutes before the cursor to catch
//! *late commits*: a long transaction can commit rows stamped earlier than the high-water mark
//! the previous read saw. Every row is classified ([`RowMeta`]): deleted or not, and
//! `seen_before` when `(SystemModstamp, Id) <= cursor`, compared at full precision with ties
//! broken by Id, so rows sharing the cursor's instant are never missed. Rows re-read in the
//! overlap may be new (a late commit) or already stored: the caller dedupes them by
//! `(Id, SystemModstamp)` against its catalog. The next cursor is the maximum
//! `(SystemModstamp, Id)` over the rows read, or the previous cursor when nothing changed.
//!
//! Reads go through [`RangeReader`], so a large window survives `QUERY_TIMEOUT` by splitting.
//! Objects without `SystemModstamp` cannot be read incrementally
//! ([`supports_incremental`], [`SalesforceError::NoSystemModstamp`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::describe::SObjectDescribe;
use crate::split::{
    DEFAULT_FLOOR, DEFAULT_MIN_WIDTH, ModstampRange, RangePage, RangeQuery, RangeReader,
    SYSTEM_MODSTAMP, parse_datetime,
};
use crate::{CsvPage, QueryOperation, SalesforceClient, SalesforceError};

/// The deleted flag `queryAll` returns.
const IS_DELETED: &str = "IsDeleted";

/// The high-water mark of an incremental read: the greatest `(SystemModstamp, Id)` read.
/// Ordered by `system_modstamp` (full precision), then by `id`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cursor {
    /// The row's `SystemModstamp`.
    #[serde(with = "time::serde::rfc3339")]
    pub system_modstamp: OffsetDateTime,
    /// The row's `Id`.
    pub id: String,
}

/// How far back and up to when an incremental read goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncrementalOptions {
    /// How far before the cursor to re-read, for late commits.
    pub overlap: Duration,
    /// Subtracted from the server's clock to get the end of the window.
    pub safety_margin: Duration,
    /// The narrowest range a `QUERY_TIMEOUT` split goes down to.
    pub min_split_width: Duration,
}

impl Default for IncrementalOptions {
    /// Five minutes of overlap, no safety margin, splits down to one second.
    fn default() -> Self {
        IncrementalOptions {
            overlap: Duration::from_secs(300),
            safety_margin: Duration::ZERO,
            min_split_width: DEFAULT_MIN_WIDTH,
        }
    }
}

/// What an incremental read knows about one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMeta {
    /// The row's `(SystemModstamp, Id)`.
    pub key: Cursor,
    /// `IsDeleted = true` (the row is in the Recycle Bin).
    pub deleted: bool,
    /// `(SystemModstamp, Id) <= cursor`: re-read in the overlap window; dedupe it against the
    /// catalog (it may still be a late commit the previous read missed).
    pub seen_before: bool,
}

/// One results page of an incremental read, with a [`RowMeta`] per record (same order).
#[derive(Debug, Clone)]
pub struct ChangePage {
    /// The `SystemModstamp` range whose job produced the page.
    pub range: ModstampRange,
    /// The page.
    pub page: CsvPage,
    /// One entry per `page.records` row.
    pub rows: Vec<RowMeta>,
    /// Whether this is the range's last page.
    pub last_in_range: bool,
}

/// Whether the described object can be read incrementally (it has `SystemModstamp`); if not,
/// back it up with a full read.
pub fn supports_incremental(describe: &SObjectDescribe) -> bool {
    describe.field(SYSTEM_MODSTAMP).is_some()
}

/// The query of an incremental read: every Bulk-queryable field (which include `Id`,
/// `SystemModstamp` and, when the object has it, `IsDeleted`), with `queryAll` when the object
/// has `IsDeleted`.
pub fn incremental_query(describe: &SObjectDescribe) -> Result<RangeQuery, SalesforceError> {
    let operation = if describe.field(IS_DELETED).is_some() {
        QueryOperation::QueryAll
    } else {
        QueryOperation::Query
    };
    let mut query = RangeQuery::all_fields(describe, operation)?;
    for required in ["Id", SYSTEM_MODSTAMP, IS_DELETED] {
        let selected = query
            .fields
            .iter()
            .any(|f| f.eq_ignore_ascii_case(required));
        if !selected && describe.field(required).is_some() {
            query.fields.push(required.to_owned());
        }
    }
    Ok(query)
}

/// The window to read after `since`: from `since - overlap` (or [`DEFAULT_FLOOR`] without a
/// cursor) to `until`, both truncated to whole seconds (the start thus only moves earlier).
pub fn change_window(
    since: Option<&Cursor>,
    overlap: Duration,
    until: OffsetDateTime,
) -> ModstampRange {
    let from = since.map_or(DEFAULT_FLOOR, |c| c.system_modstamp - overlap);
    ModstampRange::new(from, until)
}

/// Whether a row keyed `key` was at or below the previous high-water mark.
pub fn seen_before(key: &Cursor, since: Option<&Cursor>) -> bool {
    since.is_some_and(|since| key <= since)
}

/// The greater of the cursor so far and the keys of `rows`.
pub fn advance<'a>(
    cursor: Option<Cursor>,
    rows: impl IntoIterator<Item = &'a RowMeta>,
) -> Option<Cursor> {
    rows.into_iter()
        .map(|r| &r.key)
        .fold(cursor, |best, key| match best {
            Some(b) if b >= *key => Some(b),
            _ => Some(key.clone()),
        })
}

/// Positions of the columns an incremental read classifies rows by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    id: usize,
    system_modstamp: usize,
    is_deleted: Option<usize>,
}

impl Columns {
    /// Finds `Id`, `SystemModstamp` and (optionally) `IsDeleted` in a page's header row.
    pub fn locate(headers: &csv::StringRecord) -> Result<Self, String> {
        let find = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        let missing = |name: &str| format!("the results have no {name} column");
        Ok(Columns {
            id: find("Id").ok_or_else(|| missing("Id"))?,
            system_modstamp: find(SYSTEM_MODSTAMP).ok_or_else(|| missing(SYSTEM_MODSTAMP))?,
            is_deleted: find(IS_DELETED),
        })
    }

    /// Classifies one record against the previous cursor.
    pub fn row_meta(
        &self,
        record: &csv::StringRecord,
        since: Option<&Cursor>,
    ) -> Result<RowMeta, String> {
        let cell = |i: usize| record.get(i).unwrap_or_default();
        let id = cell(self.id);
        if id.is_empty() {
            return Err("a row has an empty Id".to_owned());
        }
        let stamp = cell(self.system_modstamp);
        let system_modstamp = parse_datetime(stamp)
            .ok_or_else(|| format!("row {id}: SystemModstamp {stamp:?} is not a datetime"))?;
        let key = Cursor {
            system_modstamp,
            id: id.to_owned(),
        };
        Ok(RowMeta {
            seen_before: seen_before(&key, since),
            deleted: self
                .is_deleted
                .is_some_and(|i| cell(i).eq_ignore_ascii_case("true")),
            key,
        })
    }
}

/// An object's changes since a cursor, one classified page at a time. See the module docs.
#[derive(Debug)]
pub struct ChangeReader {
    ranges: RangeReader,
    since: Option<Cursor>,
    next_cursor: Option<Cursor>,
    window: ModstampRange,
}

impl ChangeReader {
    /// Reads `query` over `window`, classifying rows against `since`.
    pub fn new(
        client: SalesforceClient,
        query: RangeQuery,
        since: Option<Cursor>,
        window: ModstampRange,
        min_split_width: Duration,
    ) -> Self {
        ChangeReader {
            ranges: RangeReader::new(client, query, window, min_split_width),
            next_cursor: since.clone(),
            since,
            window,
        }
    }

    /// The next page with its rows classified, or `None` when the window has been read.
    pub async fn next_page(&mut self) -> Result<Option<ChangePage>, SalesforceError> {
        let Some(RangePage {
            range,
            page,
            last_in_range,
        }) = self.ranges.next_page().await?
        else {
            return Ok(None);
        };
        let rows = self.classify(&page)?;
        self.next_cursor = advance(self.next_cursor.take(), &rows);
        Ok(Some(ChangePage {
            range,
            page,
            rows,
            last_in_range,
        }))
    }

    /// A [`RowMeta`] for every record of `page`.
    fn classify(&self, page: &CsvPage) -> Result<Vec<RowMeta>, SalesforceError> {
        let invalid = |detail: String| SalesforceError::UnexpectedResponse {
            operation: format!("read changes of {}", self.ranges.object()),
            detail,
        };
        let columns = Columns::locate(&page.headers).map_err(invalid)?;
        page.records
            .iter()
            .map(|r| columns.row_meta(r, self.since.as_ref()).map_err(invalid))
            .collect()
    }

    /// The cursor to store once every page has been read: the greatest `(SystemModstamp, Id)`
    /// read so far, or the previous cursor when nothing changed.
    pub fn next_cursor(&self) -> Option<&Cursor> {
        self.next_cursor.as_ref()
    }

    /// The cursor the read started from.
    pub fn since(&self) -> Option<&Cursor> {
        self.since.as_ref()
    }

    /// The whole window being read.
    pub fn window(&self) -> ModstampRange {
        self.window
    }

    /// The underlying range reader: ranges read so far, splits, resume point.
    pub fn ranges(&self) -> &RangeReader {
        &self.ranges
    }
}

/// The HTTP `Date` format (`Wed, 25 Nov 2026 05:52:13 GMT`).
const HTTP_DATE: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// Parses an HTTP `Date` header value.
pub fn parse_http_date(value: &str) -> Option<OffsetDateTime> {
    time::PrimitiveDateTime::parse(value.trim(), HTTP_DATE)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

impl SalesforceClient {
    /// Salesforce's clock, from the `Date` header of the API version list (a call that does not
    /// count against the org's API allocation). Second precision.
    pub async fn server_time(&self) -> Result<OffsetDateTime, SalesforceError> {
        let operation = "read the salesforce server time";
        let url = format!("{}/services/data/", self.instance_url());
        self.with_retries(operation, || async {
            let resp = self.send(operation, |http| http.get(&url)).await?;
            let date = resp
                .headers()
                .get(reqwest::header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_http_date);
            date.ok_or_else(|| SalesforceError::UnexpectedResponse {
                operation: operation.to_owned(),
                detail: "no parseable Date header".into(),
            })
        })
        .await
    }

    /// A reader of the described object's changes since `since` (`None`: everything), up to the
    /// server's clock less the safety margin. Fails with [`SalesforceError::NoSystemModstamp`]
    /// for an object that needs a full read instead.
    pub async fn read_changes(
        &self,
        describe: &SObjectDescribe,
        since: Option<Cursor>,
        options: &IncrementalOptions,
    ) -> Result<ChangeReader, SalesforceError> {
        let query = incremental_query(describe)?;
        let until = self.server_time().await? - options.safety_margin;
        let window = change_window(since.as_ref(), options.overlap, until);
        tracing::info!(
            object = %describe.name,
            window = %window,
            cursor = ?since.as_ref().map(|c| (c.system_modstamp, &c.id)),
            "reading changes by systemmodstamp"
        );
        Ok(ChangeReader::new(
            self.clone(),
            query,
            since,
            window,
            options.min_split_width,
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn key(t: OffsetDateTime, id: &str) -> Cursor {
        Cursor {
            system_modstamp: t,
            id: id.to_owned(),
        }
    }

    fn record(cells: &[&str]) -> csv::StringRecord {
        csv::StringRecord::from(cells.to_vec())
    }

    #[test]
    fn cursors_order_by_full_precision_time_then_id() {
        let t = datetime!(2024-01-02 17:38:59 UTC);
        assert!(key(t, "b") < key(t + time::Duration::MILLISECOND, "a"));
        assert!(key(t, "a") < key(t, "b"));
        let since = key(t, "b");
        assert!(seen_before(&key(t, "a"), Some(&since)));
        assert!(seen_before(&key(t, "b"), Some(&since)), "equal is seen");
        assert!(
            !seen_before(&key(t, "c"), Some(&since)),
            "a tie with a larger id is new"
        );
        assert!(!seen_before(&key(t, "a"), None));
    }

    #[test]
    fn the_window_reaches_back_by_the_overlap_on_whole_seconds() {
        let since = key(datetime!(2024-01-02 17:38:59.500 UTC), "x");
        let until = datetime!(2024-01-03 0:00 UTC);
        let w = change_window(Some(&since), Duration::from_secs(120), until);
        assert_eq!(w.from(), datetime!(2024-01-02 17:36:59 UTC));
        assert_eq!(w.to(), until);
        assert_eq!(
            change_window(None, Duration::ZERO, until).from(),
            DEFAULT_FLOOR
        );
    }

    #[test]
    fn rows_are_classified_from_their_cells() {
        let headers = record(&["Name", "isdeleted", "Id", "SystemModstamp"]);
        let columns = Columns::locate(&headers).unwrap();
        let since = key(datetime!(2024-01-02 17:38:59 UTC), "001B");
        let row = |deleted, id| record(&["n", deleted, id, "2024-01-02T17:38:59.000+0000"]);
        let a = columns
            .row_meta(&row("false", "001A"), Some(&since))
            .unwrap();
        assert!(a.seen_before && !a.deleted);
        let c = columns
            .row_meta(&row("true", "001C"), Some(&since))
            .unwrap();
        assert!(!c.seen_before && c.deleted);
        assert!(
            columns
                .row_meta(&record(&["n", "false", "001D", "soon"]), None)
                .is_err()
        );
        assert!(Columns::locate(&record(&["Id"])).is_err());
    }

    #[test]
    fn the_next_cursor_is_the_maximum_or_the_previous_one() {
        let t = datetime!(2024-01-02 17:38:59 UTC);
        let meta = |k: Cursor| RowMeta {
            key: k,
            deleted: false,
            seen_before: false,
        };
        let rows = [meta(key(t, "b")), meta(key(t, "c")), meta(key(t, "a"))];
        assert_eq!(advance(None, &rows), Some(key(t, "c")));
        let later = key(t + time::Duration::SECOND, "0");
        assert_eq!(advance(Some(later.clone()), &rows), Some(later.clone()));
        assert_eq!(advance(Some(later.clone()), &[]), Some(later));
        assert_eq!(advance(None, &[]), None);
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Wed, 25 Nov 2026 05:52:13 GMT"),
            Some(datetime!(2026-11-25 05:52:13 UTC))
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn cursors_round_trip_through_json() {
        let c = key(datetime!(2024-01-02 17:38:59.123 UTC), "001A");
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Cursor>(&json).unwrap(), c);
    }
}
