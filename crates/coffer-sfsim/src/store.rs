//! The write overlay over the generated org: what clients wrote, and nothing else.
//!
//! Generated rows stay generated on demand; the [`Overlay`] holds only written records: generated
//! rows that were updated, deleted or purged (by row index), inserted records (in insertion, that
//! is id, order), and the delete batches the Recycle Bin needs to undelete cascaded children. The
//! current overlay sits behind an `Arc`; a write clones it (cheaply: per-object tables are `Arc`s
//! too, cloned only when written) and swaps the new version in, so a query job holding an older
//! `Arc` keeps reading the snapshot it was created on.
//!
//! A [`View`] is one object's rows as a query sees them at a snapshot: generated rows minus those
//! deleted or purged (deleted ones stay for `queryAll`), with updates applied, then inserted
//! rows. Position `n` of a view is computed from the sorted list of excluded generated rows, so a
//! view of a 10-million-row object costs only what was written.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use crate::data::{Org, Row};
use crate::ids::checksum_suffix;
use crate::schema::ObjectDef;
use crate::server::lock;

/// Where a record of an object lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// Generated row at this index.
    Generated(usize),
    /// Inserted record at this position of the object's inserted list.
    Inserted(usize),
}

/// Which delete put a record in the Recycle Bin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deletion {
    /// The delete batch (one per deleted root record).
    pub batch: u64,
    /// Whether the record was the one asked for (not a cascaded child).
    pub root: bool,
}

/// A record's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Visible to `query`.
    Live,
    /// In the Recycle Bin, visible only to `queryAll`; `None` for rows the seed generated deleted.
    Deleted(Option<Deletion>),
    /// Gone for good.
    Purged,
}

impl State {
    /// Whether a query sees a record in this state.
    pub fn visible(self, include_deleted: bool) -> bool {
        match self {
            State::Live => true,
            State::Deleted(_) => include_deleted,
            State::Purged => false,
        }
    }
}

/// A written record: its full row (cells in describe order) and state.
#[derive(Debug, Clone)]
pub struct Record {
    /// Cells in describe order (`None`: null).
    pub row: Row,
    /// Lifecycle state.
    pub state: State,
}

/// What was written to one object.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Generated rows that were written, by row index.
    changed: BTreeMap<usize, Record>,
    /// Inserted records, in insertion (id) order; purged ones stay as [`State::Purged`].
    inserted: Vec<Record>,
    /// Position in `inserted` by id.
    inserted_at: HashMap<String, usize>,
}

impl Table {
    /// Number of inserted records (purged ones included).
    pub fn inserted_len(&self) -> usize {
        self.inserted.len()
    }
}

/// A lookup a delete cleared (SetNull), remembered so undelete can restore it where Salesforce
/// does.
#[derive(Debug, Clone)]
pub struct Cleared {
    /// The child object.
    pub object: &'static str,
    /// The child record.
    pub slot: Slot,
    /// Field position on the child.
    pub field: usize,
    /// The deleted parent's id.
    pub parent: String,
}

/// Everything one delete call did to one root record.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Records deleted, the root first: (object, slot).
    pub members: Vec<(&'static str, Slot)>,
    /// Lookups cleared on surviving children.
    pub cleared: Vec<Cleared>,
}

/// All writes: per-object tables and Recycle Bin batches.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    tables: BTreeMap<&'static str, Arc<Table>>,
    batches: BTreeMap<u64, Arc<Batch>>,
}

impl Overlay {
    /// What was written to the object named exactly `object`, if anything.
    pub fn table(&self, object: &str) -> Option<&Arc<Table>> {
        self.tables.get(object)
    }

    /// The record at `slot` of `def` and its state, or `None` if there is no such record.
    pub fn record(&self, org: &Org, def: &ObjectDef, slot: Slot) -> Option<Record> {
        let table = self.table(def.name);
        match slot {
            Slot::Generated(index) => {
                if let Some(written) = table.and_then(|t| t.changed.get(&index)) {
                    return Some(written.clone());
                }
                let live = org.row_count(def.name);
                let state = if index < live {
                    State::Live
                } else if index < live + org.deleted_count(def.name) {
                    State::Deleted(None)
                } else {
                    return None;
                };
                Some(Record {
                    row: org.row(def, index),
                    state,
                })
            }
            Slot::Inserted(k) => table.and_then(|t| t.inserted.get(k)).cloned(),
        }
    }

    /// The object and slot of record `id` (an 18-character id from [`normalize_id`]), whatever
    /// its state.
    pub fn locate<'o>(&self, org: &'o Org, id: &str) -> Option<(&'o ObjectDef, Slot)> {
        let def = org.object_by_prefix(id.get(..3)?)?;
        let inserted = self
            .table(def.name)
            .and_then(|t| t.inserted_at.get(id).copied());
        match inserted {
            Some(k) => Some((def, Slot::Inserted(k))),
            None => Some((def, Slot::Generated(org.generated_index(def, id)?))),
        }
    }

    /// Replaces the record at `slot` of `object`.
    pub fn put(&mut self, object: &'static str, slot: Slot, record: Record) {
        let table = Arc::make_mut(self.tables.entry(object).or_default());
        match slot {
            Slot::Generated(index) => {
                table.changed.insert(index, record);
            }
            Slot::Inserted(k) => {
                if let Some(at) = table.inserted.get_mut(k) {
                    *at = record;
                }
            }
        }
    }

    /// Appends an inserted record with id `id`; returns its slot.
    pub fn push(&mut self, object: &'static str, id: String, record: Record) -> Slot {
        let table = Arc::make_mut(self.tables.entry(object).or_default());
        let k = table.inserted.len();
        table.inserted.push(record);
        table.inserted_at.insert(id, k);
        Slot::Inserted(k)
    }

    /// Every slot of `def` holding a record (generated rows first, then inserted ones).
    pub fn slots(&self, org: &Org, def: &ObjectDef) -> impl Iterator<Item = Slot> + use<> {
        let generated = org.row_count(def.name) + org.deleted_count(def.name);
        let inserted = self.table(def.name).map_or(0, |t| t.inserted.len());
        (0..generated)
            .map(Slot::Generated)
            .chain((0..inserted).map(Slot::Inserted))
    }

    /// Slots of `def` written in the overlay (generated rows that changed, inserted records),
    /// with their records.
    pub fn written(&self, def: &ObjectDef) -> Vec<(Slot, Record)> {
        let Some(table) = self.table(def.name) else {
            return Vec::new();
        };
        let changed = table
            .changed
            .iter()
            .map(|(i, r)| (Slot::Generated(*i), r.clone()));
        let inserted = table
            .inserted
            .iter()
            .enumerate()
            .map(|(k, r)| (Slot::Inserted(k), r.clone()));
        changed.chain(inserted).collect()
    }

    /// The Recycle Bin records of `def`: (slot, id).
    pub fn recycle_bin(&self, org: &Org, def: &ObjectDef) -> Vec<(Slot, String)> {
        let id_at = def.index_of("Id").unwrap_or_default();
        let id_of = |row: &Row| row.get(id_at).cloned().flatten().unwrap_or_default();
        let table = self.table(def.name);
        let mut out: Vec<(Slot, String)> = Vec::new();
        let live = org.row_count(def.name);
        for index in live..live + org.deleted_count(def.name) {
            if !table.is_some_and(|t| t.changed.contains_key(&index)) {
                out.push((Slot::Generated(index), id_of(&org.row(def, index))));
            }
        }
        for (slot, record) in self.written(def) {
            if matches!(record.state, State::Deleted(_)) {
                out.push((slot, id_of(&record.row)));
            }
        }
        out.sort();
        out
    }

    /// Records a delete batch.
    pub fn add_batch(&mut self, id: u64, batch: Batch) {
        self.batches.insert(id, Arc::new(batch));
    }

    /// The delete batch `id`.
    pub fn batch(&self, id: u64) -> Option<Arc<Batch>> {
        self.batches.get(&id).cloned()
    }

    /// Forgets every delete batch (after the Recycle Bin is emptied).
    pub fn clear_batches(&mut self) {
        self.batches.clear();
    }
}

/// The canonical 18-character form of a 15- or 18-character id, or `None` if `id` is not shaped
/// like one.
pub fn normalize_id(id: &str) -> Option<String> {
    let id = id.trim();
    if !matches!(id.len(), 15 | 18) || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let base = &id[..15];
    Some(format!("{base}{}", checksum_suffix(base)))
}

/// One object's rows at a snapshot, as `query` (or `queryAll`) returns them.
#[derive(Debug, Clone)]
pub struct View {
    org: Org,
    object: usize,
    table: Option<Arc<Table>>,
    /// Generated rows `0..gen_end` are candidates.
    gen_end: usize,
    /// Sorted generated rows below `gen_end` a query does not see.
    excluded: Vec<usize>,
    /// Sorted generated rows from `gen_end` on a query sees (undeleted seed-deleted rows).
    extra: Vec<usize>,
    /// Positions of visible inserted records.
    inserted: Vec<usize>,
}

impl View {
    /// The rows of `def` visible at `overlay`, Recycle Bin rows too if `include_deleted`.
    pub fn new(org: &Org, overlay: &Overlay, def: &ObjectDef, include_deleted: bool) -> Self {
        let live = org.row_count(def.name);
        let gen_end = if include_deleted {
            live + org.deleted_count(def.name)
        } else {
            live
        };
        let table = overlay.table(def.name).cloned();
        let (mut excluded, mut extra, mut inserted) = (Vec::new(), Vec::new(), Vec::new());
        if let Some(t) = &table {
            for (index, record) in &t.changed {
                let visible = record.state.visible(include_deleted);
                if *index < gen_end && !visible {
                    excluded.push(*index);
                } else if *index >= gen_end && visible {
                    extra.push(*index);
                }
            }
            inserted = (0..t.inserted.len())
                .filter(|k| t.inserted[*k].state.visible(include_deleted))
                .collect();
        }
        View {
            org: org.clone(),
            object: org.position(def.name).unwrap_or_default(),
            table,
            gen_end,
            excluded,
            extra,
            inserted,
        }
    }

    /// The object viewed.
    pub fn def(&self) -> &ObjectDef {
        &self.org.objects[self.object]
    }

    fn generated_len(&self) -> usize {
        self.gen_end - self.excluded.len()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.generated_len() + self.extra.len() + self.inserted.len()
    }

    /// Whether the view has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `n` of the view (`None` past the end).
    pub fn row(&self, n: usize) -> Option<Row> {
        let generated = self.generated_len();
        if n < generated {
            return Some(self.generated(n + self.excluded_up_to(n)));
        }
        let n = n - generated;
        if let Some(index) = self.extra.get(n) {
            return Some(self.generated(*index));
        }
        let k = *self.inserted.get(n - self.extra.len())?;
        self.table
            .as_ref()
            .and_then(|t| t.inserted.get(k))
            .map(|r| r.row.clone())
    }

    /// How many excluded rows come before the `n`-th visible generated row: the `k` with
    /// `excluded[k] - k <= n` (non-decreasing in `k`, so a binary search finds them).
    fn excluded_up_to(&self, n: usize) -> usize {
        let (mut lo, mut hi) = (0, self.excluded.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.excluded[mid] - mid <= n {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn generated(&self, index: usize) -> Row {
        match self.table.as_ref().and_then(|t| t.changed.get(&index)) {
            Some(record) => record.row.clone(),
            None => self.org.row(self.def(), index),
        }
    }
}

/// The simulator's clock: real time unless a test froze or shifted it.
#[derive(Debug, Default)]
pub struct Clock {
    frozen: Mutex<Option<OffsetDateTime>>,
    offset_ms: AtomicI64,
}

impl Clock {
    /// Now, as the simulator sees it.
    pub fn now(&self) -> OffsetDateTime {
        let base = lock(&self.frozen).unwrap_or_else(OffsetDateTime::now_utc);
        base + time::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Freezes the clock at `at`.
    pub fn set(&self, at: OffsetDateTime) {
        *lock(&self.frozen) = Some(at);
        self.offset_ms.store(0, Ordering::Relaxed);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// The current overlay, the writer lock and the counters that make ids unique.
#[derive(Debug)]
pub struct Store {
    current: Mutex<Arc<Overlay>>,
    writer: Mutex<()>,
    /// Counter of inserted record ids (shared by all objects, never reused, even on rollback).
    pub next_id: AtomicU64,
    /// Counter of delete batches.
    pub next_batch: AtomicU64,
    /// The clock writes are stamped with.
    pub clock: Clock,
}

/// Inserted ids count from here, far above any generated row, so they never collide with
/// generated ids and sort after them.
pub const FIRST_INSERTED_ID: u64 = 1 << 40;

impl Default for Store {
    fn default() -> Self {
        Store {
            current: Mutex::default(),
            writer: Mutex::default(),
            next_id: AtomicU64::new(FIRST_INSERTED_ID),
            next_batch: AtomicU64::new(1),
            clock: Clock::default(),
        }
    }
}

impl Store {
    /// The overlay as of now; later writes do not change it.
    pub fn snapshot(&self) -> Arc<Overlay> {
        lock(&self.current).clone()
    }

    /// Runs `write` on a draft of the overlay and publishes the draft afterwards. Writers are
    /// serialized; readers keep their snapshots. Blocking: call it off the async runtime's
    /// threads when it may scan large objects.
    pub fn write<R>(&self, write: impl FnOnce(&mut Overlay) -> R) -> R {
        let _writer = lock(&self.writer);
        let mut draft = Overlay::clone(&self.snapshot());
        let out = write(&mut draft);
        *lock(&self.current) = Arc::new(draft);
        out
    }
}
