//! Retention: which backups of an org a policy keeps, and why; everything else may go.
//!
//! [`plan`] is pure: given the org's backups (as the catalog knows them), a [`Policy`], and
//! the time, it decides every backup once, with the reasons. The rules follow the vocabulary of
//! rustic's `forget` (and restic's):
//!
//! - `keep_days`: every complete backup younger than N days;
//! - `keep_last`: the N newest complete backups;
//! - `keep_daily` / `keep_weekly` / `keep_monthly` (grandfather-father-son): the newest complete
//!   backup of each of the N newest days (ISO weeks, months, in UTC) that have one.
//!
//! Whatever the rules say, a backup is never planned for deletion when it is
//!
//! - the newest complete backup of the org (there is always one to restore from);
//! - under a legal hold (of its tenant, org, or itself; the caller says which are held);
//! - running (its objects are still being written);
//! - read by a restore in progress;
//! - the base of a kept or running incremental, however far down the chain (an incremental
//!   holds only what changed since its base, so its base is part of it).
//!
//! A failed backup counts for no rule; it goes once it is older than [`FAILED_GRACE`] (younger,
//! a redelivery may still be retrying it). An empty policy keeps everything: deletion needs a
//! rule that says so.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::BackupId;

/// How long a failed backup is left alone before it is removed.
pub const FAILED_GRACE: Duration = Duration::days(1);

/// A tenant's (or org's) retention policy. Rules add up: a backup is kept when any keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Keep every complete backup younger than this many days.
    pub keep_days: Option<u32>,
    /// Keep the newest N complete backups.
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the newest N days that have one (UTC).
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the newest N ISO weeks that have one (UTC).
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the newest N months that have one (UTC).
    pub keep_monthly: Option<u32>,
    /// On a versioned bucket, delete the versions Coffer wrote instead of only adding delete
    /// markers (the tenant's choice: markers keep the bytes, and their cost, until the bucket's
    /// own lifecycle rules expire them). Not a rule: it says how, not what, to delete.
    #[serde(default)]
    pub delete_versions: bool,
}

impl Policy {
    /// Whether the policy has any rule (an empty policy deletes nothing).
    pub fn is_empty(&self) -> bool {
        Policy {
            delete_versions: false,
            ..*self
        } == Policy::default()
    }

    /// The policy in words, for reports: `30 days, last 7, 7 daily, 4 weekly, 12 monthly`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            self.keep_days.map(|n| format!("{n} days")),
            self.keep_last.map(|n| format!("last {n}")),
            self.keep_daily.map(|n| format!("{n} daily")),
            self.keep_weekly.map(|n| format!("{n} weekly")),
            self.keep_monthly.map(|n| format!("{n} monthly")),
        ]
        .into_iter()
        .flatten()
        .collect();
        match parts.is_empty() {
            true => "no rule".to_owned(),
            false => parts.join(", "),
        }
    }
}

/// Where a backup is in its life, as far as retention cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupStage {
    /// Still being written.
    Running,
    /// Complete: restorable.
    Complete,
    /// Given up.
    Failed,
}

/// What [`plan`] needs to know about one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFacts {
    /// The backup.
    pub backup_id: BackupId,
    /// Running, complete or failed.
    pub stage: BackupStage,
    /// When it completed (complete backups), else when it started.
    pub at: OffsetDateTime,
    /// For an incremental: the backup it continues from.
    pub base: Option<BackupId>,
    /// Under a legal hold (its own, its org's or its tenant's).
    pub held: bool,
    /// Read by a restore that is planning or running.
    pub restoring: bool,
}

/// Why a backup is kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum KeepReason {
    /// The newest complete backup of the org.
    Newest,
    /// Under a legal hold.
    Hold,
    /// Still running.
    Running,
    /// Read by a restore in progress.
    Restoring,
    /// Younger than `keep_days`.
    Days,
    /// One of the `keep_last` newest.
    Last,
    /// The newest of its day, within `keep_daily`.
    Daily,
    /// The newest of its ISO week, within `keep_weekly`.
    Weekly,
    /// The newest of its month, within `keep_monthly`.
    Monthly,
    /// The base of a kept or running incremental.
    BaseOf {
        /// The incremental that depends on it.
        incremental: BackupId,
    },
    /// The policy has no rule: nothing is deleted.
    NoPolicy,
    /// Failed less than [`FAILED_GRACE`] ago: it may still be retried.
    RecentlyFailed,
}

/// Why a backup goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum DeleteReason {
    /// No rule of the policy keeps it.
    Expired {
        /// The policy, in words.
        policy: String,
    },
    /// It failed more than [`FAILED_GRACE`] ago.
    Failed,
}

/// The decision for one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    /// Kept, for these reasons (at least one).
    Keep {
        /// The backup.
        backup_id: BackupId,
        /// Why.
        reasons: Vec<KeepReason>,
    },
    /// Deleted, for this reason.
    Delete {
        /// The backup.
        backup_id: BackupId,
        /// Why.
        reason: DeleteReason,
    },
}

impl Decision {
    /// The backup decided on.
    pub fn backup_id(&self) -> BackupId {
        match self {
            Decision::Keep { backup_id, .. } | Decision::Delete { backup_id, .. } => *backup_id,
        }
    }

    /// Whether it goes.
    pub fn deletes(&self) -> bool {
        matches!(self, Decision::Delete { .. })
    }
}

/// Decides every backup of one org under `policy` at `now`; newest first.
pub fn plan(policy: &Policy, backups: &[BackupFacts], now: OffsetDateTime) -> Vec<Decision> {
    let mut ordered: Vec<&BackupFacts> = backups.iter().collect();
    ordered.sort_by(|a, b| b.at.cmp(&a.at).then(b.backup_id.cmp(&a.backup_id)));
    let mut reasons: BTreeMap<BackupId, BTreeSet<KeepReason>> = BTreeMap::new();
    let mut keep = |id: BackupId, why: KeepReason| {
        reasons.entry(id).or_default().insert(why);
    };
    let complete: Vec<&BackupFacts> = ordered
        .iter()
        .copied()
        .filter(|b| b.stage == BackupStage::Complete)
        .collect();
    if let Some(newest) = complete.first() {
        keep(newest.backup_id, KeepReason::Newest);
    }
    for b in &ordered {
        if b.held {
            keep(b.backup_id, KeepReason::Hold);
        }
        if b.restoring {
            keep(b.backup_id, KeepReason::Restoring);
        }
        match b.stage {
            BackupStage::Running => keep(b.backup_id, KeepReason::Running),
            BackupStage::Failed if now - b.at < FAILED_GRACE => {
                keep(b.backup_id, KeepReason::RecentlyFailed)
            }
            _ if policy.is_empty() => keep(b.backup_id, KeepReason::NoPolicy),
            _ => {}
        }
    }
    for (id, why) in rule_keeps(policy, &complete, now) {
        keep(id, why);
    }
    keep_bases(&ordered, &mut reasons);
    ordered
        .iter()
        .map(|b| match reasons.remove(&b.backup_id) {
            Some(why) => Decision::Keep {
                backup_id: b.backup_id,
                reasons: why.into_iter().collect(),
            },
            None => Decision::Delete {
                backup_id: b.backup_id,
                reason: match b.stage {
                    BackupStage::Failed => DeleteReason::Failed,
                    _ => DeleteReason::Expired {
                        policy: policy.describe(),
                    },
                },
            },
        })
        .collect()
}

/// The keeps of the policy's rules over the complete backups, newest first.
fn rule_keeps(
    policy: &Policy,
    complete: &[&BackupFacts],
    now: OffsetDateTime,
) -> Vec<(BackupId, KeepReason)> {
    let mut out = Vec::new();
    if let Some(days) = policy.keep_days {
        let since = now - Duration::days(i64::from(days));
        out.extend(
            complete
                .iter()
                .filter(|b| b.at > since)
                .map(|b| (b.backup_id, KeepReason::Days)),
        );
    }
    if let Some(n) = policy.keep_last {
        out.extend(
            complete
                .iter()
                .take(n as usize)
                .map(|b| (b.backup_id, KeepReason::Last)),
        );
    }
    let buckets: [(Option<u32>, BucketOf, KeepReason); 3] = [
        (policy.keep_daily, day_of, KeepReason::Daily),
        (policy.keep_weekly, week_of, KeepReason::Weekly),
        (policy.keep_monthly, month_of, KeepReason::Monthly),
    ];
    for (count, bucket_of, why) in buckets {
        let Some(count) = count else { continue };
        out.extend(
            newest_per_bucket(complete, bucket_of)
                .into_iter()
                .take(count as usize)
                .map(|id| (id, why.clone())),
        );
    }
    out
}

/// The calendar bucket (day, ISO week or month, with its year) of a time, in UTC.
type BucketOf = fn(OffsetDateTime) -> (i32, u32);

/// The newest backup of each bucket, newest bucket first (`complete` is newest first).
fn newest_per_bucket(complete: &[&BackupFacts], bucket_of: BucketOf) -> Vec<BackupId> {
    let mut seen = BTreeSet::new();
    complete
        .iter()
        .filter(|b| seen.insert(bucket_of(b.at)))
        .map(|b| b.backup_id)
        .collect()
}

fn utc(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(time::UtcOffset::UTC)
}

fn day_of(t: OffsetDateTime) -> (i32, u32) {
    let t = utc(t);
    (t.year(), u32::from(t.ordinal()))
}

fn week_of(t: OffsetDateTime) -> (i32, u32) {
    let (year, week, _) = utc(t).to_iso_week_date();
    (year, u32::from(week))
}

fn month_of(t: OffsetDateTime) -> (i32, u32) {
    let t = utc(t);
    (t.year(), u32::from(u8::from(t.month())))
}

/// Keeps the bases, down the chain, of every kept or running incremental.
fn keep_bases(backups: &[&BackupFacts], reasons: &mut BTreeMap<BackupId, BTreeSet<KeepReason>>) {
    let base_of: HashMap<BackupId, BackupId> = backups
        .iter()
        .filter_map(|b| Some((b.backup_id, b.base?)))
        .collect();
    let kept: Vec<BackupId> = reasons.keys().copied().collect();
    for incremental in kept {
        let mut at = incremental;
        let mut steps = 0;
        while let Some(base) = base_of.get(&at).copied() {
            let why = KeepReason::BaseOf { incremental: at };
            reasons.entry(base).or_default().insert(why);
            at = base;
            steps += 1;
            if steps > backups.len() {
                break; // a cycle in bad data: stop, everything on it is kept
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

    fn id(n: u128) -> BackupId {
        BackupId::from_uuid(uuid::Uuid::from_u128(n))
    }

    /// A complete full backup `days` days (and `hours` hours) before NOW.
    fn full(n: u128, days: i64, hours: i64) -> BackupFacts {
        BackupFacts {
            backup_id: id(n),
            stage: BackupStage::Complete,
            at: NOW - Duration::days(days) - Duration::hours(hours),
            base: None,
            held: false,
            restoring: false,
        }
    }

    /// One complete full backup a day for `days` days, numbered by age in days (0: today).
    fn daily_for(days: u128) -> Vec<BackupFacts> {
        (0..days).map(|d| full(d, d as i64, 0)).collect()
    }

    fn kept(decisions: &[Decision]) -> BTreeSet<BackupId> {
        decisions
            .iter()
            .filter(|d| !d.deletes())
            .map(Decision::backup_id)
            .collect()
    }

    fn reasons_of(decisions: &[Decision], backup: BackupId) -> Vec<KeepReason> {
        decisions
            .iter()
            .find_map(|d| match d {
                Decision::Keep { backup_id, reasons } if *backup_id == backup => {
                    Some(reasons.clone())
                }
                _ => None,
            })
            .unwrap_or_default()
    }

    fn ids(ns: impl IntoIterator<Item = u128>) -> BTreeSet<BackupId> {
        ns.into_iter().map(id).collect()
    }

    #[test]
    fn keep_days_keeps_what_is_younger_and_the_rest_expires() {
        let backups = daily_for(60);
        let policy = Policy {
            keep_days: Some(30),
            ..Policy::default()
        };
        let decisions = plan(&policy, &backups, NOW);
        assert_eq!(decisions.len(), 60, "every backup decided once");
        assert_eq!(kept(&decisions), ids(0..30));
        let Some(Decision::Delete { reason, .. }) =
            decisions.iter().find(|d| d.backup_id() == id(45))
        else {
            panic!("45 days old: deleted")
        };
        assert_eq!(
            *reason,
            DeleteReason::Expired {
                policy: "30 days".to_owned()
            }
        );
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let decisions = plan(
            &Policy {
                keep_last: Some(3),
                ..Policy::default()
            },
            &daily_for(10),
            NOW,
        );
        assert_eq!(kept(&decisions), ids(0..3));
        assert_eq!(
            reasons_of(&decisions, id(0)),
            [KeepReason::Newest, KeepReason::Last]
        );
    }

    #[test]
    fn grandfather_father_son_keeps_the_newest_of_each_day_week_and_month() {
        // Two backups a day for a year (the later one at 18:00... i.e. 6 hours earlier in age
        // terms is the same day's newer one): 7 daily, 4 weekly, 12 monthly.
        let mut backups = Vec::new();
        for d in 0..365u128 {
            backups.push(full(2 * d, d as i64, 0)); // the day's newest
            backups.push(full(2 * d + 1, d as i64, 6)); // earlier the same day
        }
        let policy = Policy {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(12),
            ..Policy::default()
        };
        let decisions = plan(&policy, &backups, NOW);
        let kept = kept(&decisions);
        // Only a day's newest backup is ever kept by a calendar rule.
        assert!(
            kept.iter().all(|k| k.as_uuid().as_u128() % 2 == 0),
            "{kept:?}"
        );
        let by = |why: KeepReason| {
            decisions
                .iter()
                .filter(|d| matches!(d, Decision::Keep { reasons, .. } if reasons.contains(&why)))
                .count()
        };
        assert_eq!(by(KeepReason::Daily), 7);
        assert_eq!(by(KeepReason::Weekly), 4);
        assert_eq!(by(KeepReason::Monthly), 12);
        // The daily ones are the last 7 days; a monthly one is the newest of its month.
        assert!(ids((0..7).map(|d| 2 * d)).is_subset(&kept));
        let november_30 = full(0, 1, 0).at; // NOW is 1 December: the month before ends a day ago
        let newest_of_november = backups
            .iter()
            .find(|b| b.at == november_30 && b.backup_id.as_uuid().as_u128() % 2 == 0)
            .map(|b| b.backup_id)
            .expect("backup of 30 November");
        assert!(reasons_of(&decisions, newest_of_november).contains(&KeepReason::Monthly));
        // Everything else expires: 7 + 4 + 12 less what overlaps.
        assert!(kept.len() <= 7 + 4 + 12, "{}", kept.len());
    }

    #[test]
    fn the_newest_complete_backup_stays_whatever_the_policy_says() {
        let backups = vec![full(1, 100, 0), full(2, 200, 0)];
        let decisions = plan(
            &Policy {
                keep_days: Some(7),
                ..Policy::default()
            },
            &backups,
            NOW,
        );
        assert_eq!(kept(&decisions), ids([1]));
        assert_eq!(reasons_of(&decisions, id(1)), [KeepReason::Newest]);
    }

    #[test]
    fn a_hold_keeps_what_the_policy_would_delete() {
        let mut backups = daily_for(10);
        backups[8].held = true;
        let decisions = plan(
            &Policy {
                keep_last: Some(2),
                ..Policy::default()
            },
            &backups,
            NOW,
        );
        assert_eq!(kept(&decisions), ids([0, 1, 8]));
        assert_eq!(reasons_of(&decisions, id(8)), [KeepReason::Hold]);
    }

    #[test]
    fn an_incremental_keeps_its_whole_chain_of_bases() {
        // full 10 (90 days old) <- incremental 11 <- incremental 12 (today); and an old chain
        // nobody depends on any more.
        let mut backups = vec![
            full(10, 90, 0),
            full(11, 60, 0),
            full(12, 0, 0),
            full(20, 120, 0),
        ];
        backups[1].base = Some(id(10));
        backups[2].base = Some(id(11));
        let decisions = plan(
            &Policy {
                keep_last: Some(1),
                ..Policy::default()
            },
            &backups,
            NOW,
        );
        assert_eq!(kept(&decisions), ids([10, 11, 12]));
        assert_eq!(
            reasons_of(&decisions, id(10)),
            [KeepReason::BaseOf {
                incremental: id(11)
            }]
        );
        assert_eq!(
            reasons_of(&decisions, id(11)),
            [KeepReason::BaseOf {
                incremental: id(12)
            }]
        );
    }

    #[test]
    fn a_running_backup_and_its_base_are_kept() {
        let mut backups = vec![full(1, 0, 1), full(2, 40, 0), full(3, 50, 0)];
        backups[0].stage = BackupStage::Running;
        backups[0].base = Some(id(3));
        let decisions = plan(
            &Policy {
                keep_days: Some(7),
                ..Policy::default()
            },
            &backups,
            NOW,
        );
        // 2 is the newest complete backup; 3 is the running incremental's base.
        assert_eq!(kept(&decisions), ids([1, 2, 3]));
        assert_eq!(reasons_of(&decisions, id(1)), [KeepReason::Running]);
    }

    #[test]
    fn a_failed_backup_goes_once_no_retry_can_come() {
        let mut backups = vec![full(1, 0, 0), full(2, 0, 2), full(3, 3, 0)];
        backups[1].stage = BackupStage::Failed;
        backups[2].stage = BackupStage::Failed;
        let decisions = plan(
            &Policy {
                keep_last: Some(5),
                ..Policy::default()
            },
            &backups,
            NOW,
        );
        assert_eq!(kept(&decisions), ids([1, 2]));
        assert_eq!(reasons_of(&decisions, id(2)), [KeepReason::RecentlyFailed]);
        assert!(decisions.contains(&Decision::Delete {
            backup_id: id(3),
            reason: DeleteReason::Failed
        }));
    }

    #[test]
    fn an_empty_policy_deletes_nothing() {
        let mut backups = daily_for(5);
        backups[3].stage = BackupStage::Failed;
        let decisions = plan(&Policy::default(), &backups, NOW);
        assert_eq!(kept(&decisions), ids(0..5), "not even a failed backup");
        assert_eq!(Policy::default().describe(), "no rule");
    }
}
