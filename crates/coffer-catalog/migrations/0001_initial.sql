-- Coffer catalog, first schema.
-- Identifiers are ASCII (validated in coffer-core), stored case-sensitively (ascii_bin).

CREATE TABLE storages (
    storage_id   BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tenant_id    VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    bucket       VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    region       VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    endpoint     VARCHAR(512) NULL COMMENT 'S3-compatible endpoint; NULL means AWS',
    base_path    VARCHAR(512) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '',
    sse          ENUM('sse-kms', 'sse-s3') NOT NULL,
    kms_key_id   VARCHAR(2048) CHARACTER SET ascii COLLATE ascii_bin NULL,
    bucket_key   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY storages_by_tenant (tenant_id)
) ENGINE = InnoDB;

CREATE TABLE tenants (
    tenant_id    VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    display_name VARCHAR(255) NOT NULL,
    storage_id   BIGINT UNSIGNED NOT NULL COMMENT 'where new backups go; old backups keep theirs',
    created_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    CONSTRAINT tenants_storage FOREIGN KEY (storage_id) REFERENCES storages (storage_id)
) ENGINE = InnoDB;

CREATE TABLE orgs (
    tenant_id     VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    org_id        VARCHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    login_url     VARCHAR(512) NOT NULL,
    client_id     VARCHAR(255) NOT NULL,
    client_secret VARCHAR(512) NOT NULL,
    api_version   VARCHAR(8) CHARACTER SET ascii NOT NULL,
    created_at    TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (tenant_id, org_id),
    CONSTRAINT orgs_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (tenant_id)
) ENGINE = InnoDB;

-- One row per job message ever handled: attempts and outcome, for operators.
CREATE TABLE jobs (
    job_id       CHAR(36) CHARACTER SET ascii NOT NULL PRIMARY KEY,
    kind         VARCHAR(32) CHARACTER SET ascii NOT NULL,
    tenant_id    VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    org_id       VARCHAR(18) CHARACTER SET ascii COLLATE ascii_bin NULL,
    state        ENUM('running', 'completed', 'failed') NOT NULL,
    attempts     INT UNSIGNED NOT NULL DEFAULT 1,
    last_error   TEXT NULL,
    created_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    KEY jobs_by_tenant (tenant_id, created_at)
) ENGINE = InnoDB;

CREATE TABLE backups (
    backup_id    CHAR(36) CHARACTER SET ascii NOT NULL PRIMARY KEY,
    job_id       CHAR(36) CHARACTER SET ascii NOT NULL COMMENT 'idempotency key: one backup per job',
    tenant_id    VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    org_id       VARCHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    storage_id   BIGINT UNSIGNED NOT NULL COMMENT 'the storage this backup was written to, forever',
    kind         ENUM('full', 'incremental') NOT NULL,
    state        ENUM('running', 'complete', 'failed') NOT NULL,
    started_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    completed_at TIMESTAMP(6) NULL,
    objects      INT UNSIGNED NOT NULL DEFAULT 0,
    record_count BIGINT UNSIGNED NOT NULL DEFAULT 0,
    bytes        BIGINT UNSIGNED NOT NULL DEFAULT 0,
    last_error   TEXT NULL,
    UNIQUE KEY backups_by_job (job_id),
    KEY backups_by_org (tenant_id, org_id, started_at),
    CONSTRAINT backups_storage FOREIGN KEY (storage_id) REFERENCES storages (storage_id)
) ENGINE = InnoDB;

CREATE TABLE backup_objects (
    backup_id    CHAR(36) CHARACTER SET ascii NOT NULL,
    object_key   VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    kind         ENUM('records', 'manifest', 'file') NOT NULL,
    sobject      VARCHAR(80) CHARACTER SET ascii COLLATE ascii_bin NULL,
    part         INT UNSIGNED NULL,
    size_bytes   BIGINT UNSIGNED NOT NULL,
    sha256       CHAR(64) CHARACTER SET ascii NOT NULL,
    row_count    BIGINT UNSIGNED NOT NULL DEFAULT 0,
    created_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (backup_id, object_key),
    CONSTRAINT backup_objects_backup FOREIGN KEY (backup_id) REFERENCES backups (backup_id)
) ENGINE = InnoDB;
