//! Cross-cutting layers: request ids, access log and metrics, timeouts, panics,
//! and problem bodies for unknown routes and methods.

use std::any::Any;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::middleware::ResolvedTenant;
use crate::problem::Problem;
use crate::state::AppState;

pub const REQUEST_ID: &str = "x-request-id";

/// The request's id: the caller's `x-request-id` when it is a sane token, else a
/// fresh one; echoed on the response and in the access log.
#[derive(Clone)]
pub struct RequestId(pub String);

pub async fn observe(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(new_request_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_string();

    let mut response = next.run(req).await;

    let route = response
        .extensions()
        .get::<RouteTemplate>()
        .map_or("unmatched", |r| r.0.as_str())
        .to_string();

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    app.metrics
        .observe(method.as_str(), &route, status, elapsed.as_secs_f64());
    let tenant = response
        .extensions()
        .get::<ResolvedTenant>()
        .map(|t| t.0.clone());
    tracing::info!(
        target: "veriflow::access",
        request_id = %id,
        method = %method,
        path = %path,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1e3,
        tenant = tenant.as_deref().unwrap_or("-"),
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The matched route template, carried out on the response for [`observe`] (which
/// runs before routing and so cannot see it on the request).
#[derive(Clone)]
struct RouteTemplate(String);

/// Route layer: records which route template answered.
pub async fn tag_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let mut response = next.run(req).await;
    if let Some(route) = route {
        response.extensions_mut().insert(RouteTemplate(route));
    }
    response
}

/// Bounds every request's run time; a request over the limit answers 503.
pub async fn timeout(State(app): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(app.config.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {:?} and was abandoned",
                app.config.request_timeout
            ),
        )
        .with_retry_after(1)
        .into_response(),
    }
}

/// A panic in a handler is a bug: log it, answer 500, keep serving.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(non-text panic)");
    tracing::error!(panic = message, "handler panicked");
    Problem::internal().into_response()
}

pub async fn unknown_route(req: Request) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "unknown_route",
        format!(
            "no route {} {}; see /openapi.json",
            req.method(),
            req.uri().path()
        ),
    )
}

pub async fn method_not_allowed(req: Request) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}; see /openapi.json",
            req.method(),
            req.uri().path()
        ),
    )
}

fn new_request_id() -> String {
    let bytes = crate::auth::api_key::random_bytes::<8>();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
