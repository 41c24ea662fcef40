//! Reading an object over a half-open `SystemModstamp` range, bisecting the range whenever
//! Salesforce gives up on the Bulk query with `QUERY_TIMEOUT`.
//!
//! A [`ModstampRange`] `[from, to)` holds whole seconds (SOQL dateTime literals have second
//! precision) and becomes `SystemModstamp >= from AND SystemModstamp < to`. Half-open ranges
//! partition time exactly, so the two halves of a split together select the same rows as the
//! whole, none twice. [`RangeReader`] keeps a stack of ranges still to read, earliest on top:
//! it runs one Bulk job per range and hands back its pages one at a time ([`RangePage`]); a job
//! that fails with [`SalesforceError::needs_split`] is replaced by its two halves, down to a
//! minimum width, below which the read fails with [`SalesforceError::SplitExhausted`].
//!
//! Ranges are read in time order and a timeout can only happen before a range's first page, so
//! [`RangeReader::completed_through`] is a safe resume point: every row stamped before it has
//! been delivered. A caller that persists it can resume with a reader over `[it, to)`.
//!
//! The range and datetime helpers here are pure functions, unit-tested below.

use std::time::Duration;

use time::macros::{datetime, format_description};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::describe::SObjectDescribe;
use crate::{BulkQueryResults, CsvPage, QueryOperation, SalesforceClient, SalesforceError};

/// The field ranges are cut on.
pub const SYSTEM_MODSTAMP: &str = "SystemModstamp";

/// Start of a full read's range: earlier than any Salesforce record.
pub const DEFAULT_FLOOR: OffsetDateTime = datetime!(2000-01-01 0:00 UTC);

/// The narrowest range [`RangeReader`] splits down to by default.
pub const DEFAULT_MIN_WIDTH: Duration = Duration::from_secs(1);

/// A half-open range `[from, to)` of `SystemModstamp` values, in whole seconds (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModstampRange {
    from: OffsetDateTime,
    to: OffsetDateTime,
}

impl ModstampRange {
    /// `[from, to)` with both ends truncated to whole seconds; empty when `to <= from`.
    pub fn new(from: OffsetDateTime, to: OffsetDateTime) -> Self {
        ModstampRange {
            from: whole_second(from),
            to: whole_second(to),
        }
    }

    /// The first instant in the range.
    pub fn from(&self) -> OffsetDateTime {
        self.from
    }

    /// The first instant after the range.
    pub fn to(&self) -> OffsetDateTime {
        self.to
    }

    /// Whether no instant lies in the range.
    pub fn is_empty(&self) -> bool {
        self.to <= self.from
    }

    /// `to - from` (zero when empty).
    pub fn width(&self) -> Duration {
        (self.to - self.from).try_into().unwrap_or(Duration::ZERO)
    }

    /// Whether `t` lies in `[from, to)`.
    pub fn contains(&self, t: OffsetDateTime) -> bool {
        self.from <= t && t < self.to
    }

    /// The two halves `[from, mid)` and `[mid, to)` (mid on a whole second), or `None` when the
    /// range is not wider than `min_width` or cannot be cut on a whole second.
    pub fn bisect(&self, min_width: Duration) -> Option<(Self, Self)> {
        let width = self.width();
        if width <= min_width.max(Duration::from_secs(1)) {
            return None;
        }
        let mid = whole_second(self.from + width / 2);
        let halves = (
            ModstampRange::new(self.from, mid),
            ModstampRange::new(mid, self.to),
        );
        (!halves.0.is_empty() && !halves.1.is_empty()).then_some(halves)
    }

    /// `SystemModstamp >= {from} AND SystemModstamp < {to}`.
    pub fn soql_filter(&self) -> String {
        format!(
            "{SYSTEM_MODSTAMP} >= {} AND {SYSTEM_MODSTAMP} < {}",
            soql_datetime(self.from),
            soql_datetime(self.to)
        )
    }
}

impl std::fmt::Display for ModstampRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}, {})",
            soql_datetime(self.from),
            soql_datetime(self.to)
        )
    }
}

/// `t` without its sub-second part.
fn whole_second(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// `t` as a SOQL dateTime literal in UTC, second precision, unquoted: `2024-01-02T17:38:59Z`.
pub fn soql_datetime(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses a dateTime as Bulk and REST results render it: `2024-01-02T17:38:59.000+0000`, with
/// or without fractional seconds, and an offset of `Z`, `+HHMM` or `+HH:MM`. Full precision is
/// kept.
pub fn parse_datetime(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    let base = PrimitiveDateTime::parse(
        s.get(..19)?,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    )
    .ok()?;
    let (nanos, rest) = fraction(s.get(19..)?)?;
    let offset = offset(rest)?;
    Some(base.replace_nanosecond(nanos).ok()?.assume_offset(offset))
}

/// Splits an optional `.digits` fraction off `s`: (nanoseconds, the rest).
fn fraction(s: &str) -> Option<(u32, &str)> {
    let Some(frac) = s.strip_prefix('.') else {
        return Some((0, s));
    };
    let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 9 {
        return None;
    }
    let nanos = frac[..digits].parse::<u32>().ok()? * 10u32.pow(9 - digits as u32);
    Some((nanos, &frac[digits..]))
}

/// Parses `Z`, `+HHMM` or `+HH:MM` (also `-`).
fn offset(s: &str) -> Option<UtcOffset> {
    if s == "Z" {
        return Some(UtcOffset::UTC);
    }
    let sign: i8 = match s.get(..1)? {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    let digits = s[1..].replace(':', "");
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i8 = digits[..2].parse().ok()?;
    let minutes: i8 = digits[2..].parse().ok()?;
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
}

/// What to select from which object; the range filter is added per range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeQuery {
    /// Object API name.
    pub object: String,
    /// Fields to select, in order.
    pub fields: Vec<String>,
    /// `query` or `queryAll`.
    pub operation: QueryOperation,
}

impl RangeQuery {
    /// Every Bulk-queryable field of the described object (with `SystemModstamp`, which it must
    /// have: else [`SalesforceError::NoSystemModstamp`]).
    pub fn all_fields(
        describe: &SObjectDescribe,
        operation: QueryOperation,
    ) -> Result<Self, SalesforceError> {
        if describe.field(SYSTEM_MODSTAMP).is_none() {
            return Err(SalesforceError::NoSystemModstamp {
                object: describe.name.clone(),
            });
        }
        let fields = describe
            .bulk_queryable_fields()
            .iter()
            .map(|f| f.name.clone())
            .collect();
        Ok(RangeQuery {
            object: describe.name.clone(),
            fields,
            operation,
        })
    }

    /// `SELECT {fields} FROM {object} WHERE {range filter}`.
    pub fn soql(&self, range: &ModstampRange) -> String {
        format!(
            "SELECT {} FROM {} WHERE {}",
            self.fields.join(", "),
            self.object,
            range.soql_filter()
        )
    }
}

/// One results page of one range.
#[derive(Debug, Clone)]
pub struct RangePage {
    /// The range whose job produced the page.
    pub range: ModstampRange,
    /// The page.
    pub page: CsvPage,
    /// Whether this is the range's last page (the range is then fully delivered).
    pub last_in_range: bool,
}

/// Reads an object over a `SystemModstamp` range, one page at a time, splitting ranges whose
/// Bulk job times out. See the module docs.
#[derive(Debug)]
pub struct RangeReader {
    client: SalesforceClient,
    query: RangeQuery,
    min_width: Duration,
    /// Ranges still to read, earliest last (popped first).
    pending: Vec<ModstampRange>,
    /// The range being downloaded and its results.
    current: Option<(ModstampRange, BulkQueryResults)>,
    /// Ranges fully delivered, in order.
    done: Vec<ModstampRange>,
    start: OffsetDateTime,
    splits: u32,
}

impl RangeReader {
    /// A reader of `query` over `range` that splits down to `min_width` (at least one second).
    /// Nothing is sent until [`RangeReader::next_page`].
    pub fn new(
        client: SalesforceClient,
        query: RangeQuery,
        range: ModstampRange,
        min_width: Duration,
    ) -> Self {
        RangeReader {
            client,
            query,
            min_width,
            pending: vec![range],
            current: None,
            done: Vec::new(),
            start: range.from(),
            splits: 0,
        }
    }

    /// The next page, or `None` when every range has been read. After an error the reader is
    /// unchanged: calling again retries the same job or page.
    pub async fn next_page(&mut self) -> Result<Option<RangePage>, SalesforceError> {
        loop {
            if let Some(page) = self.next_of_current().await? {
                return Ok(Some(page));
            }
            let Some(range) = self.pending.pop() else {
                return Ok(None);
            };
            if let Err(e) = self.start_range(range).await {
                self.pending.push(range);
                return Err(e);
            }
        }
    }

    /// The next page of the range being read, if any; marks the range done after its last.
    async fn next_of_current(&mut self) -> Result<Option<RangePage>, SalesforceError> {
        let Some((range, results)) = &mut self.current else {
            return Ok(None);
        };
        let range = *range;
        let page = results.next_page().await?;
        let last_in_range = page.as_ref().is_none_or(|p| p.next_locator.is_none());
        if last_in_range {
            self.current = None;
            self.done.push(range);
        }
        Ok(page.map(|page| RangePage {
            range,
            page,
            last_in_range,
        }))
    }

    /// Starts the job of `range`, or replaces `range` by its halves if the job timed out.
    async fn start_range(&mut self, range: ModstampRange) -> Result<(), SalesforceError> {
        if range.is_empty() {
            self.done.push(range);
            return Ok(());
        }
        let soql = self.query.soql(&range);
        match self
            .client
            .bulk_query_with(&soql, self.query.operation)
            .await
        {
            Ok(results) => {
                self.current = Some((range, results));
                Ok(())
            }
            Err(e) if e.needs_split() => self.split(range, &e),
            Err(e) => Err(e),
        }
    }

    /// Pushes the halves of `range` (earliest on top), or fails if it is too narrow to split.
    fn split(
        &mut self,
        range: ModstampRange,
        cause: &SalesforceError,
    ) -> Result<(), SalesforceError> {
        let Some((early, late)) = range.bisect(self.min_width) else {
            return Err(SalesforceError::SplitExhausted {
                object: self.query.object.clone(),
                from: soql_datetime(range.from()),
                to: soql_datetime(range.to()),
                message: cause.to_string(),
            });
        };
        tracing::info!(
            object = %self.query.object,
            from = %soql_datetime(range.from()),
            to = %soql_datetime(range.to()),
            mid = %soql_datetime(early.to()),
            "bulk query timed out; splitting the systemmodstamp range in two"
        );
        self.splits += 1;
        self.pending.push(late);
        self.pending.push(early);
        Ok(())
    }

    /// Every row stamped before this instant has been delivered: resume from here.
    pub fn completed_through(&self) -> OffsetDateTime {
        self.done.last().map_or(self.start, ModstampRange::to)
    }

    /// The ranges fully delivered so far, in time order (they partition
    /// `[start, completed_through)`).
    pub fn ranges_read(&self) -> &[ModstampRange] {
        &self.done
    }

    /// How many times a range was split after a `QUERY_TIMEOUT`.
    pub fn splits(&self) -> u32 {
        self.splits
    }

    /// The object being read.
    pub fn object(&self) -> &str {
        &self.query.object
    }

    /// The reader as a stream of pages, for callers that prefer `futures::Stream`.
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<RangePage, SalesforceError>> + Send {
        futures::stream::try_unfold(self, |mut reader| async move {
            Ok(reader.next_page().await?.map(|page| (page, reader)))
        })
    }
}

impl SalesforceClient {
    /// A [`RangeReader`] of `query` over `range`, splitting on `QUERY_TIMEOUT` down to one
    /// second. For a full read use `[DEFAULT_FLOOR, server_time())`.
    pub fn read_modstamp_range(&self, query: RangeQuery, range: ModstampRange) -> RangeReader {
        RangeReader::new(self.clone(), query, range, DEFAULT_MIN_WIDTH)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn datetimes_parse_at_full_precision_in_every_rendering() {
        let a = parse_datetime("2024-01-02T17:38:59.000+0000").unwrap();
        assert_eq!(a, datetime!(2024-01-02 17:38:59 UTC));
        let b = parse_datetime("2024-01-02T17:38:59.123Z").unwrap();
        assert_eq!(b, datetime!(2024-01-02 17:38:59.123 UTC));
        let c = parse_datetime("2024-01-02T19:38:59+02:00").unwrap();
        assert_eq!(c, a);
        assert!(parse_datetime("2024-01-02").is_none());
        assert!(parse_datetime("2024-01-02T17:38:59.+0000").is_none());
        assert!(parse_datetime("2024-01-02T17:38:59+00").is_none());
    }

    #[test]
    fn soql_literals_are_utc_whole_seconds_unquoted() {
        let t = datetime!(2024-01-02 19:38:59.999 +02:00);
        assert_eq!(soql_datetime(t), "2024-01-02T17:38:59Z");
    }

    #[test]
    fn bisecting_partitions_the_range_on_whole_seconds() {
        let r = ModstampRange::new(
            datetime!(2024-01-01 0:00 UTC),
            datetime!(2024-01-01 0:00:03.7 UTC),
        );
        assert_eq!(r.width(), Duration::from_secs(3));
        let (a, b) = r.bisect(DEFAULT_MIN_WIDTH).unwrap();
        assert_eq!((a.from(), a.to(), b.to()), (r.from(), b.from(), r.to()));
        assert_eq!(a.to(), datetime!(2024-01-01 0:00:01 UTC));
        let (c, d) = b.bisect(DEFAULT_MIN_WIDTH).unwrap();
        assert_eq!(
            (c.width(), d.width()),
            (DEFAULT_MIN_WIDTH, DEFAULT_MIN_WIDTH)
        );
        assert!(c.bisect(DEFAULT_MIN_WIDTH).is_none());
        assert!(r.bisect(Duration::from_secs(3)).is_none());
        assert!(r.contains(a.to()) && !r.contains(r.to()) && r.contains(r.from()));
    }

    #[test]
    fn every_instant_falls_in_exactly_one_half() {
        let r = ModstampRange::new(DEFAULT_FLOOR, datetime!(2026-05-01 12:00:01 UTC));
        let (a, b) = r.bisect(DEFAULT_MIN_WIDTH).unwrap();
        for t in [
            r.from(),
            a.to() - time::Duration::SECOND,
            a.to(),
            r.to() - time::Duration::MILLISECOND,
        ] {
            assert!(r.contains(t));
            assert!(a.contains(t) ^ b.contains(t), "{t}");
        }
    }

    #[test]
    fn empty_ranges_are_empty_and_the_filter_is_half_open() {
        let t = datetime!(2024-05-01 12:00 UTC);
        assert!(ModstampRange::new(t, t).is_empty());
        assert!(ModstampRange::new(t, t - time::Duration::HOUR).is_empty());
        let r = ModstampRange::new(t, t + time::Duration::HOUR);
        assert_eq!(
            r.soql_filter(),
            "SystemModstamp >= 2024-05-01T12:00:00Z AND SystemModstamp < 2024-05-01T13:00:00Z"
        );
        assert_eq!(
            r.to_string(),
            "[2024-05-01T12:00:00Z, 2024-05-01T13:00:00Z)"
        );
    }
}
