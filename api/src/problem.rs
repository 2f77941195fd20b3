//! RFC 9457 problem details: the one error shape every endpoint answers with.
//!
//! Handlers return `Result<_, Problem>`; extractor rejections, unknown routes,
//! panics, timeouts and rate limits are mapped to the same shape by the layers in
//! [`crate::layers`], so a client only ever has to parse one kind of error body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// An error, answered as `application/problem+json` ([`ProblemBody`]).
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    code: &'static str,
    detail: String,
    retry_after: Option<u64>,
    errors: Vec<String>,
    sqlstate: Option<&'static str>,
}

/// RFC 9457 problem details, as every error body reads.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemBody {
    /// A URI naming the kind of problem: `urn:veriflow:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, human-readable summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, for a human.
    pub detail: String,
    /// Machine-readable code, the last segment of `type`.
    pub code: String,
    /// Seconds to wait before retrying (rate limits, timeouts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Each offending field or entry, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// For SQL errors: the PostgreSQL error code a wire-protocol client gets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
            errors: Vec::new(),
            sqlstate: None,
        }
    }

    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            kind: format!("urn:veriflow:problem:{}", self.code),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_string(),
            retry_after: self.retry_after,
            errors: self.errors.clone(),
            sqlstate: self.sqlstate.map(str::to_owned),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, "conflict", detail)
    }

    pub fn unprocessable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", detail)
    }

    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle the request; it has been logged",
        )
    }

    pub fn with_errors(mut self, errors: Vec<String>) -> Problem {
        self.errors = errors;
        self
    }

    pub fn with_sqlstate(mut self, sqlstate: &'static str) -> Problem {
        self.sqlstate = Some(sqlstate);
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Problem {
        self.retry_after = Some(seconds);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        // RFC 9110 §11.6.1: a 401 says how to authenticate. Both schemes the
        // API takes: a bearer token, or the key in `x-api-key`.
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    r#"Bearer realm="veriflow", ApiKey realm="veriflow" header="x-api-key""#,
                ),
            );
        }
        response
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Problem {
        use crate::store::StoreError;
        match e {
            StoreError::Conflict(what) => Problem::conflict(what),
            StoreError::NotFound(what) => Problem::not_found(what),
            other => {
                tracing::error!(error = %other, "store error");
                Problem::internal()
            }
        }
    }
}

/// The error statuses every authenticated operation can answer with, for OpenAPI.
#[derive(utoipa::IntoResponses)]
pub enum CommonProblems {
    #[response(
        status = 400,
        description = "Malformed request",
        content_type = "application/problem+json"
    )]
    BadRequest(ProblemBody),
    #[response(
        status = 401,
        description = "Missing or invalid credentials",
        content_type = "application/problem+json"
    )]
    Unauthorized(ProblemBody),
    #[response(
        status = 403,
        description = "The credentials' role does not allow this, or the host belongs to another tenant",
        content_type = "application/problem+json"
    )]
    Forbidden(ProblemBody),
    #[response(
        status = 404,
        description = "No such resource for this tenant",
        content_type = "application/problem+json"
    )]
    NotFound(ProblemBody),
    #[response(
        status = 405,
        description = "Method not allowed on this path",
        content_type = "application/problem+json"
    )]
    MethodNotAllowed(ProblemBody),
    #[response(
        status = 406,
        description = "Only JSON responses are offered",
        content_type = "application/problem+json"
    )]
    NotAcceptable(ProblemBody),
    #[response(
        status = 409,
        description = "Conflicts with existing data",
        content_type = "application/problem+json"
    )]
    Conflict(ProblemBody),
    #[response(
        status = 413,
        description = "Body larger than api.max_body_bytes",
        content_type = "application/problem+json"
    )]
    TooLarge(ProblemBody),
    #[response(
        status = 415,
        description = "Body is not application/json",
        content_type = "application/problem+json"
    )]
    UnsupportedMediaType(ProblemBody),
    #[response(
        status = 422,
        description = "Well-formed JSON with invalid content",
        content_type = "application/problem+json"
    )]
    Unprocessable(ProblemBody),
    #[response(
        status = 429,
        description = "Rate limit of this API key exceeded; see Retry-After",
        content_type = "application/problem+json"
    )]
    TooManyRequests(ProblemBody),
    #[response(
        status = 503,
        description = "Timed out or store unavailable; retry later",
        content_type = "application/problem+json"
    )]
    Unavailable(ProblemBody),
}
