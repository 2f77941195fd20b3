//! `[api]`: the HTTP API's settings, as written in `veriflow.toml`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use veriflow_common::config::{ConfigError, Validate, duration, empty_as_none, ensure, or_off};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// `host:port` to serve on; `"off"` runs no API in `veriflow run`.
    #[serde(with = "or_off")]
    pub listen: Option<String>,
    /// `sqlite://PATH` (created when missing) or `postgres://USER@HOST/DB`.
    pub database_url: String,
    /// The platform operator's bearer token; empty leaves tenant administration
    /// closed (tenant keys still work).
    #[serde(with = "empty_as_none")]
    pub operator_token: Option<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// A request running longer answers 503.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Sustained requests per second per credential.
    pub rate_limit_per_second: u32,
    /// Requests a credential may burst above the sustained rate.
    pub rate_limit_burst: u32,
    /// Fluent files to use instead of the ones built in (`<dir>/<locale>/sms.ftl`);
    /// empty uses the built-in `locales/`.
    #[serde(with = "empty_as_none")]
    pub locales_dir: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: Some("127.0.0.1:8080".into()),
            database_url: "sqlite://var/veriflow.db".into(),
            operator_token: None,
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            rate_limit_per_second: 100,
            rate_limit_burst: 200,
            locales_dir: None,
        }
    }
}

impl Validate for ApiConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(listen) = &self.listen {
            ensure(
                listen
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok()),
                "listen",
                format!("{listen:?} is not host:port (or \"off\")"),
            )?;
        }
        ensure(
            self.database_url.starts_with("sqlite:")
                || self.database_url.starts_with("postgres://")
                || self.database_url.starts_with("postgresql://"),
            "database_url",
            "must be sqlite://PATH or postgres://…",
        )?;
        ensure(
            self.max_body_bytes >= 1024,
            "max_body_bytes",
            "must be at least 1024",
        )?;
        ensure(
            !self.request_timeout.is_zero(),
            "request_timeout",
            "must be positive",
        )?;
        ensure(
            self.rate_limit_per_second > 0,
            "rate_limit_per_second",
            "must be positive",
        )?;
        if let Some(dir) = &self.locales_dir {
            ensure(
                dir.is_dir(),
                "locales_dir",
                format!("{} is not a directory", dir.display()),
            )?;
        }
        Ok(())
    }
}
