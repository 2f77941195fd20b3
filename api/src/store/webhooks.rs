//! Webhook endpoints, the durable delivery queue and the attempts log.
//!
//! The queue is the `webhook_deliveries` table: one row per (message, endpoint).
//! Instances claim due rows by writing a lease (owner + expiry) in one UPDATE
//! whose WHERE re-checks the lease, so two instances sharing a PostgreSQL
//! database never claim the same row while the lease holds (PostgreSQL re-checks
//! the WHERE on the row it is about to update; SQLite serialises writers).
//! Everything that changes a delivery also clears its lease.

use sqlx::{AssertSqlSafe, Row};

use super::{Result, Store};

#[derive(Debug, Clone)]
pub struct EndpointRow {
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    pub description: String,
    /// Empty: every type.
    pub event_types: Vec<String>,
    pub filter: Option<String>,
    pub rate_limit: Option<i64>,
    pub headers: Vec<(String, String)>,
    /// Encrypted (see `webhooks::crypto`).
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<i64>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const ENDPOINT_COLUMNS: &str = "id, tenant_id, url, description, event_types, filter, rate_limit, \
     headers, secret, previous_secret, previous_secret_until, enabled, disabled_reason, \
     failing_since, created_at, updated_at";

/// A message to queue, with the endpoints it goes to.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub tenant_id: String,
    pub event_type: String,
    pub payload: String,
    pub endpoints: Vec<String>,
}

/// How far a fan-out consumer has read one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOutProgress {
    pub consumer: String,
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// A delivery this instance has leased.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub message_id: String,
    pub endpoint_id: String,
    pub tenant_id: String,
    pub attempts: i64,
    pub step: i64,
}

#[derive(Debug, Clone)]
pub struct MessageRow {
    pub id: String,
    pub event_type: String,
    pub payload: String,
    pub created_at: i64,
}

/// Where one message stands at one endpoint.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub message_id: String,
    pub endpoint_id: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub updated_at: i64,
}

/// What happened to a delivery after one attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub id: String,
    pub message_id: String,
    pub endpoint_id: String,
    pub tenant_id: String,
    pub attempted_at: i64,
    pub status_code: Option<i64>,
    /// `success`, `failure`, `timeout`, `connect_error` or `blocked`.
    pub outcome: String,
    pub error: Option<String>,
    pub latency_ms: i64,
    pub response: Option<String>,
}

/// The delivery's next state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextState {
    Delivered,
    /// Try again at this time, at this schedule step.
    Retry {
        at: i64,
        step: i64,
    },
    Failed,
}

#[derive(Debug, Clone)]
pub struct OutcomeWrite {
    pub attempt: AttemptRecord,
    pub next: NextState,
}

impl Store {
    pub async fn insert_endpoint(&self, e: &EndpointRow) -> Result<()> {
        let sql = format!(
            "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        );
        bind_endpoint(sqlx::query(AssertSqlSafe(sql)), e)?
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Rewrites every mutable column of an endpoint. The parameters are the
    /// INSERT's; `created_at` ($15) is never rewritten, only matched.
    pub async fn update_endpoint(&self, e: &EndpointRow) -> Result<()> {
        let sql = "UPDATE webhook_endpoints SET url = $3, description = $4, event_types = $5, \
             filter = $6, rate_limit = $7, headers = $8, secret = $9, previous_secret = $10, \
             previous_secret_until = $11, enabled = $12, disabled_reason = $13, \
             failing_since = $14, updated_at = $16 \
             WHERE id = $1 AND tenant_id = $2 AND created_at = $15";
        bind_endpoint(sqlx::query(sql), e)?
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A tenant's endpoint (another tenant's id is simply not found).
    pub async fn endpoint(&self, tenant: &str, id: &str) -> Result<Option<EndpointRow>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2"
        )))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    /// Any endpoint by id, for the delivery engine.
    pub async fn endpoint_by_id(&self, id: &str) -> Result<Option<EndpointRow>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    pub async fn endpoints_of(&self, tenant: &str) -> Result<Vec<EndpointRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 \
             ORDER BY created_at, id"
        )))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    /// Enabled endpoints of every tenant, for fanning out events.
    pub async fn enabled_endpoints(&self) -> Result<Vec<EndpointRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE enabled = 1"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    /// Deletes an endpoint with its queue and attempts; false when absent.
    pub async fn delete_endpoint(&self, tenant: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Disables an endpoint (if enabled); true when this call disabled it.
    pub async fn disable_endpoint(&self, id: &str, reason: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $2, updated_at = $3 \
             WHERE id = $1 AND enabled = 1",
        )
        .bind(id)
        .bind(reason)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Queues messages and their deliveries in one transaction. Idempotent: a
    /// message id already queued (a replayed Kafka record) adds nothing.
    ///
    /// `progress` records, in the same transaction, how far a fan-out consumer
    /// has read: `(consumer, topic, partition, next offset)`.
    pub async fn enqueue(
        &self,
        messages: &[NewMessage],
        now: i64,
        progress: &[FanOutProgress],
    ) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        for p in progress {
            sqlx::query(
                "INSERT INTO webhook_fanout_offsets (consumer, topic, kafka_partition, next_offset) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (consumer, topic, kafka_partition) \
                 DO UPDATE SET next_offset = excluded.next_offset",
            )
            .bind(&p.consumer)
            .bind(&p.topic)
            .bind(i64::from(p.partition))
            .bind(p.next_offset)
            .execute(&mut *tx)
            .await?;
        }
        // Multi-row statements: one round trip per chunk, not per row.
        let mut fresh: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&NewMessage> = messages.iter().filter(|m| seen.insert(&m.id)).collect();
        for chunk in unique.chunks(50) {
            let sql = format!(
                "INSERT INTO webhook_messages (id, tenant_id, event_type, payload, created_at) \
                 VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
                rows_of_placeholders(chunk.len(), 5)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for m in chunk {
                query = query
                    .bind(&m.id)
                    .bind(&m.tenant_id)
                    .bind(&m.event_type)
                    .bind(&m.payload)
                    .bind(now);
            }
            for row in query.fetch_all(&mut *tx).await? {
                fresh.insert(row.try_get(0)?);
            }
        }
        // Deliveries only for messages new to the queue: an event published
        // again (a replayed Kafka record) queues nothing.
        let deliveries: Vec<(&NewMessage, &String)> = unique
            .iter()
            .filter(|m| fresh.contains(&m.id))
            .flat_map(|m| m.endpoints.iter().map(move |e| (*m, e)))
            .collect();
        let mut queued = 0;
        for chunk in deliveries.chunks(100) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p = 2 + 3 * i;
                    format!(
                        "(${p}, ${}, ${}, 'pending', 0, 0, $1, $1, $1)",
                        p + 1,
                        p + 2
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO webhook_deliveries (message_id, endpoint_id, tenant_id, status, \
                 attempts, step, next_attempt_at, created_at, updated_at) VALUES {} \
                 ON CONFLICT (message_id, endpoint_id) DO NOTHING",
                rows.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for (m, endpoint) in chunk {
                query = query.bind(&m.id).bind(*endpoint).bind(&m.tenant_id);
            }
            queued += query.execute(&mut *tx).await?.rows_affected() as usize;
        }
        tx.commit().await?;
        Ok(queued)
    }

    /// Where a fan-out consumer left off, per partition of `topic`.
    pub async fn fanout_offsets(&self, consumer: &str, topic: &str) -> Result<Vec<(i32, i64)>> {
        let rows = sqlx::query(
            "SELECT kafka_partition, next_offset FROM webhook_fanout_offsets \
             WHERE consumer = $1 AND topic = $2",
        )
        .bind(consumer)
        .bind(topic)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let partition: i64 = r.try_get(0)?;
                Ok((partition as i32, r.try_get(1)?))
            })
            .collect()
    }

    /// Leases up to `limit` due deliveries of enabled endpoints, oldest first,
    /// skipping the `busy` endpoints (whose queues in this instance are full).
    pub async fn claim_due(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
        busy: &[String],
    ) -> Result<Vec<Claimed>> {
        let exclude = if busy.is_empty() {
            String::new()
        } else {
            let marks: Vec<String> = (0..busy.len()).map(|i| format!("${}", i + 5)).collect();
            format!("AND d.endpoint_id NOT IN ({})", marks.join(", "))
        };
        let sql = format!(
            "UPDATE webhook_deliveries SET lease_owner = $1, lease_until = $2 \
             WHERE (message_id, endpoint_id) IN ( \
                 SELECT d.message_id, d.endpoint_id FROM webhook_deliveries d \
                 JOIN webhook_endpoints e ON e.id = d.endpoint_id \
                 WHERE d.status = 'pending' AND d.next_attempt_at <= $3 \
                 AND (d.lease_until IS NULL OR d.lease_until < $3) AND e.enabled = 1 {exclude} \
                 ORDER BY d.next_attempt_at LIMIT $4) \
             AND status = 'pending' AND (lease_until IS NULL OR lease_until < $3) \
             RETURNING message_id, endpoint_id, tenant_id, attempts, step"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .bind(limit);
        for endpoint in busy {
            query = query.bind(endpoint);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(Claimed {
                    message_id: r.try_get(0)?,
                    endpoint_id: r.try_get(1)?,
                    tenant_id: r.try_get(2)?,
                    attempts: r.try_get(3)?,
                    step: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Extends this instance's leases (it still holds those deliveries).
    pub async fn renew_leases(&self, owner: &str, until: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET lease_until = $2 \
             WHERE lease_owner = $1 AND status = 'pending' AND lease_until IS NOT NULL",
        )
        .bind(owner)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Drops every lease `owner` holds: at start, the previous life's claims are
    /// void and their deliveries due again at once.
    pub async fn release_leases(&self, owner: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL \
             WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn message(&self, id: &str) -> Result<Option<MessageRow>> {
        let row = sqlx::query(
            "SELECT id, event_type, payload, created_at FROM webhook_messages WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(MessageRow {
                id: r.try_get(0)?,
                event_type: r.try_get(1)?,
                payload: r.try_get(2)?,
                created_at: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Several messages at once (the engine fetches a claimed batch's bodies).
    pub async fn messages(&self, ids: &[String]) -> Result<Vec<MessageRow>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(100) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let mut query = sqlx::query(AssertSqlSafe(format!(
                "SELECT id, event_type, payload, created_at FROM webhook_messages \
                 WHERE id IN ({})",
                marks.join(", ")
            )));
            for id in chunk {
                query = query.bind(id);
            }
            for r in query.fetch_all(&self.pool).await? {
                out.push(MessageRow {
                    id: r.try_get(0)?,
                    event_type: r.try_get(1)?,
                    payload: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                });
            }
        }
        Ok(out)
    }

    /// Records attempts and moves their deliveries on, in one transaction;
    /// keeps each endpoint's `failing_since` (set on a failure, cleared on a
    /// success). Returns the endpoints whose failure run started before
    /// `failing_before`.
    pub async fn record_outcomes(
        &self,
        outcomes: &[OutcomeWrite],
        now: i64,
        failing_before: i64,
    ) -> Result<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        // Attempt rows, many per statement. An id already there (two instances
        // racing after a lease ran out) keeps the first record.
        for chunk in outcomes.chunks(50) {
            let sql = format!(
                "INSERT INTO webhook_attempts (id, message_id, endpoint_id, tenant_id, \
                 attempted_at, status_code, outcome, error, latency_ms, response) \
                 VALUES {} ON CONFLICT (id) DO NOTHING",
                rows_of_placeholders(chunk.len(), 10)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for o in chunk {
                let a = &o.attempt;
                query = query
                    .bind(&a.id)
                    .bind(&a.message_id)
                    .bind(&a.endpoint_id)
                    .bind(&a.tenant_id)
                    .bind(a.attempted_at)
                    .bind(a.status_code)
                    .bind(&a.outcome)
                    .bind(&a.error)
                    .bind(a.latency_ms)
                    .bind(&a.response);
            }
            query.execute(&mut *tx).await?;
        }
        // Deliveries: the delivered ones (the common case) in bulk.
        let delivered: Vec<&AttemptRecord> = outcomes
            .iter()
            .filter(|o| o.next == NextState::Delivered)
            .map(|o| &o.attempt)
            .collect();
        for chunk in delivered.chunks(100) {
            let sql = format!(
                "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, \
                 lease_owner = NULL, lease_until = NULL, updated_at = $1 \
                 WHERE (message_id, endpoint_id) IN ({})",
                rows_of_placeholders_from(chunk.len(), 2, 2)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for a in chunk {
                query = query.bind(&a.message_id).bind(&a.endpoint_id);
            }
            query.execute(&mut *tx).await?;
        }
        for o in outcomes.iter().filter(|o| o.next != NextState::Delivered) {
            let a = &o.attempt;
            let (status, next_at, step) = match o.next {
                NextState::Retry { at, step } => ("pending", Some(at), Some(step)),
                _ => ("failed", None, None),
            };
            sqlx::query(
                "UPDATE webhook_deliveries SET status = $3, attempts = attempts + 1, \
                 next_attempt_at = COALESCE($4, next_attempt_at), step = COALESCE($5, step), \
                 lease_owner = NULL, lease_until = NULL, updated_at = $6 \
                 WHERE message_id = $1 AND endpoint_id = $2",
            )
            .bind(&a.message_id)
            .bind(&a.endpoint_id)
            .bind(status)
            .bind(next_at)
            .bind(step)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        // Each endpoint's failure run, judged by its last attempt in the batch;
        // a failing run starts at its first failure after the last success.
        let mut last: Vec<(&str, bool, i64)> = Vec::new();
        for o in outcomes {
            let a = &o.attempt;
            let ok = a.outcome == "success";
            match last.iter_mut().find(|(id, _, _)| *id == a.endpoint_id) {
                Some(entry) => {
                    if ok || entry.1 {
                        *entry = (&a.endpoint_id, ok, a.attempted_at);
                    }
                }
                None => last.push((&a.endpoint_id, ok, a.attempted_at)),
            }
        }
        let mut failing = Vec::new();
        for (endpoint, ok, at) in last {
            if ok {
                sqlx::query(
                    "UPDATE webhook_endpoints SET failing_since = NULL \
                     WHERE id = $1 AND failing_since IS NOT NULL",
                )
                .bind(endpoint)
                .execute(&mut *tx)
                .await?;
                continue;
            }
            sqlx::query(
                "UPDATE webhook_endpoints SET failing_since = $2 \
                 WHERE id = $1 AND failing_since IS NULL",
            )
            .bind(endpoint)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            let since: Option<Option<i64>> = sqlx::query_scalar(
                "SELECT failing_since FROM webhook_endpoints WHERE id = $1 AND enabled = 1",
            )
            .bind(endpoint)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(Some(since)) = since
                && since < failing_before
            {
                failing.push(endpoint.to_string());
            }
        }
        tx.commit().await?;
        Ok(failing)
    }

    /// A tenant's messages, newest first: created at or after `since`, of
    /// `event_type` when given, at most `limit`.
    pub async fn tenant_messages(
        &self,
        tenant: &str,
        since: i64,
        event_type: Option<&str>,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        let by_type = if event_type.is_some() {
            "AND event_type = $4"
        } else {
            ""
        };
        let mut query = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, event_type, payload, created_at FROM webhook_messages \
             WHERE tenant_id = $1 AND created_at >= $2 {by_type} \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        )))
        .bind(tenant)
        .bind(since)
        .bind(limit);
        if let Some(t) = event_type {
            query = query.bind(t);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(MessageRow {
                    id: r.try_get(0)?,
                    event_type: r.try_get(1)?,
                    payload: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// One of the tenant's messages.
    pub async fn tenant_message(&self, tenant: &str, id: &str) -> Result<Option<MessageRow>> {
        let row = sqlx::query(
            "SELECT id, event_type, payload, created_at FROM webhook_messages \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(MessageRow {
                id: r.try_get(0)?,
                event_type: r.try_get(1)?,
                payload: r.try_get(2)?,
                created_at: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Where the tenant's `messages` stand at each endpoint.
    pub async fn deliveries_of(
        &self,
        tenant: &str,
        messages: &[String],
    ) -> Result<Vec<DeliveryRow>> {
        let mut out = Vec::new();
        for chunk in messages.chunks(100) {
            let marks: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let mut query = sqlx::query(AssertSqlSafe(format!(
                "SELECT message_id, endpoint_id, status, attempts, next_attempt_at, updated_at \
                 FROM webhook_deliveries WHERE tenant_id = $1 AND message_id IN ({}) \
                 ORDER BY message_id, endpoint_id",
                marks.join(", ")
            )))
            .bind(tenant);
            for id in chunk {
                query = query.bind(id);
            }
            for r in query.fetch_all(&self.pool).await? {
                out.push(DeliveryRow {
                    message_id: r.try_get(0)?,
                    endpoint_id: r.try_get(1)?,
                    status: r.try_get(2)?,
                    attempts: r.try_get(3)?,
                    next_attempt_at: r.try_get(4)?,
                    updated_at: r.try_get(5)?,
                });
            }
        }
        Ok(out)
    }

    /// A message's attempts across the tenant's endpoints, oldest first.
    pub async fn message_attempts(
        &self,
        tenant: &str,
        message: &str,
    ) -> Result<Vec<AttemptRecord>> {
        let rows = sqlx::query(
            "SELECT id, message_id, endpoint_id, tenant_id, attempted_at, status_code, outcome, \
             error, latency_ms, response FROM webhook_attempts \
             WHERE tenant_id = $1 AND message_id = $2 ORDER BY attempted_at, id LIMIT 1000",
        )
        .bind(tenant)
        .bind(message)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRecord {
                    id: r.try_get(0)?,
                    message_id: r.try_get(1)?,
                    endpoint_id: r.try_get(2)?,
                    tenant_id: r.try_get(3)?,
                    attempted_at: r.try_get(4)?,
                    status_code: r.try_get(5)?,
                    outcome: r.try_get(6)?,
                    error: r.try_get(7)?,
                    latency_ms: r.try_get(8)?,
                    response: r.try_get(9)?,
                })
            })
            .collect()
    }

    /// An endpoint's attempts, newest first.
    pub async fn attempts(
        &self,
        tenant: &str,
        endpoint: &str,
        since: i64,
        message: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AttemptRecord>> {
        let by_message = if message.is_some() {
            "AND message_id = $5"
        } else {
            ""
        };
        let mut query = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, message_id, endpoint_id, tenant_id, attempted_at, status_code, outcome, \
             error, latency_ms, response FROM webhook_attempts \
             WHERE tenant_id = $1 AND endpoint_id = $2 AND attempted_at >= $3 {by_message} \
             ORDER BY attempted_at DESC, id DESC LIMIT $4"
        )))
        .bind(tenant)
        .bind(endpoint)
        .bind(since)
        .bind(limit);
        if let Some(message) = message {
            query = query.bind(message);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRecord {
                    id: r.try_get(0)?,
                    message_id: r.try_get(1)?,
                    endpoint_id: r.try_get(2)?,
                    tenant_id: r.try_get(3)?,
                    attempted_at: r.try_get(4)?,
                    status_code: r.try_get(5)?,
                    outcome: r.try_get(6)?,
                    error: r.try_get(7)?,
                    latency_ms: r.try_get(8)?,
                    response: r.try_get(9)?,
                })
            })
            .collect()
    }

    /// Queues one message to an endpoint again (a new schedule, same message
    /// id). False when the endpoint never had that message.
    pub async fn replay_message(
        &self,
        tenant: &str,
        endpoint: &str,
        message: &str,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', step = 0, next_attempt_at = $4, \
             lease_owner = NULL, lease_until = NULL, updated_at = $4 \
             WHERE tenant_id = $1 AND endpoint_id = $2 AND message_id = $3",
        )
        .bind(tenant)
        .bind(endpoint)
        .bind(message)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Queues again every delivery to `endpoint` that failed for good after
    /// `since` (by the time it last changed). Returns how many.
    pub async fn replay_failed(
        &self,
        tenant: &str,
        endpoint: &str,
        since: i64,
        now: i64,
    ) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', step = 0, next_attempt_at = $4, \
             lease_owner = NULL, lease_until = NULL, updated_at = $4 \
             WHERE tenant_id = $1 AND endpoint_id = $2 AND status = 'failed' AND updated_at >= $3",
        )
        .bind(tenant)
        .bind(endpoint)
        .bind(since)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Pending deliveries per endpoint (the queue depth).
    pub async fn pending_depths(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT endpoint_id, COUNT(*) FROM webhook_deliveries WHERE status = 'pending' \
             GROUP BY endpoint_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}

/// Binds an endpoint's columns in `ENDPOINT_COLUMNS` order.
fn bind_endpoint<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    e: &'q EndpointRow,
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>> {
    Ok(query
        .bind(&e.id)
        .bind(&e.tenant_id)
        .bind(&e.url)
        .bind(&e.description)
        .bind(serde_json::to_string(&e.event_types)?)
        .bind(&e.filter)
        .bind(e.rate_limit)
        .bind(serde_json::to_string(&e.headers)?)
        .bind(&e.secret)
        .bind(&e.previous_secret)
        .bind(e.previous_secret_until)
        .bind(i64::from(e.enabled))
        .bind(&e.disabled_reason)
        .bind(e.failing_since)
        .bind(e.created_at)
        .bind(e.updated_at))
}

fn endpoint_from_row(row: &sqlx::any::AnyRow) -> Result<EndpointRow> {
    let event_types: String = row.try_get(4)?;
    let headers: String = row.try_get(7)?;
    let enabled: i64 = row.try_get(11)?;
    Ok(EndpointRow {
        id: row.try_get(0)?,
        tenant_id: row.try_get(1)?,
        url: row.try_get(2)?,
        description: row.try_get(3)?,
        event_types: serde_json::from_str(&event_types)?,
        filter: row.try_get(5)?,
        rate_limit: row.try_get(6)?,
        headers: serde_json::from_str(&headers)?,
        secret: row.try_get(8)?,
        previous_secret: row.try_get(9)?,
        previous_secret_until: row.try_get(10)?,
        enabled: enabled != 0,
        disabled_reason: row.try_get(12)?,
        failing_since: row.try_get(13)?,
        created_at: row.try_get(14)?,
        updated_at: row.try_get(15)?,
    })
}

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` parameters.
fn rows_of_placeholders(rows: usize, columns: usize) -> String {
    rows_of_placeholders_from(rows, columns, 1)
}

/// Like [`rows_of_placeholders`], numbering from `first`.
fn rows_of_placeholders_from(rows: usize, columns: usize, first: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..columns {
            if c > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(first + r * columns + c).to_string());
        }
        out.push(')');
    }
    out
}
