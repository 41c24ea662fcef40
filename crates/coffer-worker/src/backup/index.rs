//! The record index of one sObject, built as its parts are written.
//!
//! [`RowIndex`] looks at every row the part sink writes and keeps, for the catalog, where the
//! record went (part, row), its `SystemModstamp` and `IsDeleted`, and its links to other records:
//! every non-empty lookup whose targets are data objects. Lookups to setup objects (`OwnerId`,
//! `CreatedById`, `RecordTypeId`, ...) are not links: a restore never recreates users, and
//! three of them on every record would triple the index. It also tracks the greatest
//! `(SystemModstamp, Id)` it saw: the cursor the next incremental backup starts from.
//!
//! [`IndexWriter`] writes the rows in batches on a task of its own, so the extraction never
//! waits for MySQL unless the writer falls two batches behind.

use coffer_catalog::{Catalog, IndexedRecord, RecordLink};
use coffer_core::{BackupId, RecordId};
use coffer_salesforce::split::parse_datetime;
use coffer_salesforce::{Cursor, SObjectDescribe};
use csv::StringRecord;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::WorkerError;

/// Lookup targets that are setup data, not records a backup restores.
const SETUP_OBJECTS: &[&str] = &[
    "User",
    "Group",
    "RecordType",
    "Profile",
    "UserRole",
    "BusinessHours",
    "Organization",
];

/// A batch of index rows of one sObject.
#[derive(Debug, Default)]
pub struct IndexBatch {
    /// Where each record is.
    pub records: Vec<IndexedRecord>,
    /// Their links, with the child's sObject.
    pub links: Vec<(String, RecordLink)>,
}

/// Column positions and the rows seen so far of one sObject.
#[derive(Debug)]
pub struct RowIndex {
    sobject: String,
    id: usize,
    system_modstamp: Option<usize>,
    is_deleted: Option<usize>,
    links: Vec<(usize, String)>,
    batch: IndexBatch,
    cursor: Option<Cursor>,
}

impl RowIndex {
    /// The index of rows with columns `header`; `None` when there is no `Id` column.
    pub fn new(describe: &SObjectDescribe, header: &StringRecord) -> Option<Self> {
        let find = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
        let links = describe
            .fields
            .iter()
            .filter(|f| is_data_link(&f.reference_to))
            .filter_map(|f| find(&f.name).map(|col| (col, f.name.clone())))
            .collect();
        Some(RowIndex {
            sobject: describe.name.clone(),
            id: find("Id")?,
            system_modstamp: find("SystemModstamp"),
            is_deleted: find("IsDeleted"),
            links,
            batch: IndexBatch::default(),
            cursor: None,
        })
    }

    /// The object whose rows these are.
    pub fn sobject(&self) -> &str {
        &self.sobject
    }

    /// Notes that `record` is row `row` (from 1) of part `part`. Refuses (with what is wrong)
    /// a row whose `Id` or a lookup is not a Salesforce id, or whose `SystemModstamp` is not a
    /// datetime.
    pub fn observe(&mut self, part: u32, row: u32, record: &StringRecord) -> Result<(), String> {
        let cell = |i: usize| record.get(i).unwrap_or_default();
        let id = cell(self.id);
        if id.is_empty() {
            return Err(format!("row {row} of part {part} has an empty Id"));
        }
        // Ids go into the catalog, restore queries and staging keys: only Salesforce's shape.
        RecordId::new(id).map_err(|e| format!("row {row} of part {part}: {e}"))?;
        let system_modstamp =
            match self.system_modstamp.map(cell) {
                Some(s) if !s.is_empty() => Some(parse_datetime(s).ok_or_else(|| {
                    format!("record {id}: SystemModstamp {s:?} is not a datetime")
                })?),
                _ => None,
            };
        if let Some(stamp) = system_modstamp {
            self.advance(Cursor {
                system_modstamp: stamp,
                id: id.to_owned(),
            });
        }
        for (col, field) in &self.links {
            let parent = cell(*col);
            if !parent.is_empty() {
                RecordId::new(parent).map_err(|e| format!("record {id}, field {field}: {e}"))?;
                self.batch.links.push((
                    self.sobject.clone(),
                    RecordLink {
                        child_id: id.to_owned(),
                        field: field.clone(),
                        parent_id: parent.to_owned(),
                    },
                ));
            }
        }
        self.batch.records.push(IndexedRecord {
            record_id: id.to_owned(),
            part,
            row,
            system_modstamp,
            deleted: self
                .is_deleted
                .is_some_and(|i| cell(i).eq_ignore_ascii_case("true")),
        });
        Ok(())
    }

    fn advance(&mut self, key: Cursor) {
        if self.cursor.as_ref().is_none_or(|c| key > *c) {
            self.cursor = Some(key);
        }
    }

    /// The rows gathered so far, once there are at least `min` records.
    pub fn take_batch(&mut self, min: usize) -> Option<IndexBatch> {
        (!self.batch.records.is_empty() && self.batch.records.len() >= min)
            .then(|| std::mem::take(&mut self.batch))
    }

    /// The greatest `(SystemModstamp, Id)` seen.
    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// Starts from an earlier cursor (an incremental read that finds nothing new keeps it).
    pub fn start_from(&mut self, cursor: Option<Cursor>) {
        if let Some(c) = cursor {
            self.advance(c);
        }
    }
}

/// Whether a lookup with these targets links two data records.
fn is_data_link(reference_to: &[String]) -> bool {
    !reference_to.is_empty()
        && reference_to
            .iter()
            .any(|t| !SETUP_OBJECTS.contains(&t.as_str()))
}

/// Writes index batches of one sObject of one backup on a task of its own. Dropped before
/// [`IndexWriter::finish`] (the extraction failed or lost its lease), it stops writing at once,
/// so nothing it had queued lands after a retry cleared the index.
pub struct IndexWriter {
    tx: Option<mpsc::Sender<IndexBatch>>,
    handle: Option<JoinHandle<Result<(), WorkerError>>>,
}

impl Drop for IndexWriter {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

impl IndexWriter {
    /// Starts the writer.
    pub fn spawn(catalog: Catalog, backup_id: BackupId, sobject: String) -> Self {
        let (tx, mut rx) = mpsc::channel::<IndexBatch>(2);
        let handle = tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                catalog
                    .index_records(backup_id, &sobject, &batch.records, &batch.links)
                    .await?;
            }
            Ok(())
        });
        IndexWriter {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    /// Queues a batch; waits while two are queued. A writer that failed returns its error.
    pub async fn send(&mut self, batch: IndexBatch) -> Result<(), WorkerError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(batch).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        Err(match self.join().await {
            Err(e) => e,
            Ok(()) => WorkerError::Task("the record index writer stopped".to_owned()),
        })
    }

    /// Waits until everything queued is written.
    pub async fn finish(mut self) -> Result<(), WorkerError> {
        self.tx = None;
        self.join().await
    }

    async fn join(&mut self) -> Result<(), WorkerError> {
        match self.handle.take() {
            Some(handle) => handle
                .await
                .map_err(|e| WorkerError::Task(format!("the record index writer failed: {e}")))?,
            None => Ok(()),
        }
    }
}
