-- Erasure (GDPR, "right to be forgotten"): a tombstone per erased record, kept for good, so
-- that no later restore brings the record back, whatever backup it reads; done_at is set once
-- every kept backup's parts were rewritten without the record's values.
CREATE TABLE erased_records (
    tenant_id   VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    org_id      VARCHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    record_id   CHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    reason      TEXT NOT NULL COMMENT 'the request (a ticket, a case number)',
    erased_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    done_at     TIMESTAMP(6) NULL COMMENT 'every kept backup rewritten without it',
    PRIMARY KEY (tenant_id, org_id, record_id),
    KEY erased_records_pending (tenant_id, org_id, done_at),
    CONSTRAINT erased_records_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (tenant_id)
) ENGINE = InnoDB;
