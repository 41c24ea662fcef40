-- Each org's Salesforce API usage as the latest response a worker saw reported it
-- (Sforce-Limit-Info: api-usage=USED/MAX), for `coffer status`. Metrics cannot carry org ids as
-- labels, so the per-org figure lives here. Written at the end of each job that called the org;
-- a report older than the one stored is ignored, so workers finishing out of order agree.

CREATE TABLE org_api_usage (
    tenant_id VARCHAR(63) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    org_id    VARCHAR(18) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    used      BIGINT UNSIGNED NOT NULL,
    daily_max BIGINT UNSIGNED NOT NULL,
    seen_at   TIMESTAMP(6) NOT NULL,
    PRIMARY KEY (tenant_id, org_id),
    CONSTRAINT org_api_usage_org FOREIGN KEY (tenant_id, org_id) REFERENCES orgs (tenant_id, org_id) ON DELETE CASCADE
) ENGINE = InnoDB;
