-- One schema for SQLite and PostgreSQL: only types both spell the same way.
-- Times are Unix milliseconds (BIGINT); structured settings are JSON text, owned
-- and validated by the API (the database never interprets them).

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    settings TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE tenant_domains (
    domain TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE
);
CREATE INDEX tenant_domains_tenant ON tenant_domains (tenant_id);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE template_overrides (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    service TEXT NOT NULL,
    locale TEXT NOT NULL,
    source TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, service, locale)
);

CREATE TABLE usage_counters (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    counter TEXT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, counter)
);
