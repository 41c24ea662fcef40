//! Backup schedules: a cron expression in an IANA time zone per tenant (one org, or every org
//! the tenant has connected), and the runs a scheduler claimed from them.
//!
//! # Occurrences
//!
//! [`CronSchedule`] parses the expression with `croner` (five fields, or six with seconds) and
//! evaluates it on the wall clock of the zone with `jiff`, following the Open Cron Pattern
//! Specification's daylight saving rules: a fixed time that falls in a spring-forward gap runs at
//! the first instant after the gap (a 02:30 backup in Europe/Paris runs at 03:00 on the last
//! Sunday of March), a fixed time in a fall-back overlap runs once (at its first pass), and
//! interval patterns (`*/15 * * * *`) follow the wall clock. Every time stored or returned is UTC.
//!
//! # Exactly once
//!
//! A schedule row holds `next_run_at`, the next occurrence nobody has claimed.
//! [`Catalog::claim_occurrence`] advances it with a compare-and-set
//! (`UPDATE … WHERE schedule_id = ? AND next_run_at = ?`), and in the same transaction inserts one
//! `schedule_runs` row per org whose job id is a UUIDv5 of (schedule uid, occurrence, org)
//! ([`run_job_id`]). Two schedulers racing for an occurrence therefore commit one claim between
//! them, and the job id of an occurrence never depends on who claimed it.
//!
//! A run is published after its claim committed and marked published
//! ([`Catalog::mark_run_published`]) after the broker's confirm. A run left unpublished (the
//! broker refused, the scheduler died in between) is picked up again by
//! [`Catalog::lease_unpublished_runs`] and republished with the same job id; the lease (a
//! compare-and-set on `attempt_at`) keeps two schedulers from republishing it at once. Only a
//! crash between the broker's confirm and the mark can publish an occurrence twice, with the same
//! job id, which the worker's backups are idempotent on.
//!
//! # Missed occurrences
//!
//! When no scheduler ran for a while, a due schedule is claimed once, for the latest occurrence
//! not after now, and `next_run_at` jumps to the first occurrence after now: one catch-up run,
//! never a burst.
//!
//! # One publisher
//!
//! [`Catalog::lead_scheduler`] takes a MySQL named lock (`GET_LOCK`, scoped to the database) on a
//! connection of its own, held while leading; when that connection drops, the server releases the
//! lock and another replica takes over. The compare-and-set claims make correctness independent of
//! the lock: it only keeps the followers idle.

use std::str::FromStr;
use std::time::Duration;

use coffer_core::{JobId, OrgId, TenantId};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::tz::TimeZone;
use sqlx::mysql::MySqlRow;
use sqlx::{Connection, MySqlConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Catalog, CatalogError};

/// Full or incremental, as a schedule asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// Every record of every object.
    Full,
    /// What changed since the previous backup.
    Incremental,
}

impl ScheduleKind {
    /// The stored (and displayed) name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleKind::Full => "full",
            ScheduleKind::Incremental => "incremental",
        }
    }
}

impl FromStr for ScheduleKind {
    type Err = CatalogError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(ScheduleKind::Full),
            "incremental" => Ok(ScheduleKind::Incremental),
            other => Err(CatalogError::Refused(format!(
                "unknown backup kind {other:?} (expected full or incremental)"
            ))),
        }
    }
}

/// A validated cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expression: String,
    cron: Cron,
    zone_name: String,
    zone: TimeZone,
}

impl CronSchedule {
    /// Parses `expression` (`min hour dom month dow`, or with a leading seconds field) and looks
    /// up `zone` in the tz database; refuses either with a message naming the problem, and
    /// refuses an expression that never fires (such as the 30th of February).
    pub fn parse(expression: &str, zone: &str) -> Result<Self, CatalogError> {
        let expression = expression.trim();
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|e| {
                CatalogError::Refused(format!(
                    "invalid cron expression {expression:?}: {e} (expected 5 fields, \
                     `minute hour day-of-month month day-of-week`, or 6 with seconds first)"
                ))
            })?;
        let tz = TimeZone::get(zone).map_err(|_| {
            CatalogError::Refused(format!(
                "unknown time zone {zone:?} (expected an IANA name such as Europe/Paris, \
                 America/New_York or UTC)"
            ))
        })?;
        let schedule = CronSchedule {
            expression: expression.to_owned(),
            cron,
            zone_name: zone.to_owned(),
            zone: tz,
        };
        schedule
            .next_after(OffsetDateTime::now_utc())
            .map_err(|_| {
                CatalogError::Refused(format!(
                    "cron expression {expression:?} never fires in {zone}"
                ))
            })?;
        Ok(schedule)
    }

    /// The expression as given (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The zone's IANA name.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: OffsetDateTime) -> Result<OffsetDateTime, CatalogError> {
        let zoned = self.zoned(t)?;
        let next = self
            .cron
            .find_next_occurrence(&zoned, false)
            .map_err(|e| CatalogError::Refused(format!("no next occurrence: {e}")))?;
        from_jiff(next.timestamp())
    }

    /// The latest occurrence at or before `t`, if there is one.
    pub fn latest_at_or_before(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        let zoned = self.zoned(t).ok()?;
        let previous = self.cron.find_previous_occurrence(&zoned, true).ok()?;
        from_jiff(previous.timestamp()).ok()
    }

    /// `t` on the zone's wall clock, RFC 3339 with the offset (e.g. `2026-03-29T03:00:00+02:00`).
    pub fn local(&self, t: OffsetDateTime) -> String {
        match self.zoned(t) {
            Ok(z) => z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            Err(_) => "?".to_owned(),
        }
    }

    fn zoned(&self, t: OffsetDateTime) -> Result<jiff::Zoned, CatalogError> {
        let micros = i64::try_from(t.unix_timestamp_nanos() / 1_000)
            .map_err(|_| CatalogError::Refused(format!("time {t} out of range")))?;
        let ts = jiff::Timestamp::from_microsecond(micros)
            .map_err(|e| CatalogError::Refused(format!("time {t} out of range: {e}")))?;
        Ok(ts.to_zoned(self.zone.clone()))
    }
}

fn from_jiff(ts: jiff::Timestamp) -> Result<OffsetDateTime, CatalogError> {
    OffsetDateTime::from_unix_timestamp_nanos(ts.as_nanosecond())
        .map_err(|e| CatalogError::Refused(format!("occurrence out of range: {e}")))
}

/// The job id of the run of `schedule_uid` at `occurrence` for `org`: a UUIDv5, so every
/// scheduler (and every retry) computes the same id for the same occurrence.
pub fn run_job_id(schedule_uid: Uuid, occurrence: OffsetDateTime, org: &OrgId) -> JobId {
    let name = format!(
        "{}/{}",
        occurrence.unix_timestamp_nanos() / 1_000,
        org.as_str()
    );
    JobId::from_uuid(Uuid::new_v5(&schedule_uid, name.as_bytes()))
}

/// What `coffer schedule set` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSchedule {
    /// The tenant.
    pub tenant_id: TenantId,
    /// One org, or `None` for every org the tenant has connected when an occurrence comes.
    pub org_id: Option<OrgId>,
    /// The cron expression (5 fields, or 6 with seconds).
    pub cron: String,
    /// IANA time zone the expression is read in.
    pub time_zone: String,
    /// Full or incremental.
    pub kind: ScheduleKind,
}

/// A schedule as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// Its number (what `coffer schedule remove --id` takes).
    pub schedule_id: u64,
    /// Random, minted at creation; the namespace of its runs' job ids.
    pub schedule_uid: Uuid,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The org, or `None` for every org.
    pub org_id: Option<OrgId>,
    /// The cron expression.
    pub cron: String,
    /// The IANA zone.
    pub time_zone: String,
    /// Full or incremental.
    pub kind: ScheduleKind,
    /// Whether schedulers claim its occurrences.
    pub enabled: bool,
    /// The next occurrence nobody has claimed (UTC).
    pub next_run_at: OffsetDateTime,
    /// The occurrence last claimed (UTC).
    pub last_run_at: Option<OffsetDateTime>,
    /// A job of the last claimed occurrence (the only one for a one-org schedule).
    pub last_job_id: Option<JobId>,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

impl ScheduleRecord {
    /// Its expression and zone, parsed.
    pub fn cron_schedule(&self) -> Result<CronSchedule, CatalogError> {
        CronSchedule::parse(&self.cron, &self.time_zone)
            .map_err(|e| CatalogError::Corrupt(format!("schedule {}: {e}", self.schedule_id)))
    }
}

/// One org's run of a claimed occurrence: what a scheduler publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledRun {
    /// The schedule.
    pub schedule_id: u64,
    /// The occurrence it stands for (UTC).
    pub occurrence_at: OffsetDateTime,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The org to back up.
    pub org_id: OrgId,
    /// Full or incremental.
    pub kind: ScheduleKind,
    /// The deterministic job id ([`run_job_id`]).
    pub job_id: JobId,
}

/// An occurrence this caller claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The occurrence (the latest one not after now: one catch-up run for all missed ones).
    pub occurrence_at: OffsetDateTime,
    /// Where the schedule's `next_run_at` moved to.
    pub next_run_at: OffsetDateTime,
    /// One run per org, to publish; empty when the tenant has no connected org.
    pub runs: Vec<ScheduledRun>,
}

const SCHEDULE_COLUMNS: &str = "schedule_id, schedule_uid, tenant_id, org_id, cron, time_zone, \
     kind, enabled, next_run_at, last_run_at, last_job_id, created_at, updated_at";

impl Catalog {
    /// Creates a schedule (or, with `replace`, changes schedule `replace` of the same tenant) after
    /// validating its expression, zone, tenant and org; its first occurrence is the first after
    /// `now`.
    pub async fn put_schedule(
        &self,
        schedule: &NewSchedule,
        replace: Option<u64>,
        now: OffsetDateTime,
    ) -> Result<ScheduleRecord, CatalogError> {
        let cron = CronSchedule::parse(&schedule.cron, &schedule.time_zone)?;
        if self.tenant(&schedule.tenant_id).await?.is_none() {
            return Err(CatalogError::NotFound(format!(
                "no tenant {} (see `coffer tenant create`)",
                schedule.tenant_id
            )));
        }
        if let Some(org) = &schedule.org_id
            && self.org(&schedule.tenant_id, org).await?.is_none()
        {
            return Err(CatalogError::NotFound(format!(
                "tenant {} has no org {org} (see `coffer tenant connect-org`)",
                schedule.tenant_id
            )));
        }
        let next = cron.next_after(now)?;
        let org = schedule.org_id.as_ref().map(|o| o.as_str());
        let id = match replace {
            None => {
                let done = sqlx::query(
                    "INSERT INTO schedules (schedule_uid, tenant_id, org_id, cron, time_zone, kind, \
                     enabled, next_run_at) VALUES (?, ?, ?, ?, ?, ?, TRUE, ?)",
                )
                .bind(Uuid::new_v4().to_string())
                .bind(schedule.tenant_id.as_str())
                .bind(org)
                .bind(cron.expression())
                .bind(cron.zone_name())
                .bind(schedule.kind.as_str())
                .bind(next)
                .execute(&self.pool)
                .await?;
                done.last_insert_id()
            }
            Some(id) => {
                let done = sqlx::query(
                    "UPDATE schedules SET org_id = ?, cron = ?, time_zone = ?, kind = ?, \
                     next_run_at = ? WHERE schedule_id = ? AND tenant_id = ?",
                )
                .bind(org)
                .bind(cron.expression())
                .bind(cron.zone_name())
                .bind(schedule.kind.as_str())
                .bind(next)
                .bind(id)
                .bind(schedule.tenant_id.as_str())
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(CatalogError::NotFound(format!(
                        "tenant {} has no schedule {id}",
                        schedule.tenant_id
                    )));
                }
                id
            }
        };
        self.schedule(id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("schedule {id} vanished")))
    }

    /// One schedule.
    pub async fn schedule(&self, schedule_id: u64) -> Result<Option<ScheduleRecord>, CatalogError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE schedule_id = ?"
        )))
        .bind(schedule_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    /// A tenant's schedules, by id.
    pub async fn schedules_of(
        &self,
        tenant_id: &TenantId,
    ) -> Result<Vec<ScheduleRecord>, CatalogError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE tenant_id = ? ORDER BY schedule_id"
        )))
        .bind(tenant_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// Deletes a schedule and its runs; `false` if there was none.
    pub async fn remove_schedule(&self, schedule_id: u64) -> Result<bool, CatalogError> {
        let done = sqlx::query("DELETE FROM schedules WHERE schedule_id = ?")
            .bind(schedule_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Enables or disables a schedule. Enabling starts again from the first occurrence after
    /// `now`: a paused schedule does not catch up on what it was paused for.
    pub async fn set_schedule_enabled(
        &self,
        schedule_id: u64,
        enabled: bool,
        now: OffsetDateTime,
    ) -> Result<ScheduleRecord, CatalogError> {
        let record = self
            .schedule(schedule_id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("no schedule {schedule_id}")))?;
        let next = if enabled && !record.enabled {
            record.cron_schedule()?.next_after(now)?
        } else {
            record.next_run_at
        };
        sqlx::query("UPDATE schedules SET enabled = ?, next_run_at = ? WHERE schedule_id = ?")
            .bind(enabled)
            .bind(next)
            .bind(schedule_id)
            .execute(&self.pool)
            .await?;
        self.schedule(schedule_id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("schedule {schedule_id} vanished")))
    }

    /// Enabled schedules whose next occurrence is at or before `now`, oldest first.
    pub async fn due_schedules(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<ScheduleRecord>, CatalogError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE enabled AND next_run_at <= ? \
             ORDER BY next_run_at LIMIT 500"
        )))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// Claims the due occurrence of `schedule` (as read by [`Catalog::due_schedules`]): moves
    /// `next_run_at` past `now` if it still holds the value read, and records one run per org
    /// with its deterministic job id, in one transaction. `None` when another scheduler claimed
    /// it first (or the schedule changed meanwhile). The runs come back leased to the caller.
    pub async fn claim_occurrence(
        &self,
        schedule: &ScheduleRecord,
        now: OffsetDateTime,
    ) -> Result<Option<Claim>, CatalogError> {
        if schedule.next_run_at > now {
            return Ok(None);
        }
        let cron = schedule.cron_schedule()?;
        let occurrence = cron
            .latest_at_or_before(now)
            .filter(|o| *o >= schedule.next_run_at)
            .unwrap_or(schedule.next_run_at);
        let next = cron.next_after(now)?;

        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE schedules SET next_run_at = ?, last_run_at = ? \
             WHERE schedule_id = ? AND enabled AND next_run_at = ?",
        )
        .bind(next)
        .bind(occurrence)
        .bind(schedule.schedule_id)
        .bind(schedule.next_run_at)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        // The orgs as of the claim: the set a republish uses, whatever is connected later.
        let orgs: Vec<OrgId> = match &schedule.org_id {
            Some(org) => vec![org.clone()],
            None => {
                let rows =
                    sqlx::query("SELECT org_id FROM orgs WHERE tenant_id = ? ORDER BY org_id")
                        .bind(schedule.tenant_id.as_str())
                        .fetch_all(&mut *tx)
                        .await?;
                rows.iter()
                    .map(|r| Ok(OrgId::new(r.try_get::<String, _>("org_id")?)?))
                    .collect::<Result<_, CatalogError>>()?
            }
        };
        let mut runs = Vec::with_capacity(orgs.len());
        for org in orgs {
            let job_id = run_job_id(schedule.schedule_uid, occurrence, &org);
            sqlx::query(
                "INSERT INTO schedule_runs (schedule_id, occurrence_at, org_id, job_id, claimed_at, \
                 attempt_at) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(schedule.schedule_id)
            .bind(occurrence)
            .bind(org.as_str())
            .bind(job_id.to_string())
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            runs.push(ScheduledRun {
                schedule_id: schedule.schedule_id,
                occurrence_at: occurrence,
                tenant_id: schedule.tenant_id.clone(),
                org_id: org,
                kind: schedule.kind,
                job_id,
            });
        }
        if let Some(last) = runs.last() {
            sqlx::query("UPDATE schedules SET last_job_id = ? WHERE schedule_id = ?")
                .bind(last.job_id.to_string())
                .bind(schedule.schedule_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(Claim {
            occurrence_at: occurrence,
            next_run_at: next,
            runs,
        }))
    }

    /// Runs still unpublished whose last attempt is older than `lease`, each leased to the caller
    /// by a compare-and-set on its attempt time (so two schedulers never republish one run at
    /// once), oldest first.
    pub async fn lease_unpublished_runs(
        &self,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Vec<ScheduledRun>, CatalogError> {
        let cutoff = now - lease;
        let rows = sqlx::query(
            "SELECT r.schedule_id, r.occurrence_at, r.org_id, r.job_id, r.attempt_at, \
             s.tenant_id, s.kind FROM schedule_runs r JOIN schedules s USING (schedule_id) \
             WHERE r.published_at IS NULL AND r.attempt_at <= ? \
             ORDER BY r.occurrence_at LIMIT 500",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?;
        let mut leased = Vec::new();
        for row in &rows {
            let attempt_at: OffsetDateTime = row.try_get("attempt_at")?;
            let job_id: String = row.try_get("job_id")?;
            let won = sqlx::query(
                "UPDATE schedule_runs SET attempt_at = ? \
                 WHERE job_id = ? AND published_at IS NULL AND attempt_at = ?",
            )
            .bind(now)
            .bind(&job_id)
            .bind(attempt_at)
            .execute(&self.pool)
            .await?;
            if won.rows_affected() == 0 {
                continue;
            }
            leased.push(ScheduledRun {
                schedule_id: row.try_get("schedule_id")?,
                occurrence_at: row.try_get("occurrence_at")?,
                tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id")?)?,
                org_id: OrgId::new(row.try_get::<String, _>("org_id")?)?,
                kind: row.try_get::<String, _>("kind")?.parse()?,
                job_id: job_id.parse()?,
            });
        }
        Ok(leased)
    }

    /// Gives a run's lease back after a failed publish, so the next tick (of any scheduler)
    /// retries it at once instead of after the lease.
    pub async fn release_run(
        &self,
        job_id: JobId,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE schedule_runs SET attempt_at = ? WHERE job_id = ? AND published_at IS NULL",
        )
        .bind(now - lease)
        .bind(job_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the broker's confirm of a run.
    pub async fn mark_run_published(
        &self,
        job_id: JobId,
        now: OffsetDateTime,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE schedule_runs SET published_at = ? WHERE job_id = ? AND published_at IS NULL",
        )
        .bind(now)
        .bind(job_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The runs of a schedule, oldest first, with when each was published (`None`: not yet).
    pub async fn schedule_runs(
        &self,
        schedule_id: u64,
    ) -> Result<Vec<(ScheduledRun, Option<OffsetDateTime>)>, CatalogError> {
        let rows = sqlx::query(
            "SELECT r.schedule_id, r.occurrence_at, r.org_id, r.job_id, r.published_at, \
             s.tenant_id, s.kind FROM schedule_runs r JOIN schedules s USING (schedule_id) \
             WHERE r.schedule_id = ? ORDER BY r.occurrence_at, r.org_id",
        )
        .bind(schedule_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    ScheduledRun {
                        schedule_id: row.try_get("schedule_id")?,
                        occurrence_at: row.try_get("occurrence_at")?,
                        tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id")?)?,
                        org_id: OrgId::new(row.try_get::<String, _>("org_id")?)?,
                        kind: row.try_get::<String, _>("kind")?.parse()?,
                        job_id: row.try_get::<String, _>("job_id")?.parse()?,
                    },
                    row.try_get("published_at")?,
                ))
            })
            .collect()
    }

    /// Tries to become the one publishing scheduler: takes the named lock
    /// `coffer-scheduler.{database}` without waiting, on a connection of its own that the
    /// returned [`SchedulerLeader`] keeps. `None` when another process holds it.
    pub async fn lead_scheduler(&self) -> Result<Option<SchedulerLeader>, CatalogError> {
        let mut conn = self.pool.acquire().await?.detach();
        let database: Option<String> = sqlx::query_scalar("SELECT DATABASE()")
            .fetch_one(&mut conn)
            .await?;
        let mut lock = format!("coffer-scheduler.{}", database.unwrap_or_default());
        // Lock names are limited to 64 characters; database names are at most 64.
        lock.truncate(64);
        let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
            .bind(&lock)
            .fetch_one(&mut conn)
            .await?;
        if got == Some(1) {
            Ok(Some(SchedulerLeader { conn, lock }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }
}

/// The scheduler lock, held by its own connection: dropping it (or the process dying, or the
/// connection breaking) releases the lock.
#[derive(Debug)]
pub struct SchedulerLeader {
    conn: MySqlConnection,
    lock: String,
}

impl SchedulerLeader {
    /// Whether this connection still holds the lock (asked of the server; a broken connection,
    /// or no answer within 5 s, means no).
    pub async fn still_leading(&mut self) -> bool {
        let ask = sqlx::query_scalar::<_, Option<i64>>("SELECT IS_USED_LOCK(?) = CONNECTION_ID()")
            .bind(&self.lock)
            .fetch_one(&mut self.conn);
        matches!(
            tokio::time::timeout(Duration::from_secs(5), ask).await,
            Ok(Ok(Some(1)))
        )
    }

    /// Releases the lock and closes the connection.
    pub async fn resign(mut self) {
        let _ = sqlx::query("SELECT RELEASE_LOCK(?)")
            .bind(&self.lock)
            .execute(&mut self.conn)
            .await;
        let _ = self.conn.close().await;
    }
}

fn schedule_from_row(row: &MySqlRow) -> Result<ScheduleRecord, CatalogError> {
    let uid: String = row.try_get("schedule_uid")?;
    Ok(ScheduleRecord {
        schedule_id: row.try_get("schedule_id")?,
        schedule_uid: Uuid::parse_str(&uid)
            .map_err(|e| CatalogError::Corrupt(format!("schedule uid {uid:?}: {e}")))?,
        tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id")?)?,
        org_id: row
            .try_get::<Option<String>, _>("org_id")?
            .map(OrgId::new)
            .transpose()?,
        cron: row.try_get("cron")?,
        time_zone: row.try_get("time_zone")?,
        kind: row.try_get::<String, _>("kind")?.parse()?,
        enabled: row.try_get("enabled")?,
        next_run_at: row.try_get("next_run_at")?,
        last_run_at: row.try_get("last_run_at")?,
        last_job_id: row
            .try_get::<Option<String>, _>("last_job_id")?
            .map(|s| s.parse())
            .transpose()?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
