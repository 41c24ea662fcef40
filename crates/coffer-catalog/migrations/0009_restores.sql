-- Restores: records of a backup written back into an org (the one backed up or another).
--
-- A restore is keyed by its job, so a redelivered request finds the row its first attempt
-- created. It is planned first (the records to write, each with its action and the backup row
-- to read it from), then, in execute mode, run: each record's row goes pending -> written (with
-- the id Salesforce gave it) -> linked (its lookups rebuilt under the new ids), or failed.
-- There is no foreign key to backups: the report of a restore outlives the backups it read.

CREATE TABLE restores (
    restore_id    CHAR(36) CHARACTER SET ascii NOT NULL PRIMARY KEY,
    job_id        CHAR(36) CHARACTER SET ascii NOT NULL COMMENT 'idempotency key: one restore per job',
    tenant_id     VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    org_id        VARCHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL COMMENT 'the org the backup was taken from',
    backup_id     CHAR(36) CHARACTER SET ascii NOT NULL COMMENT 'the backup restored from (no foreign key)',
    target_org_id VARCHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL COMMENT 'the org written to',
    mode          ENUM('plan', 'execute') NOT NULL,
    state         ENUM('planning', 'planned', 'running', 'complete', 'failed') NOT NULL DEFAULT 'planning',
    request_json  TEXT NOT NULL,
    plan_json     MEDIUMTEXT NULL,
    error         TEXT NULL,
    created_at    TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at    TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    finished_at   TIMESTAMP(6) NULL,
    UNIQUE KEY restores_by_job (job_id),
    KEY restores_by_tenant (tenant_id, created_at)
) ENGINE = InnoDB;

CREATE TABLE restore_records (
    restore_id  CHAR(36) CHARACTER SET ascii NOT NULL,
    source_id   CHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL COMMENT 'the record''s id in the backup',
    sobject     VARCHAR(80) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    action      ENUM('insert', 'update', 'undelete', 'skip') NOT NULL,
    backup_id   CHAR(36) CHARACTER SET ascii NOT NULL COMMENT 'the backup holding the row to restore',
    part        INT UNSIGNED NOT NULL,
    row_no      INT UNSIGNED NOT NULL COMMENT 'data row in the part, from 1',
    target_id   CHAR(18) CHARACTER SET ascii COLLATE ascii_bin NULL COMMENT 'its id in the target org, once written',
    state       ENUM('pending', 'written', 'linked', 'failed') NOT NULL DEFAULT 'pending',
    error       TEXT NULL COMMENT 'the Salesforce error, when failed',
    updated_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (restore_id, source_id),
    KEY restore_records_by_state (restore_id, sobject, state),
    CONSTRAINT restore_records_restore FOREIGN KEY (restore_id) REFERENCES restores (restore_id) ON DELETE CASCADE
) ENGINE = InnoDB;
