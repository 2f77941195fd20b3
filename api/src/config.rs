//! The API's settings, filled from the `[api]` section of the binary's config.

use std::path::PathBuf;
use std::time::Duration;

use crate::webhooks::WebhooksConfig;

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`.
    pub database_url: String,
    /// The platform operator's bearer token; `None` leaves tenant administration
    /// closed (tenant keys still work).
    pub operator_token: Option<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// A request running longer answers 503.
    pub request_timeout: Duration,
    /// Sustained requests per second per credential.
    pub rate_limit_per_second: u32,
    /// Requests a credential may burst above the sustained rate.
    pub rate_limit_burst: u32,
    /// Fluent files to use instead of the ones built in (`<dir>/<locale>/sms.ftl`).
    pub locales_dir: Option<PathBuf>,
    /// Webhook delivery (the `[webhooks]` section).
    pub webhooks: WebhooksConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            database_url: "sqlite://var/veriflow.db".into(),
            operator_token: None,
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            rate_limit_per_second: 100,
            rate_limit_burst: 200,
            locales_dir: None,
            webhooks: WebhooksConfig::default(),
        }
    }
}
