-- Fan-out: a backup is planned into tasks (one per sObject), any worker runs any task, and the
-- last one to finish finalises the backup. A task is owned through a lease that its worker
-- renews while it runs; an expired lease means its worker died, and another may take over.

CREATE TABLE backup_tasks (
    backup_id    CHAR(36) CHARACTER SET ascii NOT NULL,
    task_no      INT UNSIGNED NOT NULL,
    sobject      VARCHAR(80) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    describe_json MEDIUMTEXT NOT NULL COMMENT 'the describe the task reads with; the manifest''s schema snapshot',
    state        ENUM('pending', 'running', 'done') NOT NULL DEFAULT 'pending',
    lease_owner  VARCHAR(128) NULL,
    lease_until  TIMESTAMP(6) NULL,
    attempts     INT UNSIGNED NOT NULL DEFAULT 0,
    objects      INT UNSIGNED NOT NULL DEFAULT 0,
    records      BIGINT UNSIGNED NOT NULL DEFAULT 0,
    updated_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (backup_id, task_no),
    UNIQUE KEY backup_tasks_object (backup_id, sobject),
    CONSTRAINT backup_tasks_backup FOREIGN KEY (backup_id) REFERENCES backups (backup_id) ON DELETE CASCADE
) ENGINE = InnoDB;
