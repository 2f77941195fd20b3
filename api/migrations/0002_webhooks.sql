-- Webhook endpoints, the durable delivery queue and the attempts log.
-- Booleans are BIGINT 0/1 and times Unix milliseconds, as in 0001.

CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    -- JSON array of event types; empty means every type.
    event_types TEXT NOT NULL,
    filter TEXT,
    -- Deliveries per second; NULL is unlimited.
    rate_limit BIGINT,
    -- JSON object of extra request headers.
    headers TEXT NOT NULL,
    -- Signing secrets, encrypted (never stored in clear).
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_until BIGINT,
    enabled BIGINT NOT NULL,
    disabled_reason TEXT,
    -- First failure of the current unbroken run of failures.
    failing_since BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id);

CREATE TABLE webhook_messages (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    -- The exact body sent: {"type", "timestamp", "data"}.
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhook_messages_tenant ON webhook_messages (tenant_id, created_at);

-- One row per (message, endpoint): the queue. A row is due when pending and
-- next_attempt_at has passed; an instance claims it by setting a lease.
CREATE TABLE webhook_deliveries (
    message_id TEXT NOT NULL REFERENCES webhook_messages (id) ON DELETE CASCADE,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    -- pending, delivered or failed
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    -- Position in the retry schedule (a replay starts it again).
    step BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, status, updated_at);

CREATE TABLE webhook_attempts (
    id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    attempted_at BIGINT NOT NULL,
    -- HTTP status, NULL when no answer came.
    status_code BIGINT,
    -- success, failure, timeout, connect_error, blocked
    outcome TEXT NOT NULL,
    error TEXT,
    latency_ms BIGINT NOT NULL,
    response TEXT
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, attempted_at);

-- How far `veriflow run`'s fan-out has read each pipeline output topic,
-- written in the same transaction as the messages it queued.
CREATE TABLE webhook_fanout_offsets (
    consumer TEXT NOT NULL,
    topic TEXT NOT NULL,
    kafka_partition BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (consumer, topic, kafka_partition)
);
