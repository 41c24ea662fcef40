-- Backup schedules: a cron expression in an IANA time zone per tenant (and org, or every org),
-- and one row per (schedule, occurrence, org) that the scheduler claimed and must publish.
--
-- Times are DATETIME(6) in UTC (no session time zone conversion, no 2038 limit).
--
-- Exactly-once: a scheduler claims an occurrence with a compare-and-set on
-- schedules.next_run_at, and in the same transaction inserts the schedule_runs rows whose job ids
-- are derived from (schedule uid, occurrence, org). A run is published after the claim commits and
-- marked published after the broker's confirm; an unpublished run is published again, with the
-- same job id, on a later tick.

CREATE TABLE schedules (
    schedule_id  BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    schedule_uid CHAR(36) CHARACTER SET ascii NOT NULL
        COMMENT 'random, minted at creation: the namespace of the job ids of its runs (ids may be reused after a restart, uids never)',
    tenant_id    VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    org_id       VARCHAR(18) CHARACTER SET ascii COLLATE ascii_bin NULL
        COMMENT 'NULL: every org the tenant has connected when an occurrence is claimed',
    cron         VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    time_zone    VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL COMMENT 'IANA name',
    kind         ENUM('full', 'incremental') NOT NULL,
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    next_run_at  DATETIME(6) NOT NULL COMMENT 'UTC: the next occurrence not yet claimed',
    last_run_at  DATETIME(6) NULL COMMENT 'UTC: the occurrence last claimed',
    last_job_id  CHAR(36) CHARACTER SET ascii NULL COMMENT 'a job of the last claimed occurrence',
    created_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    UNIQUE KEY schedules_by_uid (schedule_uid),
    KEY schedules_due (enabled, next_run_at),
    KEY schedules_by_tenant (tenant_id, org_id),
    CONSTRAINT schedules_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (tenant_id)
        ON DELETE CASCADE,
    CONSTRAINT schedules_org FOREIGN KEY (tenant_id, org_id) REFERENCES orgs (tenant_id, org_id)
        ON DELETE CASCADE
) ENGINE = InnoDB;

-- The idempotency rows: one per org of a claimed occurrence.
CREATE TABLE schedule_runs (
    schedule_id   BIGINT UNSIGNED NOT NULL,
    occurrence_at DATETIME(6) NOT NULL COMMENT 'UTC: the occurrence this run stands for',
    org_id        VARCHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    job_id        CHAR(36) CHARACTER SET ascii NOT NULL COMMENT 'UUIDv5 of (schedule uid, occurrence, org)',
    claimed_at    DATETIME(6) NOT NULL,
    attempt_at    DATETIME(6) NOT NULL COMMENT 'UTC: when a scheduler last set out to publish it (a lease)',
    published_at  DATETIME(6) NULL COMMENT 'UTC: when the broker confirmed it; NULL until then',
    PRIMARY KEY (schedule_id, occurrence_at, org_id),
    UNIQUE KEY schedule_runs_by_job (job_id),
    KEY schedule_runs_unpublished (published_at, attempt_at),
    CONSTRAINT schedule_runs_schedule FOREIGN KEY (schedule_id) REFERENCES schedules (schedule_id)
        ON DELETE CASCADE
) ENGINE = InnoDB;
