//! `/v1/auth/keys` and `/v1/auth/whoami`: a tenant's API keys and roles.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, response::IntoResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::patterns::{self, matches};
use super::rfc3339;
use crate::auth::{Caller, Permission, Principal, Role, api_key};
use crate::extract::{ApiJson, ApiPath};
use crate::problem::{CommonProblems, Problem};
use crate::state::AppState;
use crate::store::{KeyRecord, now_ms};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// What the key is for, e.g. `checkout-service`.
    #[schema(max_length = 100, pattern = "^\\S(.*\\S)?$")]
    pub name: String,
    pub role: Role,
}

/// A new key. `key` is the secret: it is shown only in this response.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Send as `x-api-key` or `Authorization: Bearer`.
    pub key: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<ApiKeyInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// `operator` or `api_key`.
    pub principal: String,
    pub key_id: Option<String>,
    pub role: Option<Role>,
    /// The tenant requests are scoped to, if any.
    pub tenant: Option<String>,
    pub permissions: Vec<String>,
}

fn info(key: KeyRecord) -> ApiKeyInfo {
    ApiKeyInfo {
        role: Role::parse(&key.role).unwrap_or(Role::Viewer),
        id: key.id,
        name: key.name,
        created_at: rfc3339(key.created_at),
        revoked_at: key.revoked_at.map(rfc3339),
    }
}

/// Generates, stores (hashed) and returns a new key for `tenant`.
pub async fn issue(
    app: &AppState,
    tenant: &str,
    name: &str,
    role: Role,
) -> Result<CreatedKey, Problem> {
    let new = api_key::generate();
    let now = now_ms();
    app.store
        .insert_key(&KeyRecord {
            id: new.id.clone(),
            tenant_id: tenant.to_string(),
            name: name.to_string(),
            role: role.as_str().to_string(),
            secret_hash: new.secret_hash,
            created_at: now,
            revoked_at: None,
        })
        .await?;
    Ok(CreatedKey {
        id: new.id,
        name: name.to_string(),
        role,
        key: new.token,
        created_at: rfc3339(now),
    })
}

/// Create an API key (tenant admins).
#[utoipa::path(
    post, path = "/v1/auth/keys", tag = "auth",
    request_body = CreateKey,
    responses((status = 201, body = CreatedKey), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn create(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<impl IntoResponse, Problem> {
    let tenant = caller.tenant_for(Permission::ManageKeys)?;
    if body.name.chars().count() > 100 || !matches(patterns::NAME, &body.name) {
        return Err(Problem::unprocessable(
            "name must be 1–100 characters without leading or trailing spaces",
        ));
    }
    let key = issue(&app, tenant, &body.name, body.role).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// List the tenant's API keys (never their secrets).
#[utoipa::path(
    get, path = "/v1/auth/keys", tag = "auth",
    responses((status = 200, body = KeyList), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<KeyList>, Problem> {
    let tenant = caller.tenant_for(Permission::ManageKeys)?;
    let keys = app.store.keys_of(tenant).await?;
    Ok(Json(KeyList {
        keys: keys.into_iter().map(info).collect(),
    }))
}

/// Revoke an API key; it stops working at once.
#[utoipa::path(
    delete, path = "/v1/auth/keys/{id}", tag = "auth",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 200, body = ApiKeyInfo), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn revoke(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ApiKeyInfo>, Problem> {
    let tenant = caller.tenant_for(Permission::ManageKeys)?;
    let revoked = app.store.revoke_key(tenant, &id).await?;
    app.keys.forget(&id);
    Ok(Json(info(revoked)))
}

/// Who the credentials belong to and what they may do.
#[utoipa::path(
    get, path = "/v1/auth/whoami", tag = "auth",
    responses((status = 200, body = WhoAmI), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn whoami(Extension(caller): Extension<Caller>) -> Json<WhoAmI> {
    let (principal, key_id, role) = match &caller.principal {
        Principal::Operator => ("operator", None, None),
        Principal::ApiKey { key_id, role, .. } => ("api_key", Some(key_id.clone()), Some(*role)),
    };
    Json(WhoAmI {
        principal: principal.into(),
        key_id,
        role,
        tenant: caller.tenant.clone(),
        permissions: caller.permissions().into_iter().map(String::from).collect(),
    })
}
