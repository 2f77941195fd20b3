//! Configuration: one TOML file, then environment overrides, then CLI flags.
//!
//! Every option is documented in `veriflow.toml`. Environment variables
//! override file values: `VERIFLOW_<SECTION>__<KEY>`, e.g. `VERIFLOW_KAFKA__BROKERS`
//! or `VERIFLOW_PIPELINE__ALLOWED_LATENESS=5m`. Unknown keys are errors, so a typo
//! never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use veriflow_connectors::kafka::KafkaConfig;
use veriflow_pipelines::alerts::{AlertRule, Comparison, Metric, Scope};
use veriflow_pipelines::time::parse_duration_ms;
use veriflow_pipelines::{PipelineConfig, ValidationLimits};

pub const ENV_PREFIX: &str = "VERIFLOW_";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaSection,
    pub topics: TopicsSection,
    pub pipeline: PipelineSection,
    pub checkpoint: CheckpointSection,
    pub metrics: MetricsSection,
    pub api: ApiSection,
    pub kpi: KpiSection,
    pub influx: InfluxSection,
    pub alerts: AlertsSection,
    pub webhooks: WebhooksSection,
    pub scoring: ScoringSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringSection {
    /// A model version directory written by `veriflow train`
    /// (`models/trained/<version>`); empty turns scoring off.
    pub models: String,
    /// How often to look for a new version in `models`; `"off"` never reloads.
    pub reload_interval: String,
    /// A challenger version directory; empty: the champion scores everything.
    pub challenger: String,
    /// Share of verifications (by a hash of their id) the challenger decides.
    pub challenger_share: f64,
    /// Tenants the challenger decides for entirely.
    pub challenger_tenants: Vec<String>,
    /// The challenger scores beside the champion (a `shadow` field), deciding nothing.
    pub shadow: bool,
}

impl Default for ScoringSection {
    fn default() -> Self {
        ScoringSection {
            models: String::new(),
            reload_interval: "5s".into(),
            challenger: String::new(),
            challenger_share: 0.0,
            challenger_tenants: Vec::new(),
            shadow: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsSection {
    /// Evaluate alert rules on the KPI windows (needs KPIs on).
    pub enabled: bool,
    /// Replaces the built-in rules when non-empty.
    pub rules: Vec<AlertRuleSection>,
}

impl Default for AlertsSection {
    fn default() -> Self {
        AlertsSection {
            enabled: true,
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleSection {
    pub name: String,
    /// conversion_rate | delivery_rate | requests
    pub metric: String,
    /// tenant | tenant_country | tenant_country_provider | country_provider
    pub scope: String,
    /// drop | spike | below | above
    pub comparison: String,
    pub threshold: f64,
    #[serde(default)]
    pub min_volume: u32,
    #[serde(default = "default_cooldown")]
    pub cooldown: String,
    #[serde(default = "default_severity")]
    pub severity: String,
}

fn default_cooldown() -> String {
    "10m".into()
}

fn default_severity() -> String {
    "warning".into()
}

impl AlertRuleSection {
    fn rule(&self) -> anyhow::Result<AlertRule> {
        let name = &self.name;
        let metric = match self.metric.as_str() {
            "conversion_rate" => Metric::ConversionRate,
            "delivery_rate" => Metric::DeliveryRate,
            "requests" => Metric::Requests,
            other => bail!(
                "alerts.rules {name}: metric {other:?} is not conversion_rate, delivery_rate or requests"
            ),
        };
        let scope = match self.scope.as_str() {
            "tenant" => Scope::Tenant,
            "tenant_country" => Scope::TenantCountry,
            "tenant_country_provider" => Scope::TenantCountryProvider,
            "country_provider" => Scope::CountryProvider,
            other => bail!(
                "alerts.rules {name}: scope {other:?} is not tenant, tenant_country, tenant_country_provider or country_provider"
            ),
        };
        let comparison = match self.comparison.as_str() {
            "drop" => Comparison::Drop,
            "spike" => Comparison::Spike,
            "below" => Comparison::Below,
            "above" => Comparison::Above,
            other => bail!(
                "alerts.rules {name}: comparison {other:?} is not drop, spike, below or above"
            ),
        };
        anyhow::ensure!(
            self.threshold.is_finite(),
            "alerts.rules {name}: threshold must be a number"
        );
        Ok(AlertRule {
            name: name.clone(),
            metric,
            scope,
            comparison,
            threshold: self.threshold,
            min_volume: self.min_volume,
            cooldown_ms: duration(&format!("alerts.rules {name}: cooldown"), &self.cooldown)?,
            severity: self.severity.clone(),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KpiSection {
    /// Width of the KPI windows; `"off"` disables KPIs.
    pub window: String,
    /// Directory of KPI `.sql` files; empty uses the built-in `sql/kpi/`.
    pub sql_dir: String,
    /// Emit each window when it closes and as its verifications are decided
    /// (true), or once, when final (false).
    pub provisional: bool,
}

impl Default for KpiSection {
    fn default() -> Self {
        KpiSection {
            window: "1m".into(),
            sql_dir: String::new(),
            provisional: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxSection {
    /// Base URL of an InfluxDB v2 write API; empty: no KPIs are computed.
    pub url: String,
    pub org: String,
    pub bucket: String,
    pub token: String,
    pub batch_points: usize,
    pub buffer_points: usize,
    pub timeout: String,
    pub max_backoff: String,
}

impl Default for InfluxSection {
    /// The sink's own defaults, except that no URL means no KPIs.
    fn default() -> Self {
        let sink = veriflow_connectors::influx::InfluxConfig::default();
        let text = |d: std::time::Duration| format!("{}s", d.as_secs());
        InfluxSection {
            url: String::new(),
            org: sink.org,
            bucket: sink.bucket,
            token: sink.token,
            batch_points: sink.batch_points,
            buffer_points: sink.buffer_points,
            timeout: text(sink.timeout),
            max_backoff: text(sink.max_backoff),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// `host:port` of the HTTP API; `"off"` disables it in `veriflow run`.
    pub listen: String,
    /// `sqlite://PATH` (created when missing) or `postgres://…`.
    pub database_url: String,
    /// Bearer token of the platform operator; empty closes tenant administration.
    pub operator_token: String,
    pub max_body_bytes: usize,
    pub request_timeout: String,
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// Directory of `<locale>/sms.ftl` files replacing the built-in ones; empty
    /// uses the built-in `locales/`.
    pub locales_dir: String,
}

impl Default for ApiSection {
    fn default() -> Self {
        let api = veriflow_api::ApiConfig::default();
        ApiSection {
            listen: "127.0.0.1:8080".into(),
            database_url: api.database_url,
            operator_token: String::new(),
            max_body_bytes: api.max_body_bytes,
            request_timeout: "10s".into(),
            rate_limit_per_second: api.rate_limit_per_second,
            rate_limit_burst: api.rate_limit_burst,
            locales_dir: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksSection {
    /// Run the delivery engine (in `veriflow api` and `veriflow run`).
    pub enabled: bool,
    /// Fan the pipeline's outcomes and alerts out to webhooks (`veriflow run`).
    pub fan_out: bool,
    /// Lease owner name; empty: host name + api.listen.
    pub instance_id: String,
    /// Base64 of 32 bytes encrypting stored secrets; empty: `key_file`.
    pub encryption_key: String,
    pub key_file: String,
    pub retry_schedule: Vec<String>,
    pub retry_jitter: f64,
    pub timeout: String,
    pub connect_timeout: String,
    pub max_in_flight: usize,
    pub queue_per_endpoint: usize,
    pub claim_batch: usize,
    pub poll_interval: String,
    pub lease: String,
    pub disable_after: String,
    pub allow_networks: Vec<String>,
    pub https_only: bool,
    pub rotation_overlap: String,
}

impl Default for WebhooksSection {
    fn default() -> Self {
        let d = veriflow_api::webhooks::WebhooksConfig::default();
        WebhooksSection {
            enabled: d.enabled,
            fan_out: true,
            instance_id: String::new(),
            encryption_key: String::new(),
            key_file: d.key_file.display().to_string(),
            retry_schedule: ["5s", "5m", "30m", "2h", "5h", "10h", "10h"]
                .map(String::from)
                .to_vec(),
            retry_jitter: d.schedule.jitter,
            timeout: "15s".into(),
            connect_timeout: "5s".into(),
            max_in_flight: d.max_in_flight,
            queue_per_endpoint: d.queue_per_endpoint,
            claim_batch: d.claim_batch,
            poll_interval: "250ms".into(),
            lease: "60s".into(),
            disable_after: "5d".into(),
            allow_networks: Vec::new(),
            https_only: d.https_only,
            rotation_overlap: "24h".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// `host:port` for /metrics, /healthz and /readyz; `"off"` disables.
    pub listen: String,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    pub brokers: String,
    pub group_id: String,
    /// On restore, start this many records before the checkpoint's offset.
    pub resume_rewind: i64,
    /// Extra librdkafka properties, passed through unchanged. Numbers and booleans
    /// are accepted as such (`session.timeout.ms = 6000`).
    #[serde(deserialize_with = "scalar_map")]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsSection {
    pub input: String,
    pub outcomes: String,
    /// One feature vector per accepted request.
    pub features: String,
    /// Compacted: each partition's route statistics, read by every instance.
    pub route_stats: String,
    pub dlq: String,
    pub late: String,
    /// Alerts (`kpi.alert`, `route.degraded`), for the webhook fan-out.
    pub alerts: String,
    /// One scored record per accepted request (when `[scoring] models` is set).
    pub scored: String,
    /// Create missing topics at start.
    pub create_missing: bool,
    /// Partitions for topics veriflow creates.
    pub partitions: i32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    pub ttl: String,
    pub allowed_lateness: String,
    pub retention_after_decision: String,
    pub max_event_bytes: usize,
    /// `"off"` disables the check.
    pub max_future_skew: String,
    /// Silence at the head of a partition after which its event time follows the
    /// wall clock; `"off"` disables.
    pub idle_timeout: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    pub dir: PathBuf,
    pub interval: String,
    pub keep: usize,
}

impl Default for KafkaSection {
    fn default() -> Self {
        KafkaSection {
            brokers: "127.0.0.1:9092".into(),
            group_id: "veriflow".into(),
            resume_rewind: 10_000,
            properties: BTreeMap::new(),
        }
    }
}

impl Default for TopicsSection {
    fn default() -> Self {
        TopicsSection {
            input: "verifications".into(),
            outcomes: "verifications.outcomes".into(),
            features: "verifications.features".into(),
            route_stats: "veriflow.route-stats".into(),
            dlq: "verifications.dlq".into(),
            late: "verifications.late".into(),
            alerts: "veriflow.alerts".into(),
            scored: "verifications.scored".into(),
            create_missing: true,
            partitions: 4,
        }
    }
}

impl Default for PipelineSection {
    fn default() -> Self {
        PipelineSection {
            ttl: "10m".into(),
            allowed_lateness: "2m".into(),
            retention_after_decision: "10m".into(),
            max_event_bytes: 64 * 1024,
            max_future_skew: "off".into(),
            idle_timeout: "30s".into(),
        }
    }
}

impl Default for CheckpointSection {
    fn default() -> Self {
        CheckpointSection {
            dir: "var/checkpoints".into(),
            interval: "10s".into(),
            keep: 3,
        }
    }
}

impl Config {
    /// Reads the file (if given), applies `VERIFLOW_*` environment overrides.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, std::env::vars())?;
        let config: Config = toml::Value::Table(table)
            .try_into()
            .with_context(|| match path {
                Some(p) => format!(
                    "invalid configuration in {} or VERIFLOW_* variables",
                    p.display()
                ),
                None => "invalid configuration in VERIFLOW_* variables".to_owned(),
            })?;
        config.pipeline()?; // validate durations now, not at first use
        config.checkpoint_interval_ms()?;
        config.idle_timeout_ms()?;
        config.api()?;
        config.influx()?;
        config.kpi_window_ms()?;
        Ok(config)
    }

    /// The KPI window, or `None` when KPIs are off (no `influx.url`, or
    /// `kpi.window = "off"`).
    pub fn kpi_window_ms(&self) -> anyhow::Result<Option<i64>> {
        if self.influx.url.is_empty() || self.kpi.window == "off" {
            return Ok(None);
        }
        let ms = duration("kpi.window", &self.kpi.window)?;
        anyhow::ensure!(ms >= 1000, "kpi.window must be at least 1s");
        Ok(Some(ms))
    }

    /// The alert rules in force (none when alerts or KPIs are off).
    pub fn alert_rules(&self) -> anyhow::Result<Vec<AlertRule>> {
        if !self.alerts.enabled || self.kpi_window_ms()?.is_none() {
            return Ok(Vec::new());
        }
        if self.alerts.rules.is_empty() {
            return Ok(AlertRule::defaults());
        }
        self.alerts
            .rules
            .iter()
            .map(AlertRuleSection::rule)
            .collect()
    }

    pub fn influx(&self) -> anyhow::Result<veriflow_connectors::influx::InfluxConfig> {
        let i = &self.influx;
        let ms = |name: &str, text: &str| -> anyhow::Result<std::time::Duration> {
            Ok(std::time::Duration::from_millis(
                duration(name, text)? as u64
            ))
        };
        Ok(veriflow_connectors::influx::InfluxConfig {
            url: i.url.clone(),
            org: i.org.clone(),
            bucket: i.bucket.clone(),
            token: i.token.clone(),
            batch_points: i.batch_points.max(1),
            buffer_points: i.buffer_points.max(1),
            timeout: ms("influx.timeout", &i.timeout)?,
            max_backoff: ms("influx.max_backoff", &i.max_backoff)?,
        })
    }

    pub fn api(&self) -> anyhow::Result<veriflow_api::ApiConfig> {
        let a = &self.api;
        let timeout = duration("api.request_timeout", &a.request_timeout)?;
        anyhow::ensure!(timeout > 0, "api.request_timeout must be positive");
        anyhow::ensure!(
            a.rate_limit_per_second > 0,
            "api.rate_limit_per_second must be positive"
        );
        Ok(veriflow_api::ApiConfig {
            database_url: a.database_url.clone(),
            operator_token: (!a.operator_token.is_empty()).then(|| a.operator_token.clone()),
            max_body_bytes: a.max_body_bytes,
            request_timeout: std::time::Duration::from_millis(timeout as u64),
            rate_limit_per_second: a.rate_limit_per_second,
            rate_limit_burst: a.rate_limit_burst,
            locales_dir: (!a.locales_dir.is_empty()).then(|| PathBuf::from(&a.locales_dir)),
            webhooks: self.webhooks()?,
        })
    }

    /// The champion/challenger split of `[scoring]`.
    pub fn rollout(&self) -> anyhow::Result<crate::scoring_stage::Rollout> {
        let s = &self.scoring;
        anyhow::ensure!(
            (0.0..=1.0).contains(&s.challenger_share),
            "scoring.challenger_share must be between 0 and 1"
        );
        let challenger = (!s.challenger.is_empty()).then(|| PathBuf::from(&s.challenger));
        anyhow::ensure!(
            challenger.is_some()
                || (s.challenger_share == 0.0 && !s.shadow && s.challenger_tenants.is_empty()),
            "scoring.challenger_share, challenger_tenants and shadow need scoring.challenger"
        );
        Ok(crate::scoring_stage::Rollout {
            challenger,
            share: s.challenger_share,
            tenants: s.challenger_tenants.clone(),
            shadow: s.shadow,
        })
    }

    /// `[scoring] reload_interval`, `None` when off.
    pub fn scoring_reload(&self) -> anyhow::Result<Option<std::time::Duration>> {
        match self.scoring.reload_interval.as_str() {
            "off" => Ok(None),
            text => {
                let ms = duration("scoring.reload_interval", text)?;
                anyhow::ensure!(
                    ms > 0,
                    "scoring.reload_interval must be positive or \"off\""
                );
                Ok(Some(std::time::Duration::from_millis(ms as u64)))
            }
        }
    }

    pub fn webhooks(&self) -> anyhow::Result<veriflow_api::webhooks::WebhooksConfig> {
        use veriflow_api::webhooks::schedule::RetrySchedule;
        let w = &self.webhooks;
        let ms = |name: &str, text: &str| -> anyhow::Result<std::time::Duration> {
            Ok(std::time::Duration::from_millis(
                duration(&format!("webhooks.{name}"), text)? as u64,
            ))
        };
        let delays = w
            .retry_schedule
            .iter()
            .map(|d| ms("retry_schedule", d))
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(
            (0.0..1.0).contains(&w.retry_jitter),
            "webhooks.retry_jitter must be in [0, 1)"
        );
        anyhow::ensure!(
            w.max_in_flight > 0,
            "webhooks.max_in_flight must be positive"
        );
        anyhow::ensure!(w.claim_batch > 0, "webhooks.claim_batch must be positive");
        anyhow::ensure!(
            w.queue_per_endpoint > 0,
            "webhooks.queue_per_endpoint must be positive"
        );
        let allow_networks = w
            .allow_networks
            .iter()
            .map(|n| {
                n.parse::<ipnet::IpNet>()
                    .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!("webhooks.allow_networks: {n:?} is not a CIDR network")
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let lease = ms("lease", &w.lease)?;
        anyhow::ensure!(
            lease >= std::time::Duration::from_secs(1),
            "webhooks.lease must be at least 1s"
        );
        Ok(veriflow_api::webhooks::WebhooksConfig {
            enabled: w.enabled,
            instance_id: if w.instance_id.is_empty() {
                format!(
                    "{}/{}",
                    veriflow_api::webhooks::default_instance_id(),
                    self.api.listen
                )
            } else {
                w.instance_id.clone()
            },
            encryption_key: (!w.encryption_key.is_empty()).then(|| w.encryption_key.clone()),
            key_file: PathBuf::from(&w.key_file),
            schedule: RetrySchedule {
                delays,
                jitter: w.retry_jitter,
            },
            timeout: ms("timeout", &w.timeout)?,
            connect_timeout: ms("connect_timeout", &w.connect_timeout)?,
            max_in_flight: w.max_in_flight,
            queue_per_endpoint: w.queue_per_endpoint,
            claim_batch: w.claim_batch,
            poll_interval: ms("poll_interval", &w.poll_interval)?,
            lease,
            disable_after: ms("disable_after", &w.disable_after)?,
            allow_networks,
            https_only: w.https_only,
            rotation_overlap: ms("rotation_overlap", &w.rotation_overlap)?,
        })
    }

    pub fn pipeline(&self) -> anyhow::Result<PipelineConfig> {
        let p = &self.pipeline;
        let skew = match p.max_future_skew.as_str() {
            "off" => None,
            text => Some(duration("pipeline.max_future_skew", text)?),
        };
        Ok(PipelineConfig {
            ttl_ms: duration("pipeline.ttl", &p.ttl)?,
            allowed_lateness_ms: duration("pipeline.allowed_lateness", &p.allowed_lateness)?,
            retention_after_decision_ms: duration(
                "pipeline.retention_after_decision",
                &p.retention_after_decision,
            )?,
            limits: ValidationLimits {
                max_event_bytes: p.max_event_bytes,
                max_future_skew_ms: skew,
                ..ValidationLimits::default()
            },
            kpi_window_ms: self.kpi_window_ms()?,
            alert_rules: self.alert_rules()?,
            // Filled from the KPI files' `-- window:` lines when they are loaded.
            kpi_hops: Vec::new(),
            // Plugged in by `veriflow run` when `[scoring] models` is set.
            scorer: None,
        })
    }

    /// `None` when idle advance is off.
    pub fn idle_timeout_ms(&self) -> anyhow::Result<Option<i64>> {
        match self.pipeline.idle_timeout.as_str() {
            "off" => Ok(None),
            text => duration("pipeline.idle_timeout", text).map(Some),
        }
    }

    pub fn checkpoint_interval_ms(&self) -> anyhow::Result<i64> {
        duration("checkpoint.interval", &self.checkpoint.interval)
    }

    pub fn kafka(&self) -> KafkaConfig {
        KafkaConfig {
            brokers: self.kafka.brokers.clone(),
            group_id: self.kafka.group_id.clone(),
            properties: self.kafka.properties.clone(),
        }
    }
}

/// A table of scalars, each turned into the string librdkafka expects.
fn scalar_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, toml::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => Ok((k, s)),
            toml::Value::Integer(i) => Ok((k, i.to_string())),
            toml::Value::Float(f) => Ok((k, f.to_string())),
            toml::Value::Boolean(b) => Ok((k, b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "kafka.properties.{k} must be a string, number or boolean, not {}",
                other.type_str()
            ))),
        })
        .collect()
}

fn duration(name: &str, text: &str) -> anyhow::Result<i64> {
    match parse_duration_ms(text) {
        Some(ms) if ms >= 0 => Ok(ms),
        _ => bail!("{name} = {text:?} is not a duration (examples: 1500ms, 30s, 10m, 2h)"),
    }
}

/// `VERIFLOW_SECTION__KEY=value` sets `[section] key = value`. The value is read as a
/// TOML value when it parses as one (numbers, booleans), else as a string.
fn apply_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    for (name, value) in vars {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let parts: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if parts.len() < 2 || parts.iter().any(String::is_empty) {
            continue; // not a config override (e.g. VERIFLOW_LOG)
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
                _ => bail!("{name}: `{part}` is not a section"),
            };
        }
        node.insert(parts[parts.len() - 1].clone(), parsed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_values() {
        let mut table: toml::Table = "[kafka]\nbrokers = \"a:1\"\n[pipeline]\nmax_event_bytes = 10"
            .parse()
            .unwrap();
        let vars = [
            ("VERIFLOW_KAFKA__BROKERS".to_owned(), "b:2".to_owned()),
            (
                "VERIFLOW_PIPELINE__MAX_EVENT_BYTES".to_owned(),
                "2048".to_owned(),
            ),
            (
                "VERIFLOW_KAFKA__PROPERTIES__SECURITY.PROTOCOL".to_owned(),
                "ssl".to_owned(),
            ),
            (
                "VERIFLOW_KAFKA__PROPERTIES__SESSION.TIMEOUT.MS".to_owned(),
                "6000".to_owned(),
            ),
            ("VERIFLOW_LOG".to_owned(), "debug".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        apply_env(&mut table, vars.into_iter()).unwrap();
        let config: Config = toml::Value::Table(table).try_into().unwrap();
        assert_eq!(config.kafka.brokers, "b:2");
        assert_eq!(config.pipeline.max_event_bytes, 2048);
        assert_eq!(config.kafka.properties["security.protocol"], "ssl");
        assert_eq!(config.kafka.properties["session.timeout.ms"], "6000");
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_refused() {
        let table: toml::Table = "[kafka]\nbroker = \"a:1\"".parse().unwrap();
        let err = toml::Value::Table(table).try_into::<Config>().unwrap_err();
        assert!(err.to_string().contains("broker"), "{err}");
        let config = Config {
            pipeline: PipelineSection {
                ttl: "10 minutes".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(
            config
                .pipeline()
                .unwrap_err()
                .to_string()
                .contains("pipeline.ttl")
        );
    }

    #[test]
    fn the_shipped_veriflow_toml_is_the_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("veriflow.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let config: Config = toml::from_str(&text).unwrap();
        let default = Config::default();
        assert_eq!(format!("{config:?}"), format!("{default:?}"));
    }
}
