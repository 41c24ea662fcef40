-- Retention: a policy per tenant (org_id '' is the tenant's default) and per org (wins over
-- the tenant's), and legal holds that stop all deletion under them: on a tenant (org_id and
-- backup_id ''), an org (backup_id '') or one backup. A released hold stays, for the record.
CREATE TABLE retention_policies (
    tenant_id   VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    org_id      VARCHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '' COMMENT '''''= the tenant''s default',
    policy_json TEXT NOT NULL COMMENT 'coffer_core::retention::Policy',
    updated_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (tenant_id, org_id),
    CONSTRAINT retention_policies_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (tenant_id)
) ENGINE = InnoDB;

CREATE TABLE legal_holds (
    hold_id     BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tenant_id   VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    org_id      VARCHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '',
    backup_id   VARCHAR(36) CHARACTER SET ascii NOT NULL DEFAULT '',
    reason      TEXT NOT NULL,
    placed_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    released_at TIMESTAMP(6) NULL,
    KEY legal_holds_by_tenant (tenant_id, released_at),
    CONSTRAINT legal_holds_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (tenant_id)
) ENGINE = InnoDB;
