//! Extractors whose rejections are problems instead of axum's plain text,
//! and which hold every body and parameter to the same rules whatever the
//! route, whatever the store:
//!
//! - a body is one JSON **object** (serde would read an array as a struct's
//!   fields in order: `["name","viewer"]` is not a key request);
//! - text never holds NUL (U+0000): PostgreSQL cannot store it, SQLite can,
//!   and one API must not behave two ways;
//! - a number with no fractional part (`3446.0`) is an integer, as JSON
//!   Schema says, wherever an integer is expected;
//! - nesting is bounded (serde_json's recursion limit, 128).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::{Number, Value};

use crate::problem::Problem;

/// A JSON body: 400 for bad syntax, 415 without a JSON content type, 413 over
/// the size limit, 422 for a body that is not an object, holds NUL, or has
/// missing or ill-typed fields (named by their path).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .is_some_and(|m| {
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if !json_type {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a request with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(bytes_problem)?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not JSON: {e}"),
            )
        })?;
        parse_body(value).map(ApiJson)
    }
}

/// A parsed body as `T`, under the rules above.
pub fn parse_body<T: DeserializeOwned>(mut value: Value) -> Result<T, Problem> {
    if !value.is_object() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("the body must be a JSON object, not {}", kind(&value)),
        ));
    }
    if let Some(path) = nul_at(&value, "") {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("{path}: text must not contain NUL (U+0000)"),
        ));
    }
    whole_numbers_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let detail = if path == "." || path.is_empty() {
            message
        } else {
            format!("{path}: {message}")
        };
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", detail)
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where the first NUL is (a key or a string), as a dotted path.
fn nul_at(v: &Value, at: &str) -> Option<String> {
    match v {
        Value::String(s) if s.contains('\0') => {
            Some(if at.is_empty() { ".".into() } else { at.into() })
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_at(item, &format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let here = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if k.contains('\0') {
                return Some(here);
            }
            nul_at(item, &here)
        }),
        _ => None,
    }
}

/// `3446.0` → `3446` (within ±2^53, where floats are exact): integer fields
/// accept it, float fields read it the same.
fn whole_numbers_as_integers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64()
                && n.is_f64()
                && f.fract() == 0.0
                && f.abs() <= 9_007_199_254_740_992.0
            {
                *n = Number::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

pub(crate) fn bytes_problem(rejection: BytesRejection) -> Problem {
    let status = rejection.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "body_too_large"
    } else {
        "bad_body"
    };
    Problem::new(status, code, rejection.body_text())
}

/// A percent-encoded NUL in the path or query: refused before any route
/// sees it (`%00` decodes to U+0000).
fn nul_in_uri(parts: &Parts) -> Option<Problem> {
    let raw = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
    raw.to_ascii_lowercase().contains("%00").then(|| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_parameter",
            "path and query parameters must not contain NUL (%00)",
        )
    })
}

/// `axum::extract::Path`, answering bad path segments with a problem.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        if let Some(problem) = nul_in_uri(parts) {
            return Err(problem);
        }
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_problem(rejection)),
        }
    }
}

fn path_problem(rejection: PathRejection) -> Problem {
    Problem::new(rejection.status(), "bad_path", rejection.body_text())
}

/// `axum::extract::Query`, answering a malformed query string with a 400 problem.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        if let Some(problem) = nul_in_uri(parts) {
            return Err(problem);
        }
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(Problem::new(
                rejection.status(),
                "bad_query",
                rejection.body_text(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Key {
        name: String,
        limit: Option<u32>,
        share: Option<f64>,
    }

    #[test]
    fn only_objects_without_nul_and_whole_numbers_are_integers() {
        let err = parse_body::<Key>(json!(["name", null, null])).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(parse_body::<Key>(json!("name")).is_err());
        assert!(parse_body::<Key>(json!(null)).is_err());
        let err = parse_body::<Key>(json!({"name": "a\u{0}b"})).unwrap_err();
        assert!(
            err.body()
                .detail
                .contains("name: text must not contain NUL")
        );
        assert!(parse_body::<Key>(json!({"name": "a", "x\u{0}": 1})).is_err());
        let k: Key = parse_body(json!({"name": "a", "limit": 3446.0, "share": 1.0})).unwrap();
        assert_eq!(k.limit, Some(3446));
        assert_eq!(k.share, Some(1.0));
        let err = parse_body::<Key>(json!({"name": "a", "limit": 3446.5})).unwrap_err();
        assert!(
            err.body().detail.starts_with("limit:"),
            "{}",
            err.body().detail
        );
    }
}
