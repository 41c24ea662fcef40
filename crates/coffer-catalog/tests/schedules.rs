//! Schedules: occurrences across daylight saving changes, refused expressions and zones, and
//! claims that happen once however many schedulers race (against a real MariaDB; each test
//! migrates its own fresh database).

mod common;

use common::fresh_catalog;
use secrecy::SecretString;
use std::time::Duration;

use coffer_catalog::schedules::run_job_id;
use coffer_catalog::{
    Catalog, CatalogError, CronSchedule, NewSchedule, NewStorage, OrgRecord, ScheduleKind, Sse,
    StorageAccess,
};
use coffer_core::layout::BasePath;
use coffer_core::{OrgId, TenantId};
use time::OffsetDateTime;
use time::macros::datetime;

const ORG_1: &str = "00D000000000001AAA";
const ORG_2: &str = "00D000000000002AAA";

/// Tenant `acme` with two connected orgs.
async fn tenant_with_orgs(catalog: &Catalog) -> TenantId {
    let tenant = TenantId::new("acme").expect("valid");
    let storage = NewStorage {
        bucket: "bucket-1".to_owned(),
        region: "us-east-1".to_owned(),
        endpoint: None,
        base_path: BasePath::new("coffer").expect("valid"),
        sse: Sse::S3,
        access: StorageAccess::Vendor,
    };
    catalog
        .put_tenant(&tenant, "Acme", &storage)
        .await
        .expect("tenant");
    for org in [ORG_1, ORG_2] {
        catalog
            .put_org(&OrgRecord {
                tenant_id: tenant.clone(),
                org_id: OrgId::new(org).expect("valid"),
                login_url: "http://127.0.0.1:1".to_owned(),
                client_id: "id".to_owned(),
                client_secret: SecretString::from("secret".to_owned()),
                api_version: "62.0".to_owned(),
            })
            .await
            .expect("org");
    }
    tenant
}

fn schedule(tenant: &TenantId, org: Option<&str>, cron: &str, tz: &str) -> NewSchedule {
    NewSchedule {
        tenant_id: tenant.clone(),
        org_id: org.map(|o| OrgId::new(o).expect("valid")),
        cron: cron.to_owned(),
        time_zone: tz.to_owned(),
        kind: ScheduleKind::Full,
    }
}

fn next(cron: &CronSchedule, after: OffsetDateTime) -> OffsetDateTime {
    cron.next_after(after).expect("an occurrence")
}

#[test]
fn a_daily_time_in_europe_paris_follows_the_wall_clock_across_both_changes() {
    let cron = CronSchedule::parse("30 2 * * *", "Europe/Paris").expect("valid");
    // Winter: 02:30 CET is 01:30 UTC.
    assert_eq!(
        next(&cron, datetime!(2026-03-27 12:00 UTC)),
        datetime!(2026-03-28 01:30 UTC)
    );
    // Sunday 29 March 2026, clocks go 02:00 -> 03:00: 02:30 does not exist, the backup runs at
    // the first instant after the gap (03:00 CEST = 01:00 UTC) instead of being skipped.
    let in_gap = next(&cron, datetime!(2026-03-28 01:30 UTC));
    assert_eq!(in_gap, datetime!(2026-03-29 01:00 UTC));
    assert_eq!(cron.local(in_gap), "2026-03-29T03:00:00+02:00");
    // Summer: 02:30 CEST is 00:30 UTC.
    assert_eq!(next(&cron, in_gap), datetime!(2026-03-30 00:30 UTC));
    // Sunday 25 October 2026, clocks go 03:00 -> 02:00: 02:30 happens twice (00:30 and 01:30
    // UTC); the backup runs once, at the first.
    let first = next(&cron, datetime!(2026-10-24 12:00 UTC));
    assert_eq!(first, datetime!(2026-10-25 00:30 UTC));
    assert_eq!(cron.local(first), "2026-10-25T02:30:00+02:00");
    assert_eq!(next(&cron, first), datetime!(2026-10-26 01:30 UTC));
}

#[test]
fn new_york_mornings_move_an_hour_in_utc_and_intervals_skip_the_gap() {
    let cron = CronSchedule::parse("0 9 * * *", "America/New_York").expect("valid");
    // 9:00 EST is 14:00 UTC; from Sunday 8 March 2026, 9:00 EDT is 13:00 UTC.
    let saturday = next(&cron, datetime!(2026-03-07 00:00 UTC));
    assert_eq!(saturday, datetime!(2026-03-07 14:00 UTC));
    assert_eq!(next(&cron, saturday), datetime!(2026-03-08 13:00 UTC));

    // Every 30 minutes: 01:30 EST is followed by 03:00 EDT (an hour of wall clock that never
    // happened is not made up for), i.e. 30 real minutes later.
    let every = CronSchedule::parse("*/30 * * * *", "America/New_York").expect("valid");
    assert_eq!(
        next(&every, datetime!(2026-03-08 06:30 UTC)),
        datetime!(2026-03-08 07:00 UTC)
    );
    assert_eq!(
        every.local(datetime!(2026-03-08 07:00 UTC)),
        "2026-03-08T03:00:00-04:00"
    );
    // Seconds are accepted as a sixth, leading field.
    let seconds = CronSchedule::parse("*/5 * * * * *", "UTC").expect("valid");
    assert_eq!(
        next(&seconds, datetime!(2026-01-01 00:00:01 UTC)),
        datetime!(2026-01-01 00:00:05 UTC)
    );
}

#[test]
fn invalid_expressions_and_zones_are_refused_naming_the_problem() {
    for (expr, zone, needle) in [
        (
            "61 * * * *",
            "UTC",
            "invalid cron expression \"61 * * * *\"",
        ),
        ("* * *", "UTC", "invalid cron expression \"* * *\""),
        ("0 2 * * * * * *", "UTC", "invalid cron expression"),
        ("0 0 30 2 *", "UTC", "never fires"),
        ("0 2 * * *", "Mars/Base", "unknown time zone \"Mars/Base\""),
        ("0 2 * * *", "", "unknown time zone \"\""),
    ] {
        match CronSchedule::parse(expr, zone) {
            Err(CatalogError::Refused(message)) => assert!(
                message.contains(needle),
                "{expr:?} in {zone:?}: {message:?} lacks {needle:?}"
            ),
            other => panic!("{expr:?} in {zone:?} should be refused, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn put_validates_and_list_remove_enable_work() {
    let db = fresh_catalog().await;
    let catalog = &db.catalog;
    let tenant = tenant_with_orgs(catalog).await;
    let now = datetime!(2026-03-28 12:00 UTC);

    let refused = catalog
        .put_schedule(&schedule(&tenant, None, "61 * * * *", "UTC"), None, now)
        .await;
    assert!(
        matches!(refused, Err(CatalogError::Refused(_))),
        "{refused:?}"
    );
    let refused = catalog
        .put_schedule(
            &schedule(&tenant, None, "0 2 * * *", "Mars/Base"),
            None,
            now,
        )
        .await;
    assert!(
        matches!(refused, Err(CatalogError::Refused(_))),
        "{refused:?}"
    );
    let unknown_org = catalog
        .put_schedule(
            &schedule(&tenant, Some("00D000000000009AAA"), "0 2 * * *", "UTC"),
            None,
            now,
        )
        .await;
    assert!(
        matches!(unknown_org, Err(CatalogError::NotFound(_))),
        "{unknown_org:?}"
    );
    assert!(
        catalog
            .schedules_of(&tenant)
            .await
            .expect("list")
            .is_empty()
    );

    let s = catalog
        .put_schedule(
            &schedule(&tenant, Some(ORG_1), "30 2 * * *", "Europe/Paris"),
            None,
            now,
        )
        .await
        .expect("put");
    assert_eq!(s.next_run_at, datetime!(2026-03-29 01:00 UTC));
    assert!(s.enabled);
    let changed = catalog
        .put_schedule(
            &schedule(&tenant, None, "0 4 * * *", "UTC"),
            Some(s.schedule_id),
            now,
        )
        .await
        .expect("replace");
    assert_eq!(changed.schedule_id, s.schedule_id);
    assert_eq!(changed.schedule_uid, s.schedule_uid);
    assert_eq!(changed.org_id, None);
    assert_eq!(changed.next_run_at, datetime!(2026-03-29 04:00 UTC));

    let off = catalog
        .set_schedule_enabled(s.schedule_id, false, now)
        .await
        .expect("disable");
    assert!(!off.enabled);
    let later = datetime!(2026-04-10 12:00 UTC);
    assert!(catalog.due_schedules(later).await.expect("due").is_empty());
    // Enabled again, it starts from the next occurrence: no catch-up for a pause.
    let on = catalog
        .set_schedule_enabled(s.schedule_id, true, later)
        .await
        .expect("enable");
    assert_eq!(on.next_run_at, datetime!(2026-04-11 04:00 UTC));

    assert_eq!(catalog.schedules_of(&tenant).await.expect("list").len(), 1);
    assert!(
        catalog
            .remove_schedule(s.schedule_id)
            .await
            .expect("remove")
    );
    assert!(
        !catalog
            .remove_schedule(s.schedule_id)
            .await
            .expect("remove")
    );
    assert!(
        catalog
            .schedules_of(&tenant)
            .await
            .expect("list")
            .is_empty()
    );
    db.drop().await;
}

#[tokio::test]
async fn racing_schedulers_claim_each_occurrence_once_with_deterministic_job_ids() {
    let db = fresh_catalog().await;
    let catalog = &db.catalog;
    let tenant = tenant_with_orgs(catalog).await;
    let created = datetime!(2026-03-28 12:00:30 UTC);
    let s = catalog
        .put_schedule(&schedule(&tenant, None, "* * * * *", "UTC"), None, created)
        .await
        .expect("put");
    assert_eq!(s.next_run_at, datetime!(2026-03-28 12:01 UTC));

    for minute in 1..=3u8 {
        let now = datetime!(2026-03-28 12:00:10 UTC) + time::Duration::minutes(minute.into());
        let due = catalog.due_schedules(now).await.expect("due");
        assert_eq!(due.len(), 1);
        let mut racers = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (catalog, due) = (catalog.clone(), due[0].clone());
            racers.spawn(async move { catalog.claim_occurrence(&due, now).await });
        }
        let claims: Vec<_> = racers
            .join_all()
            .await
            .into_iter()
            .filter_map(|c| c.expect("claim"))
            .collect();
        assert_eq!(claims.len(), 1, "minute {minute}: {claims:?}");
        let claim = &claims[0];
        let occurrence = datetime!(2026-03-28 12:00 UTC) + time::Duration::minutes(minute.into());
        assert_eq!(claim.occurrence_at, occurrence);
        // Every org of the tenant, each with the job id anyone would derive.
        let orgs: Vec<_> = claim.runs.iter().map(|r| r.org_id.to_string()).collect();
        assert_eq!(orgs, [ORG_1, ORG_2]);
        for run in &claim.runs {
            assert_eq!(
                run.job_id,
                run_job_id(s.schedule_uid, occurrence, &run.org_id)
            );
        }
        // The record read before the claim is stale now: claiming with it again does nothing.
        assert!(
            catalog
                .claim_occurrence(&due[0], now)
                .await
                .expect("claim")
                .is_none()
        );
    }
    let runs = catalog.schedule_runs(s.schedule_id).await.expect("runs");
    assert_eq!(runs.len(), 6, "3 occurrences x 2 orgs");
    let record = catalog
        .schedule(s.schedule_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(record.last_run_at, Some(datetime!(2026-03-28 12:03 UTC)));
    assert_eq!(record.last_job_id, Some(runs[5].0.job_id));
    assert_eq!(record.next_run_at, datetime!(2026-03-28 12:04 UTC));
    db.drop().await;
}

#[tokio::test]
async fn a_scheduler_back_after_days_publishes_one_catch_up_run_not_a_burst() {
    let db = fresh_catalog().await;
    let catalog = &db.catalog;
    let tenant = tenant_with_orgs(catalog).await;
    let s = catalog
        .put_schedule(
            &schedule(&tenant, Some(ORG_1), "0 * * * *", "Europe/Paris"),
            None,
            datetime!(2026-03-28 12:10 UTC),
        )
        .await
        .expect("put");
    // Three days and 70-odd hourly occurrences later:
    let now = datetime!(2026-03-31 09:20 UTC);
    let due = catalog.due_schedules(now).await.expect("due");
    let claim = catalog
        .claim_occurrence(&due[0], now)
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(
        claim.occurrence_at,
        datetime!(2026-03-31 09:00 UTC),
        "the latest missed one"
    );
    assert_eq!(claim.next_run_at, datetime!(2026-03-31 10:00 UTC));
    assert_eq!(claim.runs.len(), 1);
    assert!(catalog.due_schedules(now).await.expect("due").is_empty());
    assert_eq!(
        catalog
            .schedule_runs(s.schedule_id)
            .await
            .expect("runs")
            .len(),
        1
    );
    db.drop().await;
}

#[tokio::test]
async fn an_unpublished_run_is_leased_to_one_scheduler_and_republished_with_its_job_id() {
    let db = fresh_catalog().await;
    let catalog = &db.catalog;
    let tenant = tenant_with_orgs(catalog).await;
    let lease = Duration::from_secs(60);
    catalog
        .put_schedule(
            &schedule(&tenant, Some(ORG_2), "0 2 * * *", "UTC"),
            None,
            datetime!(2026-03-28 12:00 UTC),
        )
        .await
        .expect("put");
    let now = datetime!(2026-03-29 02:00:03 UTC);
    let due = catalog.due_schedules(now).await.expect("due");
    let claim = catalog
        .claim_occurrence(&due[0], now)
        .await
        .expect("claim")
        .expect("claimed");
    let job = claim.runs[0].job_id;
    // Freshly claimed runs are leased to their claimer: nobody else republishes them meanwhile.
    assert!(
        catalog
            .lease_unpublished_runs(now, lease)
            .await
            .expect("lease")
            .is_empty()
    );
    // The claimer's publish failed: it gives the lease back, and exactly one of two schedulers
    // gets the run, with the same job id.
    catalog.release_run(job, now, lease).await.expect("release");
    let retry_at = now + Duration::from_secs(10);
    let (a, b) = tokio::join!(
        catalog.lease_unpublished_runs(retry_at, lease),
        catalog.lease_unpublished_runs(retry_at, lease)
    );
    let leased: Vec<_> = a
        .expect("lease")
        .into_iter()
        .chain(b.expect("lease"))
        .collect();
    assert_eq!(leased.len(), 1, "{leased:?}");
    assert_eq!(leased[0].job_id, job);
    assert_eq!(leased[0].org_id.as_str(), ORG_2);
    // A scheduler that died while publishing: the lease runs out and the run comes back.
    let much_later = retry_at + lease;
    let again = catalog
        .lease_unpublished_runs(much_later, lease)
        .await
        .expect("lease");
    assert_eq!(again.iter().map(|r| r.job_id).collect::<Vec<_>>(), [job]);
    // Confirmed and marked: never again.
    catalog
        .mark_run_published(job, much_later)
        .await
        .expect("mark");
    let after = much_later + lease + lease;
    assert!(
        catalog
            .lease_unpublished_runs(after, lease)
            .await
            .expect("lease")
            .is_empty()
    );
    let runs = catalog
        .schedule_runs(claim.runs[0].schedule_id)
        .await
        .expect("runs");
    assert_eq!(runs[0].1, Some(much_later));
    db.drop().await;
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_dropped_connection_hands_over() {
    let db = fresh_catalog().await;
    let catalog = &db.catalog;
    let mut leader = catalog
        .lead_scheduler()
        .await
        .expect("lead")
        .expect("first leads");
    assert!(leader.still_leading().await);
    assert!(
        catalog.lead_scheduler().await.expect("lead").is_none(),
        "second must wait"
    );
    leader.resign().await;
    let mut second = catalog
        .lead_scheduler()
        .await
        .expect("lead")
        .expect("second leads");
    assert!(second.still_leading().await);

    // The leader's connection is killed (as when its process dies): the server releases the
    // lock, the old leader notices, and another takes over.
    assert!(catalog.lead_scheduler().await.expect("lead").is_none());
    let holder: Option<i64> =
        sqlx::query_scalar("SELECT IS_USED_LOCK(CONCAT('coffer-scheduler.', DATABASE()))")
            .fetch_one(catalog.pool())
            .await
            .expect("holder");
    let conn_id = holder.expect("someone holds the lock");
    sqlx::query(sqlx::AssertSqlSafe(format!("KILL {conn_id}")))
        .execute(catalog.pool())
        .await
        .expect("kill");
    assert!(
        !second.still_leading().await,
        "a killed connection no longer leads"
    );
    let mut third = catalog
        .lead_scheduler()
        .await
        .expect("lead")
        .expect("third leads");
    assert!(third.still_leading().await);
    third.resign().await;
    db.drop().await;
}
