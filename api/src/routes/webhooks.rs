//! `/v1/webhooks/endpoints`: a tenant's webhook endpoints, their secrets,
//! attempts, replays and test events.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, response::IntoResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use veriflow_connectors::webhooks::client::SendError;
use veriflow_connectors::webhooks::signature::Secret;

use super::{parse_time, rfc3339};
use crate::auth::api_key::{hex, random_bytes};
use crate::auth::{Caller, Permission};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::problem::{CommonProblems, Problem};
use crate::state::AppState;
use crate::store::{EndpointRow, NewMessage, now_ms};
use crate::webhooks::filter::Filter;
use crate::webhooks::{EVENT_TYPES, Event, catalog, message_id, payload};

const MAX_HEADERS: usize = 20;
/// Headers the engine sets itself; an endpoint cannot override them.
const RESERVED_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "user-agent",
    "te",
];

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Where deliveries are POSTed (http or https; public addresses only unless
    /// the operator allows a network).
    #[schema(max_length = 2048)]
    pub url: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub description: String,
    /// Event types to receive; empty or absent means all.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// e.g. `country in ["BR","MX"] and fraud_score > 0.8` (fields of `data`).
    pub filter: Option<String>,
    /// Deliveries per second at most; absent means unlimited.
    #[schema(minimum = 1, maximum = 100000)]
    pub rate_limit: Option<u32>,
    /// Extra request headers (not `webhook-*` nor transport headers).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A `whsec_…` secret to use; generated when absent.
    pub secret: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// Fields to change; absent fields keep their value.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[schema(max_length = 200)]
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// An empty string removes the filter.
    pub filter: Option<String>,
    /// 0 removes the limit.
    #[schema(maximum = 100000)]
    pub rate_limit: Option<u32>,
    pub headers: Option<BTreeMap<String, String>>,
    /// `false` disables the endpoint; `true` enables it again (and forgets its
    /// failure run).
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub filter: Option<String>,
    pub rate_limit: Option<i64>,
    pub headers: BTreeMap<String, String>,
    pub enabled: bool,
    /// Why the engine disabled it (410 Gone, failing too long).
    pub disabled_reason: Option<String>,
    /// Start of the current run of failed attempts.
    pub failing_since: Option<String>,
    /// End of the overlap during which the previous secret also signs.
    pub previous_secret_valid_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A new endpoint with its signing secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// `whsec_…`: verify deliveries with it (standardwebhooks, svix).
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointSecret {
    /// The current `whsec_…` secret.
    pub key: String,
    /// Until then the previous secret also signs (rotation overlap).
    pub previous_valid_until: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// The new `whsec_…` secret; generated when absent.
    pub key: Option<String>,
    /// How long the old secret keeps signing alongside the new one (default
    /// `webhooks.rotation_overlap`); 0 retires it at once.
    #[schema(maximum = 604800)]
    pub overlap_seconds: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    /// The `webhook-id` of the message.
    pub message_id: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// Send this message to the endpoint again.
    pub message_id: Option<String>,
    /// Or: send again every message that failed for good since this time (RFC 3339).
    pub since: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    pub replayed: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AttemptQuery {
    /// Only attempts at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only this message's attempts.
    pub message_id: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptInfo {
    pub id: String,
    pub endpoint_id: String,
    pub message_id: String,
    pub attempted_at: String,
    /// HTTP status, absent when no answer came.
    pub status_code: Option<i64>,
    /// `success`, `failure`, `timeout`, `connect_error` or `blocked`.
    pub outcome: String,
    pub error: Option<String>,
    pub latency_ms: i64,
    /// The first KiB of the response body.
    pub response: Option<String>,
}

impl From<crate::store::AttemptRecord> for AttemptInfo {
    fn from(a: crate::store::AttemptRecord) -> Self {
        AttemptInfo {
            id: a.id,
            endpoint_id: a.endpoint_id,
            message_id: a.message_id,
            attempted_at: rfc3339(a.attempted_at),
            status_code: a.status_code,
            outcome: a.outcome,
            error: a.error,
            latency_ms: a.latency_ms,
            response: a.response,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptList {
    pub attempts: Vec<AttemptInfo>,
}

fn view(row: &EndpointRow) -> Endpoint {
    let now = now_ms();
    Endpoint {
        id: row.id.clone(),
        url: row.url.clone(),
        description: row.description.clone(),
        event_types: row.event_types.clone(),
        filter: row.filter.clone(),
        rate_limit: row.rate_limit,
        headers: row.headers.iter().cloned().collect(),
        enabled: row.enabled,
        disabled_reason: row.disabled_reason.clone(),
        failing_since: row.failing_since.map(rfc3339),
        previous_secret_valid_until: row
            .previous_secret_until
            .filter(|until| *until > now)
            .map(rfc3339),
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    }
}

/// An endpoint URL the client would send to: length, syntax, scheme, and no
/// private address that can be seen without DNS (`url_refused`).
fn check_url(app: &AppState, url: &str) -> Result<(), Problem> {
    if url.len() > 2048 {
        return Err(Problem::unprocessable("url must be at most 2048 bytes"));
    }
    match app.webhooks.client().check_url(url) {
        Ok(_) => Ok(()),
        Err(SendError::Blocked(why)) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "url_refused",
            why,
        )),
        Err(other) => Err(Problem::unprocessable(format!("url: {other}"))),
    }
}

/// Checks everything but the URL; returns the messages of what is wrong.
fn check_fields(
    description: &str,
    event_types: &[String],
    filter: Option<&str>,
    rate_limit: Option<u32>,
    headers: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut errors = Vec::new();
    if description.chars().count() > 200 {
        errors.push("description must be at most 200 characters".into());
    }
    for t in event_types {
        if !catalog::is_known(t) {
            errors.push(format!(
                "event type {t:?} is unknown; known: {}, or your own `app.<name>`",
                EVENT_TYPES.join(", ")
            ));
        }
    }
    if let Some(source) = filter.filter(|f| !f.trim().is_empty()) {
        if source.len() > 2000 {
            errors.push("filter must be at most 2000 bytes".into());
        } else if let Err(e) = Filter::parse(source) {
            errors.push(format!("filter: {e}"));
        }
    }
    if rate_limit.is_some_and(|r| r > 100_000) {
        errors.push("rate_limit must be at most 100000 per second".into());
    }
    if headers.len() > MAX_HEADERS {
        errors.push(format!("at most {MAX_HEADERS} headers"));
    }
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("webhook-") || RESERVED_HEADERS.contains(&lower.as_str()) {
            errors.push(format!("header {name:?} is set by veriflow"));
        } else if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            errors.push(format!("header name {name:?} is not valid"));
        } else if axum::http::HeaderValue::from_str(value).is_err() || value.len() > 4096 {
            errors.push(format!("header {name:?} has an invalid value"));
        }
    }
    errors
}

fn parse_secret(text: &str) -> Result<Secret, Problem> {
    Secret::parse(text)
        .map_err(|_| {
            Problem::unprocessable("secret must be `whsec_` followed by base64 (at least 24 bytes)")
        })
        .and_then(|s| {
            if s.expose().len() < "whsec_".len() + 32 {
                Err(Problem::unprocessable(
                    "secret must be `whsec_` followed by base64 (at least 24 bytes)",
                ))
            } else {
                Ok(s)
            }
        })
}

async fn load(app: &AppState, tenant: &str, id: &str) -> Result<EndpointRow, Problem> {
    app.store
        .endpoint(tenant, id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no webhook endpoint {id:?}")))
}

/// Create a webhook endpoint; the response carries its signing secret.
#[utoipa::path(
    post, path = "/v1/webhooks/endpoints", tag = "webhooks",
    request_body = CreateEndpoint,
    responses((status = 201, body = CreatedEndpoint), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn create(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateEndpoint>,
) -> Result<impl IntoResponse, Problem> {
    let tenant = caller.tenant_for(Permission::ManageWebhooks)?;
    let mut errors = check_fields(
        &body.description,
        &body.event_types,
        body.filter.as_deref(),
        body.rate_limit,
        &body.headers,
    );
    if body.rate_limit == Some(0) {
        // The schema's minimum: on create, no limit is said by leaving it out.
        errors.push("rate_limit must be at least 1 (leave it out for no limit)".into());
    }
    if !errors.is_empty() {
        return Err(Problem::unprocessable(errors.join("; ")).with_errors(errors));
    }
    check_url(&app, &body.url)?;
    let secret = match &body.secret {
        Some(text) => parse_secret(text)?,
        None => Secret::generate(),
    };
    let id = format!("ep_{}", hex(&random_bytes::<12>()));
    let now = now_ms();
    let row = EndpointRow {
        secret: app.webhooks.secrets().seal(&id, &secret.expose()),
        id,
        tenant_id: tenant.to_string(),
        url: body.url,
        description: body.description,
        event_types: body.event_types,
        filter: body.filter.filter(|f| !f.trim().is_empty()),
        rate_limit: body.rate_limit.filter(|r| *r > 0).map(i64::from),
        headers: body.headers.into_iter().collect(),
        previous_secret: None,
        previous_secret_until: None,
        enabled: body.enabled,
        disabled_reason: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    app.store.insert_endpoint(&row).await?;
    app.webhooks.endpoints_changed();
    Ok((
        StatusCode::CREATED,
        Json(CreatedEndpoint {
            endpoint: view(&row),
            secret: secret.expose(),
        }),
    ))
}

/// List the tenant's webhook endpoints.
#[utoipa::path(
    get, path = "/v1/webhooks/endpoints", tag = "webhooks",
    responses((status = 200, body = EndpointList), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<EndpointList>, Problem> {
    let tenant = caller.tenant_for(Permission::ReadWebhooks)?;
    let rows = app.store.endpoints_of(tenant).await?;
    Ok(Json(EndpointList {
        endpoints: rows.iter().map(view).collect(),
    }))
}

/// One webhook endpoint.
#[utoipa::path(
    get, path = "/v1/webhooks/endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = Endpoint), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn get(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Endpoint>, Problem> {
    let tenant = caller.tenant_for(Permission::ReadWebhooks)?;
    Ok(Json(view(&load(&app, tenant, &id).await?)))
}

/// Change an endpoint: URL, types, filter, rate limit, headers; disable or
/// enable it.
#[utoipa::path(
    patch, path = "/v1/webhooks/endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    request_body = UpdateEndpoint,
    responses((status = 200, body = Endpoint), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn update(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateEndpoint>,
) -> Result<Json<Endpoint>, Problem> {
    let tenant = caller.tenant_for(Permission::ManageWebhooks)?;
    let mut row = load(&app, tenant, &id).await?;
    let headers = body
        .headers
        .clone()
        .unwrap_or_else(|| row.headers.iter().cloned().collect());
    let errors = check_fields(
        body.description.as_deref().unwrap_or(&row.description),
        body.event_types.as_deref().unwrap_or(&row.event_types),
        body.filter.as_deref(),
        body.rate_limit,
        &headers,
    );
    if !errors.is_empty() {
        return Err(Problem::unprocessable(errors.join("; ")).with_errors(errors));
    }
    if let Some(url) = body.url {
        check_url(&app, &url)?;
        row.url = url;
    }
    if let Some(d) = body.description {
        row.description = d;
    }
    if let Some(t) = body.event_types {
        row.event_types = t;
    }
    if let Some(f) = body.filter {
        row.filter = Some(f).filter(|f| !f.trim().is_empty());
    }
    if let Some(r) = body.rate_limit {
        row.rate_limit = Some(i64::from(r)).filter(|r| *r > 0);
    }
    row.headers = headers.into_iter().collect();
    if let Some(enabled) = body.enabled {
        if enabled && !row.enabled {
            row.disabled_reason = None;
            row.failing_since = None;
        }
        if !enabled && row.enabled {
            row.disabled_reason = Some("disabled through the API".into());
        }
        row.enabled = enabled;
    }
    row.updated_at = now_ms();
    app.store.update_endpoint(&row).await?;
    app.webhooks.endpoints_changed();
    app.webhooks.wake();
    Ok(Json(view(&row)))
}

/// Delete an endpoint with its queue and attempts log.
#[utoipa::path(
    delete, path = "/v1/webhooks/endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 204, description = "Deleted"), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn delete(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, Problem> {
    let tenant = caller.tenant_for(Permission::ManageWebhooks)?;
    if !app.store.delete_endpoint(tenant, &id).await? {
        return Err(Problem::not_found(format!("no webhook endpoint {id:?}")));
    }
    app.webhooks.endpoints_changed();
    Ok(StatusCode::NO_CONTENT)
}

/// The endpoint's current signing secret.
#[utoipa::path(
    get, path = "/v1/webhooks/endpoints/{id}/secret", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = EndpointSecret), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn secret(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EndpointSecret>, Problem> {
    let tenant = caller.tenant_for(Permission::ManageWebhooks)?;
    let row = load(&app, tenant, &id).await?;
    let key = app
        .webhooks
        .secrets()
        .open(&row.id, &row.secret)
        .map_err(|e| {
            tracing::error!(endpoint = %row.id, error = %e, "cannot decrypt a webhook secret");
            Problem::internal()
        })?;
    Ok(Json(EndpointSecret {
        key,
        previous_valid_until: row
            .previous_secret_until
            .filter(|until| *until > now_ms())
            .map(rfc3339),
    }))
}

/// Rotate the signing secret. During the overlap every delivery carries both
/// signatures, so receivers can switch secrets without losing a message.
#[utoipa::path(
    post, path = "/v1/webhooks/endpoints/{id}/secret/rotate", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    request_body = RotateSecret,
    responses((status = 200, body = EndpointSecret), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn rotate(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RotateSecret>,
) -> Result<Json<EndpointSecret>, Problem> {
    let tenant = caller.tenant_for(Permission::ManageWebhooks)?;
    let mut row = load(&app, tenant, &id).await?;
    let new = match &body.key {
        Some(text) => parse_secret(text)?,
        None => Secret::generate(),
    };
    let overlap = match body.overlap_seconds {
        Some(s) if s > 604_800 => {
            return Err(Problem::unprocessable(
                "overlap_seconds must be at most 604800 (7 days)",
            ));
        }
        Some(s) => Duration::from_secs(s),
        None => app.webhooks.config().rotation_overlap,
    };
    let now = now_ms();
    let until = now + overlap.as_millis() as i64;
    row.previous_secret = Some(row.secret.clone()).filter(|_| !overlap.is_zero());
    row.previous_secret_until = Some(until).filter(|_| !overlap.is_zero());
    row.secret = app.webhooks.secrets().seal(&row.id, &new.expose());
    row.updated_at = now;
    app.store.update_endpoint(&row).await?;
    app.webhooks.endpoints_changed();
    Ok(Json(EndpointSecret {
        key: new.expose(),
        previous_valid_until: row.previous_secret_until.map(rfc3339),
    }))
}

/// Send a `webhook.test` event to this endpoint (whatever its event types).
#[utoipa::path(
    post, path = "/v1/webhooks/endpoints/{id}/test", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 202, body = Queued), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn test(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, Problem> {
    let tenant = caller.tenant_for(Permission::ManageWebhooks)?;
    let row = load(&app, tenant, &id).await?;
    let now = now_ms();
    let event = Event {
        id: format!("webhook.test/{}", hex(&random_bytes::<12>())),
        tenant_id: tenant.to_string(),
        event_type: "webhook.test".into(),
        timestamp: rfc3339(now),
        data: serde_json::json!({ "endpoint_id": row.id, "sent_at": rfc3339(now) }),
    };
    let id = message_id(&event.id, tenant);
    app.webhooks
        .enqueue(&[NewMessage {
            id: id.clone(),
            tenant_id: tenant.to_string(),
            event_type: event.event_type.clone(),
            payload: payload(&event),
            endpoints: vec![row.id],
        }])
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "queueing a test event failed");
            Problem::internal()
        })?;
    Ok((StatusCode::ACCEPTED, Json(Queued { message_id: id })))
}

/// The endpoint's delivery attempts, newest first.
#[utoipa::path(
    get, path = "/v1/webhooks/endpoints/{id}/attempts", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id"), AttemptQuery),
    responses((status = 200, body = AttemptList), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn attempts(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<AttemptQuery>,
) -> Result<Json<AttemptList>, Problem> {
    let tenant = caller.tenant_for(Permission::ReadWebhooks)?;
    load(&app, tenant, &id).await?;
    let since = match &query.since {
        Some(text) => parse_time("since", text)?,
        None => 0,
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::unprocessable(format!(
            "limit must be within 1..1000, not {limit}"
        )));
    }
    let limit = i64::from(limit);
    let rows = app
        .store
        .attempts(tenant, &id, since, query.message_id.as_deref(), limit)
        .await?;
    Ok(Json(AttemptList {
        attempts: rows.into_iter().map(AttemptInfo::from).collect(),
    }))
}

/// Send one message again, or every message that failed for good since a time.
/// The message keeps its `webhook-id`.
#[utoipa::path(
    post, path = "/v1/webhooks/endpoints/{id}/replay", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    request_body = Replay,
    responses((status = 202, body = Replayed), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn replay(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Replay>,
) -> Result<impl IntoResponse, Problem> {
    let tenant = caller.tenant_for(Permission::ManageWebhooks)?;
    load(&app, tenant, &id).await?;
    let now = now_ms();
    let replayed = match (&body.message_id, &body.since) {
        (Some(message), None) => {
            if !app.store.replay_message(tenant, &id, message, now).await? {
                return Err(Problem::not_found(format!(
                    "endpoint {id:?} has no message {message:?}"
                )));
            }
            1
        }
        (None, Some(since)) => {
            let since = parse_time("since", since)?;
            app.store.replay_failed(tenant, &id, since, now).await?
        }
        _ => {
            return Err(Problem::unprocessable(
                "give either message_id or since (replays failed messages since then)",
            ));
        }
    };
    app.webhooks.wake();
    Ok((StatusCode::ACCEPTED, Json(Replayed { replayed })))
}
