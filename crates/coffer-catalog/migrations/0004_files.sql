-- Files (ContentVersion, Attachment and Document bodies), content-addressed: each distinct body
-- is stored once per org and storage at files/{sha256[0..2]}/{sha256}, and every backup holds a
-- reference row per record pointing at the body it saw.

-- One row per body stored in a bucket, written only once the object is durable. Keyed by storage
-- too: a tenant that moves to another storage writes its bodies there again (a backup is read
-- from its own storage forever).
CREATE TABLE file_objects (
    tenant_id    VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    org_id       VARCHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    storage_id   BIGINT UNSIGNED NOT NULL,
    sha256       CHAR(64) CHARACTER SET ascii NOT NULL,
    object_key   VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    size_bytes   BIGINT UNSIGNED NOT NULL,
    md5          CHAR(32) CHARACTER SET ascii NOT NULL COMMENT 'lowercase hex, as ContentVersion.Checksum',
    created_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (tenant_id, org_id, storage_id, sha256),
    KEY file_objects_by_md5 (tenant_id, org_id, storage_id, md5, size_bytes),
    CONSTRAINT file_objects_storage FOREIGN KEY (storage_id) REFERENCES storages (storage_id)
) ENGINE = InnoDB;

-- One row per file record per backup: which body the record had when the backup read it.
CREATE TABLE backup_files (
    backup_id           CHAR(36) CHARACTER SET ascii NOT NULL,
    source              VARCHAR(40) CHARACTER SET ascii COLLATE ascii_bin NOT NULL COMMENT 'ContentVersion, Attachment or Document',
    record_id           CHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    content_document_id CHAR(18) CHARACTER SET ascii COLLATE ascii_bin NULL,
    parent_id           CHAR(18) CHARACTER SET ascii COLLATE ascii_bin NULL COMMENT 'Attachment.ParentId, Document.FolderId',
    sha256              CHAR(64) CHARACTER SET ascii NOT NULL,
    size_bytes          BIGINT UNSIGNED NOT NULL,
    md5                 CHAR(32) CHARACTER SET ascii NOT NULL,
    source_modstamp     VARCHAR(40) CHARACTER SET ascii NULL COMMENT 'SystemModstamp as Salesforce gave it',
    PRIMARY KEY (backup_id, source, record_id),
    KEY backup_files_by_record (source, record_id),
    KEY backup_files_by_sha256 (sha256),
    CONSTRAINT backup_files_backup FOREIGN KEY (backup_id) REFERENCES backups (backup_id)
) ENGINE = InnoDB;
