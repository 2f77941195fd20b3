//! `POST /v1/sql`: one read-only query over the caller's history (see
//! [`crate::sql`]).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::{Caller, Permission};
use crate::extract::{ApiJson, bytes_problem};
use crate::problem::{CommonProblems, Problem};
use crate::sql::{SqlCaller, SqlFailure};
use crate::state::AppState;

/// Longest query accepted here (the body limit, `api.max_body_bytes`, applies
/// first; `veriflow sql` takes up to 256 KiB).
const MAX_SQL: usize = 32 << 10;

/// A query.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlBody {
    /// One SQL query (PostgreSQL dialect as DataFusion reads it). Read-only:
    /// DDL, DML and session statements are refused.
    #[schema(max_length = 32768)]
    pub sql: String,
}

/// Run one SQL query over the caller's history.
///
/// Tables and views: `verifications`, `outcomes`, `scored_requests`,
/// `kpi_minute`, `route_scorecard`, `fraud_signals`, `alerts` (see README).
/// A tenant's credential reads only its own rows, whatever the SQL; the
/// operator reads every tenant's. The body is `{"sql": "..."}` as JSON, or the
/// query itself as `text/plain` / `application/sql`. The answer's format
/// follows `Accept`: JSON (an array of objects; the default), `text/csv`,
/// `text/plain` (a table), `application/vnd.apache.arrow.stream` or
/// `application/vnd.apache.parquet`. Errors carry the PostgreSQL `sqlstate`.
#[utoipa::path(
    post, path = "/v1/sql", tag = "sql",
    request_body(content = SqlBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The result, in the format `Accept` asked for"),
        (status = 406, description = "`Accept` names no format offered", body = crate::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "A result over the row limit", body = crate::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "SQL that does not plan (syntax, unknown names, types)", body = crate::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "This process keeps no lake", body = crate::problem::ProblemBody, content_type = "application/problem+json"),
        CommonProblems
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn query(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Result<Response, Problem> {
    let scope = if caller.is_operator() && caller.tenant.is_none() {
        SqlCaller::Operator
    } else {
        SqlCaller::Tenant(caller.tenant_for(Permission::QuerySql)?.to_owned())
    };
    let headers = request.headers().clone();
    let sql = sql_of(&headers, request).await?;
    let engine = app.sql.get().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sql_unavailable",
            "this process keeps no history lake (set lake.dir)",
        )
    })?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let answer = engine
        .query(scope, &sql, accept)
        .await
        .map_err(problem_of)?;
    Ok(([(header::CONTENT_TYPE, answer.content_type)], answer.body).into_response())
}

/// The query text of a JSON or plain-text body.
async fn sql_of(headers: &HeaderMap, request: Request) -> Result<String, Problem> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let text = match media.as_str() {
        "text/plain" | "application/sql" => {
            let body = Bytes::from_request(request, &())
                .await
                .map_err(bytes_problem)?;
            String::from_utf8(body.to_vec())
                .map_err(|_| Problem::bad_request("the query is not UTF-8"))?
        }
        // JSON, and anything else: the shared JSON body rules answer (415
        // for a type that is neither).
        _ => {
            let ApiJson(body) = ApiJson::<SqlBody>::from_request(request, &()).await?;
            body.sql
        }
    };
    if text.len() > MAX_SQL {
        return Err(Problem::unprocessable(format!(
            "the query is longer than {MAX_SQL} bytes"
        )));
    }
    if text.trim().is_empty() {
        return Err(Problem::unprocessable("the query is empty"));
    }
    if text.contains('\0') {
        return Err(Problem::unprocessable("the query holds a NUL character"));
    }
    Ok(text)
}

/// SQL errors by class: the caller's query (422), its size (413), the format
/// asked for (406), time (408-like 503), the server's own failures (500).
fn problem_of(f: SqlFailure) -> Problem {
    let (status, code) = match f.sqlstate {
        "0A000" => (StatusCode::NOT_ACCEPTABLE, "not_acceptable"),
        "54000" => (StatusCode::PAYLOAD_TOO_LARGE, "result_too_large"),
        "57014" | "53200" => (StatusCode::SERVICE_UNAVAILABLE, "query_resources"),
        s if s.starts_with("42") => (StatusCode::UNPROCESSABLE_ENTITY, "sql_error"),
        s if s.starts_with("XX") || s.starts_with("58") => {
            tracing::error!(sqlstate = s, error = %f.message, "a query failed inside the engine");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
        _ => (StatusCode::UNPROCESSABLE_ENTITY, "sql_error"),
    };
    Problem::new(status, code, f.message).with_sqlstate(f.sqlstate)
}
