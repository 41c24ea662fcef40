//! What the worker counts, at the points where the catalog makes it true: an object is counted
//! stored once its row is written, a task's records once the task is recorded done. So the
//! counters of a clean run agree with the catalog, and a task redone after a crash counts the
//! records of the run that completed it only once more (the earlier attempt never completed).

use coffer_catalog::ObjectKind;
use coffer_core::metrics as m;

/// The `what` label of an object kind.
fn what(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Manifest => "manifest",
        ObjectKind::Records => "records",
        ObjectKind::File => "files",
    }
}

/// An object (records part, manifest) whose catalog row was written.
pub(crate) fn object_stored(kind: ObjectKind, bytes: u64) {
    stored(what(kind), bytes);
}

/// A file body, stored once per content, whose catalog row was written.
pub(crate) fn file_stored(bytes: u64) {
    stored("files", bytes);
}

fn stored(what: &'static str, bytes: u64) {
    metrics::counter!(m::OBJECTS_STORED_TOTAL, "what" => what).increment(1);
    metrics::counter!(m::BYTES_STORED_TOTAL, "what" => what).increment(bytes);
}

/// Records of a task recorded done.
pub(crate) fn records_backed_up(records: u64) {
    metrics::counter!(m::RECORDS_BACKED_UP_TOTAL).increment(records);
}

/// Records a restore wrote (`written`) or gave up on (`failed`).
pub(crate) fn records_restored(result: &'static str, records: u64) {
    metrics::counter!(m::RECORDS_RESTORED_TOTAL, "result" => result).increment(records);
}

/// An org paused for its API allowance.
pub(crate) fn org_paused() {
    metrics::counter!(m::ORGS_PAUSED_TOTAL).increment(1);
}

/// What one org's sweep deleted, and whether it left failures.
pub(crate) fn swept(sweep: &crate::janitor::sweep::OrgSweep) {
    let outcome = match sweep.failures.is_empty() {
        true => "clean",
        false => "with_failures",
    };
    metrics::counter!(m::SWEEPS_TOTAL, "outcome" => outcome).increment(1);
    metrics::counter!(m::BACKUPS_EXPIRED_TOTAL).increment(sweep.expired.len() as u64);
    let objects: u64 = sweep.expired.iter().map(|e| e.objects_deleted).sum();
    metrics::counter!(m::OBJECTS_DELETED_TOTAL, "what" => "backups").increment(objects);
    if let Some(files) = &sweep.files {
        metrics::counter!(m::OBJECTS_DELETED_TOTAL, "what" => "files")
            .increment(files.deleted + files.orphans);
    }
}
