//! The whole configuration: one TOML file, then environment overrides, then
//! (in the binary) command-line flags.
//!
//! Each section is its crate's own config type, which deserializes itself and
//! keeps its defaults in its `Default` ([`veriflow_common::config`] has the
//! value syntax). This module only composes them, applies `VERIFLOW_*`
//! variables, and validates everything once, at load, before anything is
//! created: an error names the key and where its value came from (the file,
//! or the variable).
//!
//! Environment variables: `VERIFLOW_<SECTION>__<KEY>=value` sets
//! `[section] key`; deeper tables nest with more `__`
//! (`VERIFLOW_KAFKA__PROPERTIES__SECURITY.PROTOCOL=ssl`). A value that reads as
//! TOML (a number, a boolean, an array such as `["5s","1m"]`) is taken as
//! such, anything else as a string; list settings also take one
//! comma-separated string (`VERIFLOW_SCORING__CHALLENGER_TENANTS=acme,shopfast`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use veriflow_analytics::KpiConfig;
use veriflow_analytics::lake::SqlLimits;
use veriflow_api::ApiConfig;
use veriflow_api::webhooks::WebhooksConfig;
use veriflow_common::config::{ConfigError, Validate, duration, ensure, or_off};
use veriflow_connectors::influx::InfluxConfig;
use veriflow_connectors::kafka::KafkaConfig;
use veriflow_pipelines::alerts::AlertsConfig;
use veriflow_pipelines::{PipelineConfig, PipelineSettings};

use crate::scoring::ScoringConfig;
use crate::topics::TopicsConfig;

pub const ENV_PREFIX: &str = "VERIFLOW_";

/// `veriflow.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub topics: TopicsConfig,
    pub pipeline: PipelineSettings,
    pub checkpoint: CheckpointConfig,
    pub metrics: MetricsConfig,
    pub api: ApiConfig,
    pub kpi: KpiConfig,
    pub influx: InfluxConfig,
    pub alerts: AlertsConfig,
    pub webhooks: WebhooksConfig,
    pub scoring: ScoringConfig,
    pub lake: LakeConfig,
    pub sql: SqlLimits,
}

/// `[checkpoint]`: where operator state and offsets are saved together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// A directory, or `s3://bucket/prefix`.
    pub dir: PathBuf,
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Checkpoints kept per partition.
    pub keep: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            dir: "var/checkpoints".into(),
            interval: Duration::from_secs(10),
            keep: 3,
        }
    }
}

impl Validate for CheckpointConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        store_location(&self.dir.to_string_lossy(), "dir")?;
        ensure(!self.interval.is_zero(), "interval", "must be positive")?;
        ensure(self.keep >= 1, "keep", "must be at least 1")
    }
}

/// `[lake]`: where history is kept, and how files are rolled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeConfig {
    /// A directory or `s3://bucket/prefix`; `"off"` keeps no history.
    #[serde(with = "or_off")]
    pub dir: Option<String>,
    /// A partition's rows are written at least this often (a file per tenant
    /// and day each time): the lake's delay behind the topics.
    #[serde(with = "duration")]
    pub flush_interval: Duration,
    /// ... or as soon as this many rows wait.
    pub max_rows: usize,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            dir: None,
            flush_interval: Duration::from_secs(30),
            max_rows: 100_000,
        }
    }
}

impl Validate for LakeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(dir) = &self.dir {
            ensure(
                !dir.is_empty(),
                "dir",
                "must name a directory, s3://bucket/prefix or \"off\"",
            )?;
            if let Some(rest) = dir.strip_prefix("s3://") {
                ensure(
                    !rest.split('/').next().unwrap_or("").is_empty(),
                    "dir",
                    format!("{dir:?} names no bucket (s3://bucket/prefix)"),
                )?;
            }
        }
        ensure(
            !self.flush_interval.is_zero(),
            "flush_interval",
            "must be positive",
        )?;
        ensure(self.max_rows >= 1, "max_rows", "must be at least 1")
    }
}

/// A directory or `s3://bucket/prefix` (checkpoints, the lake).
fn store_location(dir: &str, key: &str) -> Result<(), ConfigError> {
    ensure(
        !dir.is_empty(),
        key,
        "must name a directory or s3://bucket/prefix",
    )?;
    if let Some(rest) = dir.strip_prefix("s3://") {
        ensure(
            !rest.split('/').next().unwrap_or("").is_empty(),
            key,
            format!("{dir:?} names no bucket (s3://bucket/prefix)"),
        )?;
    }
    Ok(())
}

/// `[metrics]`: Prometheus `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port`; `"off"` disables.
    #[serde(with = "or_off")]
    pub listen: Option<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: Some("127.0.0.1:9464".into()),
        }
    }
}

impl Validate for MetricsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(listen) = &self.listen {
            ensure(
                listen
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()),
                "listen",
                format!("{listen:?} is not host:port (or \"off\")"),
            )?;
        }
        Ok(())
    }
}

/// A configuration that cannot be used, with where the bad value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigLoadError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not TOML: {message}")]
    Syntax { path: String, message: String },
    /// `origin` is the file or the variable that set `key`.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

impl Config {
    /// Reads `path` (if given), applies `VERIFLOW_*` variables, and validates
    /// every section.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigLoadError> {
        Config::load_with_env(path, std::env::vars())
    }

    /// [`Config::load`] with the environment given.
    pub fn load_with_env(
        path: Option<&Path>,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigLoadError> {
        let file = path.map(|p| p.display().to_string());
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigLoadError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigLoadError::Syntax {
                        path: p.display().to_string(),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        let from_env =
            apply_env(&mut table, vars).map_err(|(var, message)| ConfigLoadError::Invalid {
                origin: var,
                key: String::new(),
                message,
            })?;
        let origin = |key: &str| -> String {
            from_env
                .iter()
                .filter(|(k, _)| {
                    key == k
                        || key.starts_with(&format!("{k}."))
                        || key.starts_with(&format!("{k}["))
                })
                .map(|(_, var)| var.clone())
                .next()
                .or_else(|| file.clone())
                .unwrap_or_else(|| "defaults".into())
        };
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                let message = e.into_inner().to_string();
                ConfigLoadError::Invalid {
                    origin: origin(&key),
                    key,
                    message: message.trim().to_owned(),
                }
            })?;
        config.validate().map_err(|e| ConfigLoadError::Invalid {
            origin: origin(&e.key),
            key: e.key,
            message: e.message,
        })?;
        Ok(config)
    }

    /// The KPI window, or `None` when KPIs are off (no `influx.url`, or
    /// `kpi.window = "off"`).
    pub fn kpi_window(&self) -> Option<Duration> {
        if self.influx.url.is_empty() {
            return None;
        }
        self.kpi.window
    }

    /// What the partitions run with: `[pipeline]`, the KPI window and the
    /// alert rules (none without KPIs). Hopping windows and the scorer are
    /// plugged in by the runtime.
    pub fn pipeline_config(&self) -> PipelineConfig {
        let mut p = PipelineConfig::new(&self.pipeline);
        p.kpi_window_ms = self.kpi_window().map(|w| w.as_millis() as i64);
        if p.kpi_window_ms.is_some() {
            p.alert_rules = self.alerts.rules();
        }
        p
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate().map_err(|e| e.within("kafka"))?;
        self.topics.validate().map_err(|e| e.within("topics"))?;
        self.pipeline.validate().map_err(|e| e.within("pipeline"))?;
        self.checkpoint
            .validate()
            .map_err(|e| e.within("checkpoint"))?;
        self.metrics.validate().map_err(|e| e.within("metrics"))?;
        self.api.validate().map_err(|e| e.within("api"))?;
        self.kpi.validate().map_err(|e| e.within("kpi"))?;
        self.influx.validate().map_err(|e| e.within("influx"))?;
        self.alerts.validate().map_err(|e| e.within("alerts"))?;
        self.webhooks.validate().map_err(|e| e.within("webhooks"))?;
        self.scoring.validate().map_err(|e| e.within("scoring"))?;
        self.lake.validate().map_err(|e| e.within("lake"))?;
        self.sql.validate().map_err(|e| e.within("sql"))?;
        let listens: Vec<&String> = [&self.api.listen, &self.metrics.listen]
            .into_iter()
            .flatten()
            .filter(|l| !l.ends_with(":0"))
            .collect();
        ensure(
            listens.len() < 2 || listens[0] != listens[1],
            "metrics.listen",
            "must differ from api.listen",
        )
    }
}

/// `VERIFLOW_SECTION__KEY=value` sets `[section] key = value`. Returns the
/// dotted keys set, each with its variable's name.
fn apply_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, (String, String)> {
    let mut set = Vec::new();
    let mut seen = BTreeSet::new();
    for (name, value) in vars {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let parts: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if parts.len() < 2 || parts.iter().any(String::is_empty) {
            continue; // not a config override (e.g. VERIFLOW_LOG)
        }
        if !seen.insert(parts.join(".")) {
            continue;
        }
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value.clone()));
        let mut node = &mut *table;
        for part in &parts[..parts.len() - 1] {
            let entry = node
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = match entry {
                toml::Value::Table(t) => t,
                _ => return Err((name.clone(), format!("`{part}` is not a section"))),
            };
        }
        node.insert(parts[parts.len() - 1].clone(), parsed);
        set.push((parts.join("."), name));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn env_overrides_file_values_lists_included() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.toml");
        std::fs::write(
            &path,
            "[kafka]\nbrokers = \"a:1\"\n[pipeline]\nmax_event_bytes = 1000",
        )
        .unwrap();
        let config = Config::load_with_env(
            Some(&path),
            env(&[
                ("VERIFLOW_KAFKA__BROKERS", "b:2"),
                ("VERIFLOW_PIPELINE__MAX_EVENT_BYTES", "2048"),
                ("VERIFLOW_KAFKA__PROPERTIES__SECURITY.PROTOCOL", "ssl"),
                ("VERIFLOW_KAFKA__PROPERTIES__SESSION.TIMEOUT.MS", "6000"),
                ("VERIFLOW_WEBHOOKS__RETRY_SCHEDULE", "1s,2s"),
                (
                    "VERIFLOW_WEBHOOKS__ALLOW_NETWORKS",
                    "[\"127.0.0.0/8\", \"10.0.0.1\"]",
                ),
                ("VERIFLOW_LOG", "debug"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(config.kafka.brokers, "b:2");
        assert_eq!(config.pipeline.max_event_bytes, 2048);
        assert_eq!(config.kafka.properties["security.protocol"], "ssl");
        assert_eq!(config.kafka.properties["session.timeout.ms"], "6000");
        assert_eq!(
            config.webhooks.retry_schedule,
            [Duration::from_secs(1), Duration::from_secs(2)]
        );
        assert_eq!(config.webhooks.allow_networks.len(), 2);
    }

    /// The reference file in the repository is exactly the defaults.
    #[test]
    fn the_shipped_veriflow_toml_is_the_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../veriflow.toml");
        let config = Config::load_with_env(Some(&path), env(&[])).unwrap();
        assert_eq!(config, Config::default());
    }

    /// Every `VERIFLOW_…=value` example in the README's configuration
    /// section loads, and changes the configuration.
    #[test]
    fn the_readmes_environment_examples_load() {
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
                .unwrap();
        let section = readme
            .split("## Configuration\n")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("README has a Configuration section");
        let examples: Vec<(String, String)> = section
            .lines()
            .filter_map(|l| {
                l.trim()
                    .strip_prefix("VERIFLOW_")
                    .map(|rest| rest.to_owned())
            })
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                Some((format!("VERIFLOW_{k}"), v.trim_matches('\'').to_owned()))
            })
            .collect();
        assert!(examples.len() >= 5, "{examples:?}");
        for (k, v) in examples {
            let config = Config::load_with_env(None, [(k.clone(), v.clone())].into_iter())
                .unwrap_or_else(|e| panic!("README example {k}={v}: {e}"));
            assert_ne!(config, Config::default(), "{k}={v} changes nothing");
        }
    }

    #[test]
    fn errors_name_the_key_and_where_its_value_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[pipeline]\nttl = \"10 minutes\"").unwrap();
        let err = Config::load_with_env(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.toml: pipeline.ttl"), "{err}");
        assert!(err.contains("not a duration"), "{err}");
        let err =
            Config::load_with_env(None, env(&[("VERIFLOW_SCORING__CHALLENGER_SHARE", "1.5")]))
                .unwrap_err()
                .to_string();
        assert!(
            err.starts_with("VERIFLOW_SCORING__CHALLENGER_SHARE: scoring.challenger_share:"),
            "{err}"
        );
        std::fs::write(&path, "[kafka]\nbroker = \"a:1\"").unwrap();
        let err = Config::load_with_env(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("broker"), "{err}");
    }
}
