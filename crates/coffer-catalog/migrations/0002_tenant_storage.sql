-- Bring your own bucket: how Coffer reaches a storage, whether a tenant's own storage is in use,
-- and the outcome of its last connection test.
--
-- tenants.storage_id stays the tenant's default storage (the vendor's bucket). A tenant may in
-- addition have its own storage (own_storage_id); new backups go there only while it is enabled,
-- and it can be enabled only after a connection test passed. Storage rows are never updated in
-- place (backups point at the row they were written with), except for their test outcome.

ALTER TABLE storages
    ADD COLUMN access ENUM('vendor', 'role', 'access_keys') NOT NULL DEFAULT 'vendor'
        COMMENT 'vendor: the vendor''s own credentials; role: AssumeRole; access_keys: the customer''s keys',
    ADD COLUMN role_arn VARCHAR(2048) CHARACTER SET ascii COLLATE ascii_bin NULL,
    ADD COLUMN access_key_id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NULL,
    ADD COLUMN secret_sealed TEXT CHARACTER SET ascii COLLATE ascii_bin NULL
        COMMENT 'secret access key, envelope-encrypted (coffer_core::sealed); never in clear',
    ADD COLUMN last_test_at TIMESTAMP(6) NULL,
    ADD COLUMN last_test_ok BOOLEAN NULL,
    ADD COLUMN last_test_report MEDIUMTEXT NULL COMMENT 'the connection test report, JSON';

ALTER TABLE tenants
    ADD COLUMN own_storage_id BIGINT UNSIGNED NULL COMMENT 'the customer''s own storage, set by coffer storage set',
    ADD COLUMN own_storage_enabled BOOLEAN NOT NULL DEFAULT FALSE,
    ADD CONSTRAINT tenants_own_storage FOREIGN KEY (own_storage_id) REFERENCES storages (storage_id);
