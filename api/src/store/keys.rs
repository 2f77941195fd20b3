//! API keys: only a hash of the secret is stored.

use sqlx::{AssertSqlSafe, Row};

use super::{Result, Store, StoreError, now_ms};

#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub role: String,
    /// Hex SHA-256 of the secret part of the key.
    pub secret_hash: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

const COLUMNS: &str = "id, tenant_id, name, role, secret_hash, created_at, revoked_at";

impl Store {
    pub async fn insert_key(&self, key: &KeyRecord) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO api_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )))
        .bind(&key.id)
        .bind(&key.tenant_id)
        .bind(&key.name)
        .bind(&key.role)
        .bind(&key.secret_hash)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn key(&self, id: &str) -> Result<Option<KeyRecord>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    pub async fn keys_of(&self, tenant: &str) -> Result<Vec<KeyRecord>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id"
        )))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes a tenant's key; revoking twice keeps the first time.
    pub async fn revoke_key(&self, tenant: &str, id: &str) -> Result<KeyRecord> {
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 \
             WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(tenant)
        .bind(id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        match self.key(id).await? {
            Some(key) if key.tenant_id == tenant => Ok(key),
            _ => Err(StoreError::NotFound(format!("no API key {id:?}"))),
        }
    }
}

fn key_from_row(row: &sqlx::any::AnyRow) -> Result<KeyRecord> {
    Ok(KeyRecord {
        id: row.try_get(0)?,
        tenant_id: row.try_get(1)?,
        name: row.try_get(2)?,
        role: row.try_get(3)?,
        secret_hash: row.try_get(4)?,
        created_at: row.try_get(5)?,
        revoked_at: row.try_get(6)?,
    })
}
