-- An org whose Salesforce API allowance is used up (403 REQUEST_LIMIT_EXCEEDED, or the share of
-- its daily allocation the vendor allows Coffer) is paused: its work is deferred, without
-- calling Salesforce, until paused_until, when the rolling 24-hour window has freed calls.

CREATE TABLE org_pauses (
    tenant_id    VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    org_id       VARCHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    paused_until TIMESTAMP(6) NOT NULL,
    reason       TEXT NOT NULL,
    paused_at    TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (tenant_id, org_id),
    CONSTRAINT org_pauses_org FOREIGN KEY (tenant_id, org_id) REFERENCES orgs (tenant_id, org_id) ON DELETE CASCADE
) ENGINE = InnoDB;
