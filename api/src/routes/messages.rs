//! `/v1/webhooks/messages` and `/v1/webhooks/event-types`: a tenant's
//! messages — the ones the pipeline produced and the ones it publishes itself
//! — with where each stands at every endpoint, and the catalogue of types.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, response::IntoResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::webhooks::AttemptInfo;
use super::{parse_time, rfc3339};
use crate::auth::api_key::{hex, random_bytes};
use crate::auth::{Caller, Permission};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::problem::{CommonProblems, Problem};
use crate::state::AppState;
use crate::store::{DeliveryRow, MessageRow, now_ms};
use crate::webhooks::{Event, catalog, message_id};

/// Largest `payload` a tenant may publish, serialized.
pub const MAX_PAYLOAD_BYTES: usize = 32 * 1024;

/// An event of the tenant's own, to its subscribed endpoints.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishMessage {
    /// A type from `GET /v1/webhooks/event-types`, or one of your own
    /// (`app.<name>`).
    #[schema(max_length = 64)]
    pub event_type: String,
    /// The event's `data`: what endpoints' filters read and receive.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Publishing again with the same key sends nothing new: the message id
    /// (`webhook-id`) derives from it. At most 128 characters.
    #[schema(max_length = 128)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Published {
    /// The `webhook-id` of the message.
    pub id: String,
    pub event_type: String,
    pub timestamp: String,
    /// Deliveries this call queued: one per endpoint subscribed to the type
    /// whose filter passes. 0 when no endpoint wants it (nothing is stored)
    /// or the idempotency key was used before (nothing new is sent).
    pub queued: usize,
}

/// Where a message stands at one endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryInfo {
    pub endpoint_id: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<String>,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageInfo {
    pub id: String,
    pub event_type: String,
    pub created_at: String,
    pub deliveries: Vec<DeliveryInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<MessageInfo>,
}

/// One message: the body as sent, each endpoint's state, every attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDetail {
    #[serde(flatten)]
    pub message: MessageInfo,
    /// The exact body delivered: `{"type", "timestamp", "data"}`.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    /// Across endpoints, oldest first.
    pub attempts: Vec<AttemptInfo>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MessageQuery {
    /// Only messages created at or after this time (RFC 3339).
    pub since: Option<String>,
    pub event_type: Option<String>,
    /// At most this many, newest first (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeInfo {
    pub name: String,
    pub description: String,
    /// JSON Schema of the event's `data`.
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
    #[schema(value_type = Object)]
    pub example: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeList {
    pub event_types: Vec<EventTypeInfo>,
    /// The pattern of a tenant's own types.
    pub app_type_pattern: String,
}

fn deliveries(message: &str, rows: &[DeliveryRow]) -> Vec<DeliveryInfo> {
    rows.iter()
        .filter(|d| d.message_id == message)
        .map(|d| DeliveryInfo {
            endpoint_id: d.endpoint_id.clone(),
            status: d.status.clone(),
            attempts: d.attempts,
            next_attempt_at: (d.status == "pending").then(|| rfc3339(d.next_attempt_at)),
            updated_at: rfc3339(d.updated_at),
        })
        .collect()
}

fn info(m: &MessageRow, rows: &[DeliveryRow]) -> MessageInfo {
    MessageInfo {
        id: m.id.clone(),
        event_type: m.event_type.clone(),
        created_at: rfc3339(m.created_at),
        deliveries: deliveries(&m.id, rows),
    }
}

/// Publish an event of your own to your endpoints (filters and schedules
/// apply as for the pipeline's events).
#[utoipa::path(
    post, path = "/v1/webhooks/messages", tag = "webhooks",
    request_body = PublishMessage,
    responses((status = 202, body = Published), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn publish(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<PublishMessage>,
) -> Result<impl IntoResponse, Problem> {
    let tenant = caller.tenant_for(Permission::ManageWebhooks)?;
    let mut errors = Vec::new();
    if !catalog::is_known(&body.event_type) {
        errors.push(format!(
            "event_type {:?} is neither a veriflow type ({}) nor one of yours (`app.<name>`, {})",
            body.event_type,
            catalog::EVENT_TYPES.join(", "),
            catalog::APP_TYPE_PATTERN
        ));
    }
    if !body.payload.is_object() {
        errors.push("payload must be a JSON object".into());
    } else if body.payload.to_string().len() > MAX_PAYLOAD_BYTES {
        errors.push(format!("payload must be at most {MAX_PAYLOAD_BYTES} bytes"));
    }
    if let Some(key) = &body.idempotency_key
        && (key.is_empty() || key.chars().count() > 128)
    {
        errors.push("idempotency_key must be 1–128 characters".into());
    }
    if !errors.is_empty() {
        return Err(Problem::unprocessable(errors.join("; ")).with_errors(errors));
    }
    let now = now_ms();
    let event_id = match &body.idempotency_key {
        Some(key) => format!("app/{key}"),
        None => format!("app/{}", hex(&random_bytes::<12>())),
    };
    let event = Event {
        id: event_id,
        tenant_id: tenant.to_string(),
        event_type: body.event_type.clone(),
        timestamp: rfc3339(now),
        data: body.payload,
    };
    let queued = app
        .webhooks
        .publish(std::slice::from_ref(&event))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "publishing a tenant's message failed");
            Problem::internal()
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Published {
            id: message_id(&event.id, tenant),
            event_type: event.event_type,
            timestamp: event.timestamp,
            queued,
        }),
    ))
}

/// Your messages, newest first, with where each stands at every endpoint.
#[utoipa::path(
    get, path = "/v1/webhooks/messages", tag = "webhooks",
    params(MessageQuery),
    responses((status = 200, body = MessageList), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<MessageQuery>,
) -> Result<Json<MessageList>, Problem> {
    let tenant = caller.tenant_for(Permission::ReadWebhooks)?;
    let since = match &query.since {
        Some(t) => parse_time("since", t)?,
        None => 0,
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(Problem::unprocessable(format!(
            "limit must be within 1..500, not {limit}"
        )));
    }
    let messages = app
        .store
        .tenant_messages(tenant, since, query.event_type.as_deref(), i64::from(limit))
        .await?;
    let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
    let rows = app.store.deliveries_of(tenant, &ids).await?;
    Ok(Json(MessageList {
        messages: messages.iter().map(|m| info(m, &rows)).collect(),
    }))
}

/// One message: the body sent, each endpoint's state, every attempt.
#[utoipa::path(
    get, path = "/v1/webhooks/messages/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Message id (the `webhook-id`)")),
    responses((status = 200, body = MessageDetail), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn get(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MessageDetail>, Problem> {
    let tenant = caller.tenant_for(Permission::ReadWebhooks)?;
    let message = app
        .store
        .tenant_message(tenant, &id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no message {id:?}")))?;
    let rows = app
        .store
        .deliveries_of(tenant, std::slice::from_ref(&message.id))
        .await?;
    let attempts = app.store.message_attempts(tenant, &message.id).await?;
    Ok(Json(MessageDetail {
        message: info(&message, &rows),
        body: serde_json::from_str(&message.payload).unwrap_or(serde_json::Value::Null),
        attempts: attempts.into_iter().map(AttemptInfo::from).collect(),
    }))
}

/// The event types endpoints can subscribe to, with a JSON Schema and an
/// example of each one's `data`.
#[utoipa::path(
    get, path = "/v1/webhooks/event-types", tag = "webhooks",
    responses((status = 200, body = EventTypeList), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn event_types(
    Extension(caller): Extension<Caller>,
) -> Result<Json<EventTypeList>, Problem> {
    caller.tenant_for(Permission::ReadWebhooks)?;
    Ok(Json(EventTypeList {
        event_types: catalog::catalogue()
            .into_iter()
            .map(|e| EventTypeInfo {
                name: e.name.into(),
                description: e.description.into(),
                schema: e.schema,
                example: e.example,
            })
            .collect(),
        app_type_pattern: catalog::APP_TYPE_PATTERN.into(),
    }))
}
