//! `/v1/tenants`: white-label tenants, their domains and settings.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, response::IntoResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::patterns::{self, matches};
use super::{keys, rfc3339};
use crate::auth::{Caller, Permission, Role};
use crate::extract::{ApiJson, ApiPath};
use crate::problem::{CommonProblems, Problem};
use crate::state::AppState;
use crate::store::{TenantRow, now_ms};
pub use crate::tenant_settings::Branding;
use crate::tenant_settings::TenantSettings;
use veriflow_common::scoring::{FraudThresholds, ProviderPolicy};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    /// Data-residency tag.
    pub region: String,
    /// Custom domains; a request whose `Host` is one of them is this tenant's.
    pub domains: Vec<String>,
    pub branding: Branding,
    pub feature_flags: BTreeMap<String, bool>,
    /// `null`: the scoring model's suggested thresholds (tuned with each model
    /// version for 0.5 % false blocks on its holdout).
    pub fraud_thresholds: Option<FraudThresholds>,
    pub providers: ProviderPolicy,
    pub created_at: String,
    pub updated_at: String,
}

impl Tenant {
    fn from_row(row: TenantRow) -> Result<Tenant, Problem> {
        let settings = TenantSettings::of(&row).map_err(|e| {
            tracing::error!(tenant = %row.id, error = %e, "stored tenant settings are corrupt");
            Problem::internal()
        })?;
        Ok(Tenant {
            id: row.id,
            name: row.name,
            region: row.region,
            domains: row.domains,
            branding: settings.branding,
            feature_flags: settings.feature_flags,
            fraud_thresholds: settings.fraud_thresholds,
            providers: settings.providers,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        })
    }

    fn to_row(&self, created_at: i64, updated_at: i64) -> Result<TenantRow, Problem> {
        let settings = TenantSettings {
            branding: self.branding.clone(),
            feature_flags: self.feature_flags.clone(),
            fraud_thresholds: self.fraud_thresholds,
            providers: self.providers.clone(),
        };
        Ok(TenantRow {
            id: self.id.clone(),
            name: self.name.clone(),
            region: self.region.clone(),
            settings: serde_json::to_string(&settings).map_err(|_| Problem::internal())?,
            domains: self.domains.clone(),
            created_at,
            updated_at,
        })
    }

    /// The branding end users see: the company name defaults to the tenant's name.
    pub fn effective_branding(&self) -> Branding {
        let mut b = self.branding.clone();
        if b.company_name.is_none() {
            b.company_name = Some(self.name.clone());
        }
        b
    }

    fn validate(&self) -> Result<(), Problem> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, message: String| {
            if !ok {
                errors.push(message);
            }
        };
        check(
            matches(patterns::TENANT_ID, &self.id),
            format!("id {:?} must match {}", self.id, patterns::TENANT_ID),
        );
        check(
            self.name.chars().count() <= 200 && matches(patterns::NAME, &self.name),
            "name must be 1–200 characters without leading or trailing spaces".into(),
        );
        check(
            matches(patterns::REGION, &self.region),
            format!("region must match {}", patterns::REGION),
        );
        check(
            self.domains.len() <= 20,
            "at most 20 domains per tenant".into(),
        );
        for d in &self.domains {
            check(
                d.len() <= 253 && matches(patterns::DOMAIN, d),
                format!("domain {d:?} is not a lower-case host name with a dot"),
            );
        }
        let b = &self.branding;
        if let Some(name) = &b.company_name {
            check(
                name.chars().count() <= 200 && matches(patterns::NAME, name),
                "branding.company_name must be 1–200 characters without leading or trailing spaces"
                    .into(),
            );
        }
        if let Some(url) = &b.logo_url {
            check(
                url.chars().count() <= 2048 && matches(patterns::URL, url),
                "branding.logo_url must be an http(s) URL".into(),
            );
        }
        if let Some(color) = &b.primary_color {
            check(
                matches(patterns::COLOR, color),
                "branding.primary_color must be #RRGGBB".into(),
            );
        }
        if let Some(css) = &b.custom_css {
            check(
                css.chars().count() <= 16384 && matches(patterns::NO_ANGLE, css),
                "branding.custom_css must be at most 16384 characters without < or >".into(),
            );
        }
        check(
            self.feature_flags.len() <= 100,
            "at most 100 feature flags".into(),
        );
        if let Some(t) = &self.fraud_thresholds {
            for (name, v) in [("review", t.review), ("block", t.block)] {
                check(
                    (0.0..=1.0).contains(&v),
                    format!("fraud_thresholds.{name} must be within 0..1"),
                );
            }
            check(
                t.review <= t.block,
                "fraud_thresholds.review must not exceed fraud_thresholds.block".into(),
            );
        }
        let p = &self.providers;
        check(
            p.allow.len() <= 50 && p.deny.len() <= 50,
            "at most 50 providers per list".into(),
        );
        for name in p.allow.iter().chain(&p.deny) {
            check(
                matches(patterns::PROVIDER, &name.0),
                format!(
                    "provider name {:?} must match {}",
                    name.0,
                    patterns::PROVIDER
                ),
            );
        }
        if let Some(cost) = p.max_cost_per_message {
            check(
                cost >= 0.0,
                "providers.max_cost_per_message must not be negative".into(),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Problem::unprocessable(errors.join("; ")).with_errors(errors))
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{1,62}$")]
    pub id: String,
    #[schema(max_length = 200, pattern = "^\\S(.*\\S)?$")]
    pub name: String,
    /// Data-residency tag; `global` when omitted.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,31}$")]
    pub region: Option<String>,
    #[schema(max_items = 20, inline)]
    pub domains: Option<Vec<Domain>>,
    pub branding: Option<Branding>,
    pub feature_flags: Option<BTreeMap<String, bool>>,
    pub fraud_thresholds: Option<FraudThresholds>,
    pub providers: Option<ProviderPolicy>,
}

/// A custom domain: a lower-case host name with at least one dot.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")]
pub struct Domain(pub String);

/// Fields to change; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    #[schema(max_length = 200, pattern = "^\\S(.*\\S)?$")]
    pub name: Option<String>,
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,31}$")]
    pub region: Option<String>,
    /// Replaces the list.
    #[schema(max_items = 20, inline)]
    pub domains: Option<Vec<Domain>>,
    /// Replaces the branding.
    pub branding: Option<Branding>,
    /// Replaces the flags.
    pub feature_flags: Option<BTreeMap<String, bool>>,
    /// `null` returns to the model's suggested thresholds.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<FraudThresholds>)]
    pub fraud_thresholds: Option<Option<FraudThresholds>>,
    pub providers: Option<ProviderPolicy>,
}

/// A field that is present (even as `null`) is `Some`; absent stays `None`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantCreated {
    pub tenant: Tenant,
    /// The tenant's first admin key; its secret is shown only here.
    pub admin_key: keys::CreatedKey,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
}

/// Domains are a set: sorted, each once.
fn domain_set(domains: Vec<Domain>) -> Vec<String> {
    let mut set: Vec<String> = domains.into_iter().map(|d| d.0).collect();
    set.sort();
    set.dedup();
    set
}

/// Scoring reads tenants' settings from memory: make a change visible at once
/// (other instances see it within the periodic refresh).
async fn refresh_scoring(app: &AppState) {
    if let Err(e) = app.scoring_settings.refresh(&app.store).await {
        tracing::warn!(error = %e, "refreshing tenants' scoring settings failed; the periodic refresh retries");
    }
}

/// Loads a tenant as the API shows it.
pub async fn load(app: &AppState, id: &str) -> Result<Tenant, Problem> {
    let row = app
        .store
        .tenant(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no tenant {id:?}")))?;
    Tenant::from_row(row)
}

/// Create a tenant (operator only); returns it with a first admin API key.
#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants",
    request_body = CreateTenant,
    responses((status = 201, body = TenantCreated), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn create(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<impl IntoResponse, Problem> {
    caller.require_operator()?;
    let now = now_ms();
    let tenant = Tenant {
        id: body.id,
        name: body.name,
        region: body.region.unwrap_or_else(|| "global".into()),
        domains: domain_set(body.domains.unwrap_or_default()),
        branding: body.branding.unwrap_or_default(),
        feature_flags: body.feature_flags.unwrap_or_default(),
        fraud_thresholds: body.fraud_thresholds,
        providers: body.providers.unwrap_or_default(),
        created_at: rfc3339(now),
        updated_at: rfc3339(now),
    };
    tenant.validate()?;
    app.store.create_tenant(&tenant.to_row(now, now)?).await?;
    refresh_scoring(&app).await;
    let admin_key = keys::issue(&app, &tenant.id, "initial admin key", Role::Admin).await?;
    Ok((
        StatusCode::CREATED,
        Json(TenantCreated { tenant, admin_key }),
    ))
}

/// List tenants: all of them for the operator, the caller's own for a tenant key.
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants",
    responses((status = 200, body = TenantList), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<TenantList>, Problem> {
    let tenants = if caller.is_operator() {
        app.store
            .tenants()
            .await?
            .into_iter()
            .map(Tenant::from_row)
            .collect::<Result<Vec<_>, _>>()?
    } else {
        let id = caller.tenant_for(Permission::ReadTenant)?;
        vec![load(&app, id).await?]
    };
    Ok(Json(TenantList { tenants }))
}

/// Read a tenant.
#[utoipa::path(
    get, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = Tenant), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn get(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Tenant>, Problem> {
    caller.tenant_by_id(&id, Permission::ReadTenant)?;
    Ok(Json(load(&app, &id).await?))
}

/// Change a tenant's settings (operator, or the tenant's admins).
#[utoipa::path(
    patch, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    request_body = UpdateTenant,
    responses((status = 200, body = Tenant), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn update(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateTenant>,
) -> Result<Json<Tenant>, Problem> {
    caller.tenant_by_id(&id, Permission::ManageTenant)?;
    let row = app
        .store
        .tenant(&id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no tenant {id:?}")))?;
    let created_at = row.created_at;
    let mut tenant = Tenant::from_row(row)?;
    if let Some(v) = body.name {
        tenant.name = v;
    }
    if let Some(v) = body.region {
        tenant.region = v;
    }
    if let Some(v) = body.domains {
        tenant.domains = domain_set(v);
    }
    if let Some(v) = body.branding {
        tenant.branding = v;
    }
    if let Some(v) = body.feature_flags {
        tenant.feature_flags = v;
    }
    if let Some(v) = body.fraud_thresholds {
        tenant.fraud_thresholds = v;
    }
    if let Some(v) = body.providers {
        tenant.providers = v;
    }
    tenant.validate()?;
    let now = now_ms();
    app.store
        .update_tenant(&tenant.to_row(created_at, now)?)
        .await?;
    refresh_scoring(&app).await;
    tenant.updated_at = rfc3339(now);
    Ok(Json(tenant))
}

/// Delete a tenant and everything it owns (operator only).
#[utoipa::path(
    delete, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 204, description = "Deleted"), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn delete(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, Problem> {
    caller.require_operator()?;
    if app.store.delete_tenant(&id).await? {
        app.keys.clear();
        refresh_scoring(&app).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("no tenant {id:?}")))
    }
}
