//! Operational endpoints: liveness and readiness (unauthenticated), and the
//! API's metrics (the operator's token).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::api_key::tokens_equal;
use crate::auth::middleware::host_domain;
use crate::problem::Problem;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// The store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, body = Health),
        (status = 503, description = "The store does not answer", body = crate::problem::ProblemBody, content_type = "application/problem+json")
    ))]
pub async fn readyz(State(app): State<AppState>) -> Result<Json<Health>, Problem> {
    match app.store.ping().await {
        Ok(()) => Ok(Json(Health {
            status: "ready".into(),
        })),
        Err(e) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("the store does not answer: {e}"),
        )),
    }
}

/// Prometheus metrics of the API, for the platform operator only: they name
/// every tenant's webhook endpoints. A tenant's credential, a tenant's custom
/// domain, or no credential is refused (`veriflow run` also serves the
/// engine's metrics on `metrics.listen`, which should not be exposed).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, description = "Not the operator's token", body = crate::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Asked on a tenant's domain", body = crate::problem::ProblemBody, content_type = "application/problem+json")
    ),
    security(("bearer" = [])))]
pub async fn metrics(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, Problem> {
    if let Some(domain) = host_domain(&headers)
        && app.store.tenant_for_domain(&domain).await?.is_some()
    {
        return Err(Problem::not_found("no such resource"));
    }
    let operator = app.config.operator_token.as_deref();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match (operator, token) {
        (Some(expected), Some(token)) if tokens_equal(token, expected) => {}
        _ => {
            return Err(Problem::unauthorized(
                "the API's metrics are the operator's: send its token as `Authorization: Bearer`",
            ));
        }
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        {
            // Two registries, one exposition: drop the first one's `# EOF`.
            let http = app.metrics.render();
            let http = http.strip_suffix("# EOF\n").unwrap_or(&http).to_string();
            http + &app.webhooks.metrics().render()
        },
    ))
}
