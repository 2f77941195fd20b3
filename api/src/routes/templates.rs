//! `/v1/templates`: localized SMS texts, tenant overrides and rendering.

use std::collections::BTreeMap;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use fluent::FluentArgs;
use serde::{Deserialize, Serialize};
use unic_langid::LanguageIdentifier;
use utoipa::ToSchema;

use super::patterns::{self, matches};
use super::rfc3339;
use super::tenants::{self, Branding};
use crate::auth::{Caller, Permission};
use crate::extract::{ApiJson, ApiPath};
use crate::problem::{CommonProblems, Problem};
use crate::state::AppState;
use crate::templates::negotiate::{self, Preferences};
use crate::templates::sms::{self, Encoding};
use crate::templates::{Direction, Origin, RenderError};

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceTemplates {
    pub service: String,
    /// Locales veriflow ships this message in.
    pub shipped: Vec<String>,
    /// Locales the tenant overrides it in.
    pub overridden: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    /// Locales veriflow ships; `en` is the last resort of every fallback chain.
    pub locales: Vec<String>,
    pub services: Vec<ServiceTemplates>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateSource {
    pub service: String,
    pub locale: String,
    pub origin: Origin,
    /// Fluent source of the message.
    pub source: String,
    /// When the tenant last changed its override.
    pub updated_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutTemplate {
    /// Fluent source defining the message named after the service (and optionally
    /// terms), e.g. `login = { $code } is your { $app_name } code`.
    #[schema(max_length = 4096)]
    pub source: String,
}

/// A template variable: text (kept as is, so codes keep leading zeros) or a
/// number (selects plural forms).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Variable {
    Text(String),
    Number(f64),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenderRequest {
    /// The message to render, e.g. `login`.
    #[schema(pattern = "^[a-zA-Z][a-zA-Z0-9_-]{0,63}$")]
    pub service: String,
    /// BCP 47; when absent, `Accept-Language` decides; `en` is the fallback.
    #[schema(
        pattern = "^[a-zA-Z]{2,3}(-[a-zA-Z]{4})?(-[a-zA-Z]{2}|-[0-9]{3})?(-[a-zA-Z0-9]{5,8}|-[0-9][a-zA-Z0-9]{3})*$"
    )]
    pub locale: Option<String>,
    pub variables: Variables,
}

/// Values for the message's placeables. Extra entries are passed to the message
/// too (for tenant overrides that use more variables).
#[derive(Debug, Deserialize, ToSchema)]
pub struct Variables {
    /// The one-time code; text, so leading zeros survive.
    #[schema(min_length = 1, max_length = 64)]
    pub code: String,
    /// Minutes the code stays valid; selects plural forms. Default 10 (the
    /// verification TTL of the contract).
    #[schema(minimum = 0.0, maximum = 100000.0)]
    pub minutes: Option<f64>,
    /// The product name; defaults to the tenant's branding company name.
    #[schema(max_length = 200)]
    pub app_name: Option<String>,
    #[serde(flatten)]
    #[schema(additional_properties)]
    pub extra: BTreeMap<String, Variable>,
}

pub const DEFAULT_MINUTES: f64 = 10.0;

#[derive(Debug, Serialize, ToSchema)]
pub struct RenderResponse {
    pub text: String,
    pub service: String,
    /// The locale the text is in, after negotiation and fallback.
    pub locale: String,
    pub direction: Direction,
    pub origin: Origin,
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 units (UCS-2).
    pub units: usize,
    pub segments: usize,
    pub units_per_segment: usize,
    pub branding: Branding,
}

/// Path parameters naming one message in one locale.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MessagePath {
    /// Service (message) name.
    #[param(pattern = "^[a-zA-Z][a-zA-Z0-9_-]{0,63}$")]
    pub service: String,
    /// BCP 47 locale.
    #[param(
        pattern = "^[a-zA-Z]{2,3}(-[a-zA-Z]{4})?(-[a-zA-Z]{2}|-[0-9]{3})?(-[a-zA-Z0-9]{5,8}|-[0-9][a-zA-Z0-9]{3})*$"
    )]
    pub locale: String,
}

impl MessagePath {
    fn validate(&self) -> Result<LanguageIdentifier, Problem> {
        check_service(&self.service)?;
        parse_locale(&self.locale)
    }
}

fn check_service(service: &str) -> Result<(), Problem> {
    if matches(patterns::SERVICE, service) {
        Ok(())
    } else {
        Err(Problem::unprocessable(format!(
            "service {service:?} must match {}",
            patterns::SERVICE
        )))
    }
}

fn parse_locale(locale: &str) -> Result<LanguageIdentifier, Problem> {
    let invalid = || Problem::unprocessable(format!("{locale:?} is not a BCP 47 locale"));
    if !matches(patterns::LOCALE, locale) {
        return Err(invalid());
    }
    locale.parse().map_err(|_| invalid())
}

/// List shipped services and locales, and the tenant's overrides.
#[utoipa::path(
    get, path = "/v1/templates", tag = "templates",
    responses((status = 200, body = TemplateList), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<TemplateList>, Problem> {
    let tenant = caller.tenant_for(Permission::ReadTemplates)?;
    let overrides = app.store.templates_of(tenant).await?;
    let mut services: BTreeMap<String, ServiceTemplates> = app
        .catalog
        .services()
        .into_iter()
        .map(|(service, shipped)| {
            let entry = ServiceTemplates {
                service: service.clone(),
                shipped,
                overridden: Vec::new(),
            };
            (service, entry)
        })
        .collect();
    for o in overrides {
        services
            .entry(o.service.clone())
            .or_insert_with(|| ServiceTemplates {
                service: o.service.clone(),
                shipped: Vec::new(),
                overridden: Vec::new(),
            })
            .overridden
            .push(o.locale);
    }
    Ok(Json(TemplateList {
        locales: app.catalog.locales(),
        services: services.into_values().collect(),
    }))
}

/// Read one message: the tenant's override if there is one, else the shipped text.
#[utoipa::path(
    get, path = "/v1/templates/{service}/{locale}", tag = "templates",
    params(MessagePath),
    responses((status = 200, body = TemplateSource), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn get(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<MessagePath>,
) -> Result<Json<TemplateSource>, Problem> {
    let tenant = caller.tenant_for(Permission::ReadTemplates)?;
    let locale = path.validate()?;
    let overrides = app.store.templates_of(tenant).await?;
    if let Some(o) = overrides
        .into_iter()
        .find(|o| o.service == path.service && o.locale == locale.to_string())
    {
        return Ok(Json(TemplateSource {
            service: o.service,
            locale: o.locale,
            origin: Origin::Tenant,
            source: o.source,
            updated_at: Some(rfc3339(o.updated_at)),
        }));
    }
    let source = app
        .catalog
        .shipped_source(&path.service, &locale)
        .ok_or_else(|| {
            Problem::not_found(format!("no message {:?} in locale {locale}", path.service))
        })?;
    Ok(Json(TemplateSource {
        service: path.service,
        locale: locale.to_string(),
        origin: Origin::Shipped,
        source,
        updated_at: None,
    }))
}

/// Set the tenant's override of one message in one locale.
#[utoipa::path(
    put, path = "/v1/templates/{service}/{locale}", tag = "templates",
    params(MessagePath),
    request_body = PutTemplate,
    responses((status = 200, body = TemplateSource), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn put(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<MessagePath>,
    ApiJson(body): ApiJson<PutTemplate>,
) -> Result<Json<TemplateSource>, Problem> {
    let tenant = caller.tenant_for(Permission::ManageTemplates)?;
    let locale = path.validate()?;
    app.catalog
        .validate_override(&path.service, &locale, &body.source)
        .map_err(|errors| {
            Problem::unprocessable(format!("invalid template: {}", errors.join("; ")))
                .with_errors(errors)
        })?;
    let saved = app
        .store
        .put_template(tenant, &path.service, &locale.to_string(), &body.source)
        .await?;
    Ok(Json(TemplateSource {
        service: saved.service,
        locale: saved.locale,
        origin: Origin::Tenant,
        source: saved.source,
        updated_at: Some(rfc3339(saved.updated_at)),
    }))
}

/// Remove the tenant's override; the shipped text applies again.
#[utoipa::path(
    delete, path = "/v1/templates/{service}/{locale}", tag = "templates",
    params(MessagePath),
    responses((status = 204, description = "Override removed"), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn delete(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<MessagePath>,
) -> Result<StatusCode, Problem> {
    let tenant = caller.tenant_for(Permission::ManageTemplates)?;
    let locale = path.validate()?;
    if app
        .store
        .delete_template(tenant, &path.service, &locale.to_string())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!(
            "no override of {:?} in locale {locale}",
            path.service
        )))
    }
}

/// Render a message for one end user: negotiated locale, direction, SMS cost,
/// and the tenant's branding.
#[utoipa::path(
    post, path = "/v1/templates/render", tag = "templates",
    request_body = RenderRequest,
    params(("Accept-Language" = Option<String>, Header, description = "Used when the body has no `locale`")),
    responses((status = 200, body = RenderResponse), CommonProblems),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn render(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RenderRequest>,
) -> Result<Json<RenderResponse>, Problem> {
    let tenant_id = caller.tenant_for(Permission::RenderTemplates)?;
    check_service(&body.service)?;
    let vars = &body.variables;
    if vars.extra.len() > 32 {
        return Err(Problem::unprocessable("at most 32 extra variables"));
    }
    let minutes = vars.minutes.unwrap_or(DEFAULT_MINUTES);
    if vars.code.is_empty()
        || vars.code.chars().count() > 64
        || !(0.0..=100_000.0).contains(&minutes)
        || vars
            .app_name
            .as_ref()
            .is_some_and(|a| a.chars().count() > 200)
    {
        return Err(Problem::unprocessable(
            "variables: code must be 1–64 characters, minutes within 0..100000, \
             app_name at most 200 characters",
        ));
    }
    let requested = match &body.locale {
        Some(locale) => Preferences::only(parse_locale(locale)?),
        None => headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map(negotiate::parse)
            .unwrap_or_default(),
    };
    let tenant = tenants::load(&app, tenant_id).await?;
    let branding = tenant.effective_branding();

    let overrides: Vec<(LanguageIdentifier, String)> = app
        .store
        .templates_of(tenant_id)
        .await?
        .into_iter()
        .filter(|o| o.service == body.service)
        .filter_map(|o| Some((o.locale.parse().ok()?, o.source)))
        .collect();
    let extra: Vec<LanguageIdentifier> = overrides.iter().map(|(l, _)| l.clone()).collect();
    let chain = app.catalog.negotiate(&requested, &extra);

    let mut args = FluentArgs::new();
    for (name, value) in &vars.extra {
        match value {
            Variable::Text(s) => args.set(name.clone(), s.clone()),
            Variable::Number(n) => args.set(name.clone(), *n),
        }
    }
    args.set("code", vars.code.clone());
    args.set("minutes", minutes);
    if let Some(name) = vars.app_name.as_ref().or(branding.company_name.as_ref()) {
        args.set("app_name", name.clone());
    }
    let rendered = app
        .catalog
        .render(&body.service, &chain, &overrides, &args)
        .map_err(|e| match e {
            RenderError::UnknownService { service, available } => Problem::not_found(format!(
                "no message {service:?} in any locale; shipped services: {}",
                available.join(", ")
            )),
            RenderError::MissingVariables(names) => Problem::unprocessable(format!(
                "the message needs the variables: {}",
                names.join(", ")
            ))
            .with_errors(names),
            RenderError::Format(errors) => Problem::unprocessable(format!(
                "the message cannot be rendered: {}",
                errors.join("; ")
            ))
            .with_errors(errors),
        })?;
    let cost = sms::cost(&rendered.text);
    Ok(Json(RenderResponse {
        text: rendered.text,
        service: body.service,
        locale: rendered.locale.to_string(),
        direction: rendered.direction,
        origin: rendered.origin,
        encoding: cost.encoding,
        units: cost.units,
        segments: cost.segments,
        units_per_segment: cost.units_per_segment,
        branding,
    }))
}
