//! veriflow's control-plane API (axum): tenants with white-label settings, API
//! keys and roles, localized SMS templates, usage, webhook endpoints, and the
//! OpenAPI document; plus the webhook delivery engine ([`webhooks`]), which
//! lives here because its queue and endpoints are in the API's database.
//!
//! Shape of a request: [`layers::observe`] (request id, access log, metrics) →
//! panic guard → [`layers::timeout`] → body limit → routing; `/v1` routes then
//! pass [`auth::middleware::authenticate`] (credentials, tenant, rate limit),
//! and handlers ask the [`auth::Caller`] for a permission. Every error anywhere
//! is a [`problem::Problem`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = veriflow_api::ApiConfig::default();
//! let hooks = veriflow_api::webhooks::WebhooksConfig::default();
//! let api = veriflow_api::Api::start(config, hooks).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! api.serve(listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod config;
pub mod extract;
pub mod layers;
pub mod limits;
pub mod metrics;
pub mod problem;
pub mod routes;
pub mod scoring;
pub mod sql;
pub mod state;
pub mod store;
pub mod templates;
pub mod tenant_settings;
pub mod time;
pub mod usage;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use config::ApiConfig;
pub use store::{Backend, Store};

use crate::routes::{
    health, keys, messages, scoring as scoring_routes, sql as sql_routes, templates as tpl,
    tenants, usage as usage_routes, webhooks as hooks,
};
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Catalog(#[from] templates::CatalogError),
    #[error(transparent)]
    Webhooks(#[from] webhooks::WebhookError),
    #[error("serving HTTP failed: {0}")]
    Serve(#[from] std::io::Error),
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "veriflow API",
        description = "Tenants (white-label), API keys and roles, localized SMS templates, \
                       webhook endpoints (Standard Webhooks). \
                       Errors are RFC 9457 problem details (application/problem+json)."
    ),
    modifiers(&SecuritySchemes),
    components(schemas(problem::ProblemBody, routes::templates::Variable)),
    tags(
        (name = "tenants", description = "Tenants, domains, branding, settings, usage"),
        (name = "auth", description = "API keys and roles"),
        (name = "templates", description = "Localized SMS texts (Fluent)"),
        (name = "webhooks", description = "Signed, filtered, durable event delivery (Standard Webhooks)"),
        (name = "scoring", description = "Provider routing and fraud risk for a verification about to be sent, from live features"),
        (name = "sql", description = "Read-only SQL over the tenant's history (the lake's tables and views)"),
        (name = "operations", description = "Health, readiness, metrics, this document")
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// A running API: state plus the router built over it.
pub struct Api {
    state: AppState,
    router: Router,
    openapi: utoipa::openapi::OpenApi,
}

impl Api {
    /// Connects the store (applying migrations), loads the template catalog and
    /// builds the router. An empty `webhooks.instance_id` becomes the host
    /// name and `config.listen`.
    pub async fn start(
        config: ApiConfig,
        mut webhooks: webhooks::WebhooksConfig,
    ) -> Result<Api, ApiError> {
        webhooks.instance_id = webhooks.instance_id_for(config.listen.as_deref());
        let store = Store::connect(&config.database_url).await?;
        let catalog = match &config.locales_dir {
            Some(dir) => templates::Catalog::load_dir(dir)?,
            None => templates::Catalog::builtin()?,
        };
        let usage = Arc::new(usage::Usage::default());
        let webhooks = webhooks::Webhooks::new(store.clone(), webhooks, usage.clone())?;
        let scoring_settings = Arc::new(scoring::TenantScoring::default());
        scoring_settings.refresh(&store).await?;
        let state = AppState {
            store,
            webhooks,
            scoring_settings,
            scorer: Arc::default(),
            sql: Arc::default(),
            keys: Arc::default(),
            limiter: Arc::new(limits::Limiter::new(
                config.rate_limit_per_second,
                config.rate_limit_burst,
            )),
            config: Arc::new(config),
            catalog: Arc::new(catalog),
            usage,
            metrics: Arc::new(metrics::HttpMetrics::default()),
        };
        let (router, openapi) = build(state.clone());
        Ok(Api {
            state,
            router,
            openapi,
        })
    }

    pub fn router(&self) -> Router {
        self.router.clone()
    }

    pub fn openapi(&self) -> &utoipa::openapi::OpenApi {
        &self.openapi
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Publishing events to tenants' webhooks (the pipeline's fan-out uses it).
    pub fn webhooks(&self) -> &webhooks::Webhooks {
        &self.state.webhooks
    }

    /// Tenants' scoring settings, kept fresh while the API serves (the stream
    /// reads them per request).
    pub fn scoring_settings(&self) -> Arc<scoring::TenantScoring> {
        self.state.scoring_settings.clone()
    }

    /// Where a [`scoring::LiveScorer`] is attached (once) to serve
    /// `POST /v1/route` and `/v1/score`, also after serving started.
    pub fn scorer_slot(&self) -> scoring::ScorerSlot {
        self.state.scorer.clone()
    }

    /// Where a [`sql::SqlEngine`] is attached (once) to serve `POST /v1/sql`.
    pub fn sql_slot(&self) -> sql::SqlSlot {
        self.state.sql.clone()
    }

    /// Writes pending usage counters to the store.
    pub async fn flush_usage(&self) -> Result<(), store::StoreError> {
        self.state.usage.flush(&self.state.store).await
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests and
    /// flushes usage counters. The webhook delivery engine runs alongside when
    /// `webhooks.enabled`.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ApiError> {
        let housekeeping = {
            let state = self.state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    if let Err(e) = state.usage.flush(&state.store).await {
                        tracing::warn!(error = %e, "flushing usage counters failed; will retry");
                    }
                    if let Err(e) = state.scoring_settings.refresh(&state.store).await {
                        tracing::warn!(error = %e, "refreshing tenants' scoring settings failed; will retry");
                    }
                    state.limiter.forget_idle();
                }
            })
        };
        let engine = self
            .state
            .webhooks
            .config()
            .enabled
            .then(|| self.state.webhooks.start_engine());
        // In-flight requests get the request timeout (plus a second) to finish
        // after shutdown is asked for; a client that holds on longer is cut off.
        let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
        let graceful = async move {
            shutdown.await;
            let _ = stopping_tx.send(true);
        };
        let grace = self.state.config.request_timeout + Duration::from_secs(1);
        let deadline = async move {
            let _ = stopping_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace).await;
        };
        let server = axum::serve(listener, self.router.clone()).with_graceful_shutdown(graceful);
        tokio::select! {
            served = server => served?,
            () = deadline => tracing::warn!(?grace, "connections still open after the grace period; closing"),
        }
        housekeeping.abort();
        if let Some(engine) = engine {
            engine.stop().await;
        }
        if let Err(e) = self.flush_usage().await {
            tracing::warn!(error = %e, "flushing usage counters at shutdown failed");
        }
        self.state.store.close().await;
        Ok(())
    }
}

fn build(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (v1, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tenants::create, tenants::list))
        .routes(routes!(tenants::get, tenants::update, tenants::delete))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke))
        .routes(routes!(keys::whoami))
        .routes(routes!(tpl::list))
        .routes(routes!(tpl::get, tpl::put, tpl::delete))
        .routes(routes!(tpl::render))
        .routes(routes!(usage_routes::get))
        .routes(routes!(hooks::create, hooks::list))
        .routes(routes!(hooks::get, hooks::update, hooks::delete))
        .routes(routes!(hooks::secret))
        .routes(routes!(hooks::rotate))
        .routes(routes!(hooks::test))
        .routes(routes!(hooks::attempts))
        .routes(routes!(hooks::replay))
        .routes(routes!(messages::publish, messages::list))
        .routes(routes!(messages::get))
        .routes(routes!(messages::event_types))
        .routes(routes!(scoring_routes::route))
        .routes(routes!(scoring_routes::score))
        .routes(routes!(sql_routes::query))
        .split_for_parts();
    let v1 = v1.route_layer(from_fn_with_state(
        state.clone(),
        auth::middleware::authenticate,
    ));

    let (ops, ops_doc) = OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .split_for_parts();
    openapi.merge(ops_doc);
    openapi
        .paths
        .paths
        .insert("/openapi.json".into(), openapi_path_item());

    let document = Arc::new(openapi.clone());
    let router = Router::new()
        .merge(v1)
        .merge(ops)
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move { axum::Json((*document).clone()) }
            }),
        )
        .route_layer(from_fn(layers::tag_route))
        .fallback(layers::unknown_route)
        .method_not_allowed_fallback(layers::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(from_fn_with_state(state.clone(), layers::timeout))
        .layer(CatchPanicLayer::custom(layers::panic_response))
        .layer(from_fn_with_state(state.clone(), layers::observe))
        .with_state(state);
    (router, openapi)
}

/// `/openapi.json` describes itself, so the document lists every route served.
fn openapi_path_item() -> utoipa::openapi::path::PathItem {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::{ContentBuilder, ResponseBuilder};
    PathItem::new(
        HttpMethod::Get,
        OperationBuilder::new()
            .tag("operations")
            .summary(Some("This OpenAPI document"))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("OpenAPI 3.1 document")
                    .content("application/json", ContentBuilder::new().build()),
            ),
    )
}
