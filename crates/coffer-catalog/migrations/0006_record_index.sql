-- The record index and the links between records, and incremental backups.
--
-- Every record a backup wrote has a row saying where it is (the part of its sObject and its row
-- in that part), its SystemModstamp and whether it was deleted; every lookup a record had to
-- another record has a link row (child, field, parent). An incremental backup holds only what
-- changed since its base; the state of a record as of a time is its row in the newest complete
-- backup of the org, completed by then, that holds it.

ALTER TABLE backups
    ADD COLUMN base_backup_id CHAR(36) CHARACTER SET ascii NULL
        COMMENT 'incremental: the backup whose cursors it continues from' AFTER kind;

ALTER TABLE backup_tasks
    ADD COLUMN since_json TEXT NULL
        COMMENT 'incremental: read the changes after this (SystemModstamp, Id); NULL reads every record',
    ADD COLUMN cursor_json TEXT NULL
        COMMENT 'the greatest (SystemModstamp, Id) the task read; the next incremental starts there';

CREATE TABLE backup_records (
    backup_id        CHAR(36) CHARACTER SET ascii NOT NULL,
    record_id        CHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    sobject          VARCHAR(80) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    part             INT UNSIGNED NOT NULL COMMENT 'records part of the sObject in this backup',
    row_no           INT UNSIGNED NOT NULL COMMENT 'data row in the part, from 1 (the header is not counted)',
    system_modstamp  DATETIME(3) NULL COMMENT 'UTC; NULL for objects without SystemModstamp',
    deleted          BOOLEAN NOT NULL DEFAULT FALSE COMMENT 'read from the Recycle Bin (IsDeleted)',
    PRIMARY KEY (backup_id, record_id),
    KEY backup_records_by_record (record_id, backup_id),
    KEY backup_records_by_part (backup_id, sobject, part),
    CONSTRAINT backup_records_backup FOREIGN KEY (backup_id) REFERENCES backups (backup_id) ON DELETE CASCADE
) ENGINE = InnoDB;

CREATE TABLE backup_links (
    backup_id  CHAR(36) CHARACTER SET ascii NOT NULL,
    child_id   CHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    field      VARCHAR(80) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    parent_id  CHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    sobject    VARCHAR(80) CHARACTER SET ascii COLLATE ascii_bin NOT NULL COMMENT 'the child''s sObject',
    PRIMARY KEY (backup_id, child_id, field),
    KEY backup_links_by_parent (backup_id, parent_id),
    CONSTRAINT backup_links_backup FOREIGN KEY (backup_id) REFERENCES backups (backup_id) ON DELETE CASCADE
) ENGINE = InnoDB;
