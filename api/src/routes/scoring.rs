//! `POST /v1/route` and `POST /v1/score`: a verification about to be sent,
//! scored from the stream's live features (see [`crate::scoring`]).

use std::net::IpAddr;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::patterns::{self, matches};
use super::{parse_time, rfc3339};
use crate::auth::{Caller, Permission};
use crate::extract::ApiJson;
use crate::problem::{CommonProblems, Problem};
use crate::scoring::{
    FraudDecision, ModelVersions, Prospect, RankedProvider, Scored, ScoringError,
};
use crate::state::AppState;
use crate::store::now_ms;
use crate::usage::Counter;
use veriflow_common::scoring::{FraudThresholds, ProviderName};

/// A verification about to be sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProspectBody {
    /// E.164.
    #[schema(pattern = "^\\+[1-9][0-9]{6,14}$")]
    pub phone_number: String,
    /// ISO 3166-1 alpha-2 of the phone number.
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country: String,
    /// The id the verification will carry: it decides the A/B arm as in the
    /// stream. Without one, the champion model answers.
    #[schema(max_length = 128)]
    pub verification_id: Option<String>,
    /// The end user's IP address, if known.
    pub ip: Option<String>,
    /// The IP's country, if upstream knows it.
    #[schema(pattern = "^[A-Z]{2}$")]
    pub ip_country: Option<String>,
    #[schema(max_length = 128)]
    pub device_id: Option<String>,
    /// RFC 3339; now when omitted. Features are read as of this time.
    pub requested_at: Option<String>,
    /// Providers already tried for this verification: a retry goes elsewhere.
    #[serde(default)]
    #[schema(max_items = 20, inline)]
    pub tried: Vec<ProviderName>,
}

/// Where to send a verification, and its fraud verdict.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteAnswer {
    /// The providers the tenant's policy allows, best first.
    pub routes: Vec<RankedProvider>,
    /// The provider to send through (Thompson sampling over the success
    /// model's uncertainty; usually `routes[0]`). `null`: no provider allowed.
    pub choice: Option<String>,
    #[serde(flatten)]
    pub score: ScoreAnswer,
}

/// The fraud verdict on a verification about to be sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreAnswer {
    pub tenant_id: String,
    pub verification_id: Option<String>,
    pub requested_at: String,
    /// Calibrated probability of SMS pumping.
    pub fraud_score: f32,
    pub fraud_decision: FraudDecision,
    /// The features that pushed the score up most, strongest first.
    pub fraud_reasons: Vec<String>,
    /// The tenant's thresholds, else the model's suggestion.
    pub fraud_thresholds: FraudThresholds,
    pub model: ModelVersions,
    /// A/B arm: `champion` or `challenger`.
    pub variant: String,
    /// The live feature values read (names as on the features topic).
    #[schema(value_type = Object)]
    pub features: serde_json::Value,
    /// The input partition whose history they come from; `null` when this
    /// instance has seen nothing of this phone, prefix, IP, device or country
    /// for the tenant (a first request, or a partition held elsewhere).
    pub features_partition: Option<i32>,
}

/// Rank the providers for a verification about to be sent.
///
/// Reads the stream's live features (phone, prefix, IP, device and tenant
/// history) and route statistics, and the loaded models — the numbers
/// `verifications.scored` would carry for the same request — then applies the
/// tenant's provider policy (allow, deny, cost ceiling) and fraud thresholds.
#[utoipa::path(
    post, path = "/v1/route", tag = "scoring",
    request_body = ProspectBody,
    responses(
        (status = 200, body = RouteAnswer),
        (status = 503, description = "No stream or no models on this process", body = crate::problem::ProblemBody, content_type = "application/problem+json"),
        CommonProblems
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn route(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<ProspectBody>,
) -> Result<Json<RouteAnswer>, Problem> {
    let (prospect, scored) = score_prospect(&app, &caller, body)?;
    let verdict = &scored.verdict;
    Ok(Json(RouteAnswer {
        routes: verdict.routes.clone(),
        choice: verdict.choice.clone(),
        score: answer(prospect, scored),
    }))
}

/// The fraud risk of a verification about to be sent.
///
/// The same live features and models as `/v1/route`; the decision uses the
/// tenant's thresholds (else the model's suggestion). `block` is for the
/// upstream to act on; `review` is informative.
#[utoipa::path(
    post, path = "/v1/score", tag = "scoring",
    request_body = ProspectBody,
    responses(
        (status = 200, body = ScoreAnswer),
        (status = 503, description = "No stream or no models on this process", body = crate::problem::ProblemBody, content_type = "application/problem+json"),
        CommonProblems
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn score(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<ProspectBody>,
) -> Result<Json<ScoreAnswer>, Problem> {
    let (prospect, scored) = score_prospect(&app, &caller, body)?;
    Ok(Json(answer(prospect, scored)))
}

fn score_prospect(
    app: &AppState,
    caller: &Caller,
    body: ProspectBody,
) -> Result<(Prospect, Scored), Problem> {
    let tenant = caller.tenant_for(Permission::Score)?;
    let prospect = prospect(tenant, body)?;
    let scorer = app.scorer.get().ok_or_else(|| {
        Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "scoring_unavailable",
            "live scoring runs inside `veriflow run` (with [scoring] models set); \
             this process has no stream",
        )
    })?;
    let settings = app.scoring_settings.get(tenant);
    let scored = scorer
        .score(&prospect, settings.as_deref())
        .map_err(|e| match e {
            ScoringError::Unavailable(m) => Problem::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "scoring_unavailable",
                m,
            ),
            ScoringError::Invalid(m) => Problem::unprocessable(m),
            ScoringError::Failed(m) => {
                tracing::error!(error = %m, "scoring a prospect failed");
                Problem::internal()
            }
        })?;
    app.usage.add(tenant, Counter::VerificationsScored, 1);
    Ok((prospect, scored))
}

fn answer(prospect: Prospect, scored: Scored) -> ScoreAnswer {
    let v = scored.verdict;
    ScoreAnswer {
        tenant_id: prospect.tenant_id,
        verification_id: prospect.verification_id,
        requested_at: rfc3339(prospect.requested_at),
        fraud_score: v.fraud_score,
        fraud_decision: v.fraud_decision,
        fraud_reasons: v.fraud_reasons,
        fraud_thresholds: v.fraud_thresholds,
        model: v.model,
        variant: scored.variant.to_string(),
        features: scored.features,
        features_partition: scored.partition,
    }
}

/// Checks the body; every problem is listed at once.
fn prospect(tenant: &str, body: ProspectBody) -> Result<Prospect, Problem> {
    let mut errors = Vec::new();
    if !matches(patterns::PHONE, &body.phone_number) {
        errors.push("phone_number must be E.164: + and 7 to 15 digits".to_string());
    }
    if !matches(patterns::COUNTRY, &body.country) {
        errors.push("country must be two upper-case letters (ISO 3166-1 alpha-2)".into());
    }
    if body
        .ip_country
        .as_deref()
        .is_some_and(|c| !matches(patterns::COUNTRY, c))
    {
        errors.push("ip_country must be two upper-case letters (ISO 3166-1 alpha-2)".into());
    }
    if body
        .ip
        .as_deref()
        .is_some_and(|ip| ip.parse::<IpAddr>().is_err())
    {
        errors.push("ip must be an IPv4 or IPv6 address".into());
    }
    for (field, value) in [
        ("verification_id", &body.verification_id),
        ("device_id", &body.device_id),
    ] {
        if value
            .as_deref()
            .is_some_and(|v| v.is_empty() || v.len() > 128)
        {
            errors.push(format!("{field} must be 1 to 128 bytes"));
        }
    }
    if body.tried.len() > 20 {
        errors.push("tried lists at most 20 providers".into());
    }
    let requested_at = match body.requested_at.as_deref() {
        Some(text) => match parse_time("requested_at", text) {
            Ok(ms) => Some(ms),
            Err(_) => {
                errors.push("requested_at must be an RFC 3339 time".into());
                None
            }
        },
        None => Some(now_ms()),
    };
    if !errors.is_empty() {
        return Err(Problem::unprocessable(errors.join("; ")).with_errors(errors));
    }
    Ok(Prospect {
        tenant_id: tenant.to_string(),
        verification_id: body.verification_id,
        phone_number: body.phone_number,
        country: body.country,
        ip: body.ip,
        ip_country: body.ip_country,
        device_id: body.device_id,
        requested_at: requested_at.unwrap_or_default(),
        tried: body.tried.into_iter().map(|p| p.0).collect(),
    })
}
