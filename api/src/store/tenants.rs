//! Tenants and their custom domains.

use sqlx::{AssertSqlSafe, Row};

use super::{Result, Store, StoreError, conflict_on_unique};

/// A tenant as stored; `settings` is the API's JSON document.
#[derive(Debug, Clone)]
pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub region: String,
    pub settings: String,
    pub domains: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Store {
    pub async fn create_tenant(&self, row: &TenantRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO tenants (id, name, region, settings, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.region)
        .bind(&row.settings)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("tenant {:?} already exists", row.id)))?;
        insert_domains(&mut tx, &row.id, &row.domains).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn tenant(&self, id: &str) -> Result<Option<TenantRow>> {
        let row = sqlx::query(
            "SELECT id, name, region, settings, created_at, updated_at FROM tenants WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut tenant = tenant_from_row(&row)?;
        tenant.domains = self.domains_of(id).await?;
        Ok(Some(tenant))
    }

    pub async fn tenants(&self) -> Result<Vec<TenantRow>> {
        let rows = sqlx::query(
            "SELECT id, name, region, settings, created_at, updated_at FROM tenants ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut tenants = rows
            .iter()
            .map(tenant_from_row)
            .collect::<Result<Vec<_>>>()?;
        let domains = sqlx::query("SELECT domain, tenant_id FROM tenant_domains ORDER BY domain")
            .fetch_all(&self.pool)
            .await?;
        for row in domains {
            let domain: String = row.try_get(0)?;
            let tenant_id: String = row.try_get(1)?;
            if let Some(t) = tenants.iter_mut().find(|t| t.id == tenant_id) {
                t.domains.push(domain);
            }
        }
        Ok(tenants)
    }

    /// Replaces a tenant's fields and domains; the id and creation time stay.
    pub async fn update_tenant(&self, row: &TenantRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE tenants SET name = $2, region = $3, settings = $4, updated_at = $5 WHERE id = $1",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.region)
        .bind(&row.settings)
        .bind(row.updated_at)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no tenant {:?}", row.id)));
        }
        sqlx::query("DELETE FROM tenant_domains WHERE tenant_id = $1")
            .bind(&row.id)
            .execute(&mut *tx)
            .await?;
        insert_domains(&mut tx, &row.id, &row.domains).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a tenant and everything it owns (keys, domains, templates, usage).
    pub async fn delete_tenant(&self, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // Explicit child deletes: SQLite enforces ON DELETE CASCADE only with its
        // foreign_keys pragma, which a reused file may have been opened without.
        for table in [
            "tenant_domains",
            "api_keys",
            "template_overrides",
            "usage_counters",
        ] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE tenant_id = $1"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        let deleted = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// The tenant owning a custom domain (lower-case, no port).
    pub async fn tenant_for_domain(&self, domain: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT tenant_id FROM tenant_domains WHERE domain = $1")
            .bind(domain)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    async fn domains_of(&self, id: &str) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT domain FROM tenant_domains WHERE tenant_id = $1 ORDER BY domain")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }
}

async fn insert_domains(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &str,
    domains: &[String],
) -> Result<()> {
    for domain in domains {
        sqlx::query("INSERT INTO tenant_domains (domain, tenant_id) VALUES ($1, $2)")
            .bind(domain)
            .bind(tenant)
            .execute(&mut **tx)
            .await
            .map_err(|e| {
                conflict_on_unique(e, || {
                    format!("domain {domain:?} already belongs to a tenant")
                })
            })?;
    }
    Ok(())
}

fn tenant_from_row(row: &sqlx::any::AnyRow) -> Result<TenantRow> {
    Ok(TenantRow {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        region: row.try_get(2)?,
        settings: row.try_get(3)?,
        domains: Vec::new(),
        created_at: row.try_get(4)?,
        updated_at: row.try_get(5)?,
    })
}
