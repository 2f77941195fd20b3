//! Tenants' overrides of the shipped Fluent messages.

use sqlx::Row;

use super::{Result, Store, now_ms};

#[derive(Debug, Clone)]
pub struct TemplateOverride {
    pub service: String,
    pub locale: String,
    /// Fluent source defining the message named after the service.
    pub source: String,
    pub updated_at: i64,
}

impl Store {
    pub async fn put_template(
        &self,
        tenant: &str,
        service: &str,
        locale: &str,
        source: &str,
    ) -> Result<TemplateOverride> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO template_overrides (tenant_id, service, locale, source, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, service, locale) \
             DO UPDATE SET source = excluded.source, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(service)
        .bind(locale)
        .bind(source)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(TemplateOverride {
            service: service.into(),
            locale: locale.into(),
            source: source.into(),
            updated_at: now,
        })
    }

    pub async fn templates_of(&self, tenant: &str) -> Result<Vec<TemplateOverride>> {
        let rows = sqlx::query(
            "SELECT service, locale, source, updated_at FROM template_overrides \
             WHERE tenant_id = $1 ORDER BY service, locale",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TemplateOverride {
                    service: row.try_get(0)?,
                    locale: row.try_get(1)?,
                    source: row.try_get(2)?,
                    updated_at: row.try_get(3)?,
                })
            })
            .collect()
    }

    pub async fn delete_template(&self, tenant: &str, service: &str, locale: &str) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM template_overrides WHERE tenant_id = $1 AND service = $2 AND locale = $3",
        )
        .bind(tenant)
        .bind(service)
        .bind(locale)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
