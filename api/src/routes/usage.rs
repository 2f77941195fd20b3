//! `/v1/usage`: the tenant's usage counters.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Caller, Permission};
use crate::problem::{CommonProblems, Problem};
use crate::state::AppState;
use crate::usage::Counter;

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub tenant: String,
    /// Authenticated API requests.
    pub requests: i64,
    /// Verifications scored (stream and `/v1/score`, `/v1/route`).
    pub verifications_scored: i64,
    /// Webhook messages delivered.
    pub webhooks_sent: i64,
}

/// Read the tenant's usage counters.
#[utoipa::path(
    get, path = "/v1/usage", tag = "tenants",
    responses((status = 200, body = UsageReport), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn get(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<UsageReport>, Problem> {
    let tenant = caller.tenant_for(Permission::ReadUsage)?;
    let counters = app.usage.read(&app.store, tenant).await?;
    let value = |c: Counter| {
        counters
            .iter()
            .find(|(k, _)| *k == c)
            .map_or(0, |(_, v)| *v)
    };
    Ok(Json(UsageReport {
        tenant: tenant.to_string(),
        requests: value(Counter::Requests),
        verifications_scored: value(Counter::VerificationsScored),
        webhooks_sent: value(Counter::WebhooksSent),
    }))
}
