//! The authentication and tenant-resolution layer of `/v1`.
//!
//! Order of resolution, per the tenancy model:
//! 1. the `Host` header's domain, if it is a tenant's custom domain;
//! 2. the credential (`x-api-key` or `Authorization: Bearer`): a tenant key
//!    scopes to its tenant, and must agree with (1) when both are present;
//! 3. for the operator only, the `veriflow-tenant` header.
//!
//! Then the per-credential rate limit, then the request's usage is counted.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Caller, Principal, Role, api_key};
use crate::problem::Problem;
use crate::state::AppState;
use crate::usage::Counter;

pub const TENANT_HEADER: &str = "veriflow-tenant";

pub async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let caller = match resolve(&app, req.headers()).await {
        Ok(caller) => caller,
        Err(problem) => return problem.into_response(),
    };
    if let Err(wait) = app.limiter.check(&caller.limit_key()) {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        return Problem::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "rate limit of {} requests/s for this credential exceeded",
                app.config.rate_limit_per_second
            ),
        )
        .with_retry_after(seconds)
        .into_response();
    }
    if let Some(tenant) = &caller.tenant {
        app.usage.add(tenant, Counter::Requests, 1);
    }
    let tenant = caller.tenant.clone();
    req.extensions_mut().insert(caller);
    let mut response = next.run(req).await;
    if let Some(tenant) = tenant {
        response.extensions_mut().insert(ResolvedTenant(tenant));
    }
    response
}

/// The tenant a request was scoped to, left on the response for the access log.
#[derive(Clone)]
pub struct ResolvedTenant(pub String);

async fn resolve(app: &AppState, headers: &HeaderMap) -> Result<Caller, Problem> {
    let host_tenant = match host_domain(headers) {
        Some(domain) => app.store.tenant_for_domain(&domain).await?,
        None => None,
    };
    let token = credential(headers)?.ok_or_else(|| {
        Problem::unauthorized(
            "missing credentials: send an API key as `x-api-key` or `Authorization: Bearer`",
        )
    })?;

    if let Some(expected) = &app.config.operator_token
        && api_key::tokens_equal(token, expected)
    {
        let tenant = match (host_tenant, headers.get(TENANT_HEADER)) {
            (Some(t), _) => Some(t),
            (None, Some(value)) => {
                let id = value
                    .to_str()
                    .map_err(|_| Problem::bad_request("`veriflow-tenant` is not valid text"))?;
                if app.store.tenant(id).await?.is_none() {
                    return Err(Problem::not_found(format!("no tenant {id:?}")));
                }
                Some(id.to_string())
            }
            (None, None) => None,
        };
        return Ok(Caller {
            principal: Principal::Operator,
            tenant,
        });
    }

    let invalid = || Problem::unauthorized("invalid API key");
    let (id, secret) = api_key::parse(token).ok_or_else(invalid)?;
    let key = match app.keys.get(id) {
        Some(key) => key,
        None => {
            let key = app.store.key(id).await?.ok_or_else(invalid)?;
            app.keys.put(key.clone());
            key
        }
    };
    if !api_key::verify(secret, &key.secret_hash) {
        return Err(invalid());
    }
    if key.revoked_at.is_some() {
        return Err(Problem::unauthorized("this API key has been revoked"));
    }
    let role = Role::parse(&key.role).ok_or_else(|| {
        tracing::error!(key = %key.id, role = %key.role, "stored key has an unknown role");
        Problem::internal()
    })?;
    if let Some(host_tenant) = &host_tenant
        && *host_tenant != key.tenant_id
    {
        return Err(Problem::new(
            axum::http::StatusCode::FORBIDDEN,
            "tenant_mismatch",
            "this API key belongs to another tenant than the requested domain",
        ));
    }
    Ok(Caller {
        tenant: Some(key.tenant_id.clone()),
        principal: Principal::ApiKey {
            key_id: key.id,
            tenant_id: key.tenant_id,
            role,
        },
    })
}

/// The presented token, from `x-api-key` or `Authorization: Bearer`.
fn credential(headers: &HeaderMap) -> Result<Option<&str>, Problem> {
    if let Some(value) = headers.get("x-api-key") {
        let token = value
            .to_str()
            .map_err(|_| Problem::unauthorized("invalid API key"))?;
        return Ok(Some(token.trim()));
    }
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| Problem::unauthorized("invalid Authorization header"))?;
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(Problem::unauthorized(
                "unsupported Authorization scheme: use `Bearer <api key>`",
            ));
        }
        return Ok(Some(token.trim()));
    }
    Ok(None)
}

/// The request's host name: lower case, without port or trailing dot.
pub fn host_domain(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next()? // IPv6 literal: never a tenant domain, but parse it
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn host_domains_are_normalised() {
        for (raw, want) in [
            ("Verify.Acme.com", Some("verify.acme.com")),
            ("verify.acme.com:8443", Some("verify.acme.com")),
            ("verify.acme.com.", Some("verify.acme.com")),
            ("[::1]:8080", Some("::1")),
            ("", None),
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(raw).unwrap());
            assert_eq!(host_domain(&h).as_deref(), want, "{raw}");
        }
    }
}
