-- Retention sweeps: the stored plan, the marks on the backups a plan deletes, and the fence that
-- keeps backups out of an org while the janitor deletes its unreferenced file bodies.
--
-- A backup goes: marked (still restorable; a later plan that keeps it lifts the mark) ->
-- after the grace period, 'expiring' (its state in backups: no longer restorable, never
-- revived by a replayed job) with the mark 'deleting' -> objects deleted from its storage,
-- catalog rows removed -> the backups row is gone and the mark, 'deleted', stays as the record
-- of what went, when and why.

ALTER TABLE backups
    MODIFY state ENUM('running', 'complete', 'failed', 'expiring') NOT NULL;

CREATE TABLE retention_sweeps (
    sweep_id    BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tenant_id   VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    org_id      VARCHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    dry_run     BOOLEAN NOT NULL,
    plan_json   MEDIUMTEXT NOT NULL COMMENT 'every decision with its reasons',
    created_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY retention_sweeps_by_org (tenant_id, org_id, sweep_id)
) ENGINE = InnoDB;

-- No foreign key to backups: the mark outlives the backup it records.
CREATE TABLE retention_marks (
    backup_id       CHAR(36) CHARACTER SET ascii NOT NULL PRIMARY KEY,
    tenant_id       VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    org_id          VARCHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    storage_id      BIGINT UNSIGNED NOT NULL,
    sweep_id        BIGINT UNSIGNED NOT NULL COMMENT 'the sweep that marked it',
    reason_json     TEXT NOT NULL COMMENT 'coffer_core::retention::DeleteReason',
    stage           ENUM('marked', 'deleting', 'deleted') NOT NULL DEFAULT 'marked',
    marked_at       TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    delete_after    TIMESTAMP(6) NOT NULL,
    objects_deleted BIGINT UNSIGNED NOT NULL DEFAULT 0,
    last_error      TEXT NULL COMMENT 'why the last attempt to delete it stopped',
    deleted_at      TIMESTAMP(6) NULL,
    KEY retention_marks_by_org (tenant_id, org_id, stage)
) ENGINE = InnoDB;

ALTER TABLE orgs
    ADD COLUMN files_sweep_until TIMESTAMP(6) NULL
        COMMENT 'while in the future, the janitor deletes unreferenced file bodies: no backup starts',
    ADD COLUMN files_swept_by VARCHAR(128) NULL;
