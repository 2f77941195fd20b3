//! Per-tenant usage counters (requests, verifications scored, webhooks sent).

use sqlx::Row;

use super::{Result, Store};

impl Store {
    /// Adds deltas to counters, creating them at zero when missing.
    pub async fn add_usage(&self, deltas: &[(String, String, i64)]) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (tenant, counter, delta) in deltas {
            // A tenant deleted since the increment: its counters went with it.
            let exists = sqlx::query("SELECT 1 FROM tenants WHERE id = $1")
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                continue;
            }
            sqlx::query(
                "INSERT INTO usage_counters (tenant_id, counter, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id, counter) \
                 DO UPDATE SET value = usage_counters.value + excluded.value",
            )
            .bind(tenant)
            .bind(counter)
            .bind(*delta)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn usage_of(&self, tenant: &str) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT counter, value FROM usage_counters WHERE tenant_id = $1 ORDER BY counter",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }
}
