//! The steps of a retention sweep after the plan: mark, wait out the grace period, delete.
//!
//! [`steps`] is pure. Given the plan's decisions for one org, the marks earlier sweeps left, the
//! time and the grace period, it says which backups to mark now, which marks to lift (a hold was
//! placed, the policy changed, a failed backup ran again), which marked backups are due for
//! deletion, and which deletions a crash interrupted and must be finished. A backup is deleted
//! only when it was marked at least the grace period ago *and* the fresh plan still deletes it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::BackupId;
use crate::retention::{Decision, DeleteReason};

/// Where a marked backup is on its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkStage {
    /// Marked; still restorable; deleted once due, unless a later plan keeps it.
    Marked,
    /// Deletion started: no longer restorable; the next sweep finishes it whatever the plan.
    Deleting,
    /// Gone from the bucket and the catalog; the mark stays as the record of why.
    Deleted,
}

/// A mark an earlier sweep left on a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The backup.
    pub backup_id: BackupId,
    /// Where it is.
    pub stage: MarkStage,
    /// When it was marked: due once the grace period (as configured now) has passed since.
    pub marked_at: OffsetDateTime,
}

/// What one sweep of one org does after planning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Steps {
    /// Backups to mark now, with why, due at `now + grace`.
    pub mark: Vec<(BackupId, DeleteReason)>,
    /// Marks to lift: the plan keeps these backups now.
    pub unmark: Vec<BackupId>,
    /// Marked backups due for deletion (new marks among them when the grace period is zero).
    pub expire: Vec<BackupId>,
    /// Deletions a crash or an error interrupted: finish them.
    pub resume: Vec<BackupId>,
}

/// Decides the steps of one org's sweep. `decisions` is the fresh plan (newest first), which
/// leaves out backups already being deleted; `marks` are the org's marks not yet deleted.
pub fn steps(
    decisions: &[Decision],
    marks: &[Mark],
    now: OffsetDateTime,
    grace: Duration,
) -> Steps {
    let by_backup: HashMap<BackupId, &Mark> = marks.iter().map(|m| (m.backup_id, m)).collect();
    let mut steps = Steps {
        resume: marks
            .iter()
            .filter(|m| m.stage == MarkStage::Deleting)
            .map(|m| m.backup_id)
            .collect(),
        ..Steps::default()
    };
    for decision in decisions {
        let id = decision.backup_id();
        let mark = by_backup.get(&id).filter(|m| m.stage == MarkStage::Marked);
        match (decision, mark) {
            (Decision::Keep { .. }, Some(_)) => steps.unmark.push(id),
            (Decision::Keep { .. }, None) => {}
            (Decision::Delete { reason, .. }, None) => {
                steps.mark.push((id, reason.clone()));
                if grace <= Duration::ZERO {
                    steps.expire.push(id);
                }
            }
            (Decision::Delete { .. }, Some(mark)) if mark.marked_at + grace <= now => {
                steps.expire.push(id)
            }
            (Decision::Delete { .. }, Some(_)) => {}
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::KeepReason;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

    fn id(n: u128) -> BackupId {
        BackupId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn delete(n: u128) -> Decision {
        Decision::Delete {
            backup_id: id(n),
            reason: DeleteReason::Failed,
        }
    }

    fn keep(n: u128) -> Decision {
        Decision::Keep {
            backup_id: id(n),
            reasons: vec![KeepReason::Hold],
        }
    }

    fn mark(n: u128, stage: MarkStage, hours_ago: i64) -> Mark {
        Mark {
            backup_id: id(n),
            stage,
            marked_at: NOW - Duration::hours(hours_ago),
        }
    }

    #[test]
    fn a_backup_is_marked_first_and_deleted_only_once_the_grace_period_is_over() {
        let grace = Duration::days(7);
        let first = steps(&[delete(1)], &[], NOW, grace);
        assert_eq!(first.mark, vec![(id(1), DeleteReason::Failed)]);
        assert!(first.expire.is_empty());
        let waiting = steps(&[delete(1)], &[mark(1, MarkStage::Marked, 24)], NOW, grace);
        assert_eq!(waiting, Steps::default());
        let due = steps(
            &[delete(1)],
            &[mark(1, MarkStage::Marked, 7 * 24)],
            NOW,
            grace,
        );
        assert_eq!(due.expire, vec![id(1)]);
        assert!(due.mark.is_empty());
    }

    #[test]
    fn the_grace_period_configured_now_decides_when_an_earlier_mark_is_due() {
        let marked_a_day_ago = [mark(1, MarkStage::Marked, 24)];
        let week = steps(&[delete(1)], &marked_a_day_ago, NOW, Duration::days(7));
        assert!(week.expire.is_empty());
        let shortened = steps(&[delete(1)], &marked_a_day_ago, NOW, Duration::hours(12));
        assert_eq!(shortened.expire, vec![id(1)]);
    }

    #[test]
    fn without_a_grace_period_a_new_mark_is_due_at_once() {
        let now = steps(&[delete(1), keep(2)], &[], NOW, Duration::ZERO);
        assert_eq!(now.mark.len(), 1);
        assert_eq!(now.expire, vec![id(1)]);
    }

    #[test]
    fn a_mark_the_plan_no_longer_agrees_with_is_lifted_even_when_due() {
        let lifted = steps(
            &[keep(1)],
            &[mark(1, MarkStage::Marked, 500)],
            NOW,
            Duration::ZERO,
        );
        assert_eq!(lifted.unmark, vec![id(1)]);
        assert!(lifted.expire.is_empty());
    }

    #[test]
    fn a_started_deletion_is_finished_whatever_the_plan() {
        let marks = [mark(1, MarkStage::Deleting, 0)];
        let resumed = steps(&[], &marks, NOW, Duration::days(1));
        assert_eq!(resumed.resume, vec![id(1)]);
        assert!(resumed.unmark.is_empty() && resumed.expire.is_empty());
    }
}
