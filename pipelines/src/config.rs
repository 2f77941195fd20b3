//! The streaming core's settings: [`PipelineSettings`] is the `[pipeline]`
//! section of `veriflow.toml` as written; [`PipelineConfig`] is what a
//! [`crate::PartitionPipeline`] runs with (the settings, plus the KPI windows,
//! alert rules and scorer the runtime plugs in).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use veriflow_common::config::{ConfigError, Validate, duration, duration_or_off, ensure};

use crate::alerts::AlertRule;
use crate::scoring::ScorerHandle;
use crate::validate::{DEFAULT_MAX_EVENT_BYTES, ValidationLimits};

/// `[pipeline]`: event-time semantics and input limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    /// A verification not approved this long after `requested` has expired.
    #[serde(with = "duration")]
    pub ttl: Duration,
    /// How far behind the newest event of a partition an event may arrive.
    #[serde(with = "duration")]
    pub allowed_lateness: Duration,
    /// How long after its deadline a decided verification is remembered, so
    /// that its stragglers are recognised instead of becoming orphans.
    #[serde(with = "duration")]
    pub retention_after_decision: Duration,
    /// Larger messages are dead-lettered as `too_large`.
    pub max_event_bytes: usize,
    /// Events further ahead of the wall clock are refused; `"off"` disables.
    #[serde(with = "duration_or_off")]
    pub max_future_skew: Option<Duration>,
    /// Silence at the head of a partition after which its event time follows
    /// the wall clock; `"off"` disables (results then depend on events alone).
    #[serde(with = "duration_or_off")]
    pub idle_timeout: Option<Duration>,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            ttl: Duration::from_secs(10 * 60),
            allowed_lateness: Duration::from_secs(2 * 60),
            retention_after_decision: Duration::from_secs(10 * 60),
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_future_skew: None,
            idle_timeout: Some(Duration::from_secs(30)),
        }
    }
}

impl Validate for PipelineSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.ttl.is_zero(), "ttl", "must be positive")?;
        ensure(
            self.max_event_bytes >= 256,
            "max_event_bytes",
            "must be at least 256 (a minimal event)",
        )?;
        ensure(
            self.idle_timeout.is_none_or(|d| !d.is_zero()),
            "idle_timeout",
            "must be positive or \"off\"",
        )
    }
}

impl PipelineSettings {
    /// The settings that shape what a replay computes (features, outcomes):
    /// a model trained under different ones sees other features than the
    /// stream serves. `(key, trained, here)` for each that differs.
    pub fn replay_differences(
        &self,
        other: &PipelineSettings,
    ) -> Vec<(&'static str, String, String)> {
        let d = |x: Duration| veriflow_common::config::format_duration(x);
        let o = |x: Option<Duration>| x.map_or_else(|| "off".to_owned(), d);
        let mut out = Vec::new();
        let mut differ = |key, a: String, b: String| {
            if a != b {
                out.push((key, a, b));
            }
        };
        differ("ttl", d(self.ttl), d(other.ttl));
        differ(
            "allowed_lateness",
            d(self.allowed_lateness),
            d(other.allowed_lateness),
        );
        differ(
            "retention_after_decision",
            d(self.retention_after_decision),
            d(other.retention_after_decision),
        );
        differ(
            "max_event_bytes",
            self.max_event_bytes.to_string(),
            other.max_event_bytes.to_string(),
        );
        differ(
            "max_future_skew",
            o(self.max_future_skew),
            o(other.max_future_skew),
        );
        out
    }
}

/// What a partition's operator runs with.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// A verification not approved this long after `requested` has expired.
    pub ttl_ms: i64,
    /// How far behind the newest event of a partition an event may arrive.
    pub allowed_lateness_ms: i64,
    /// How long after its deadline a decided verification is remembered, so that its
    /// stragglers (a late delivery receipt) are recognised instead of becoming orphans.
    pub retention_after_decision_ms: i64,
    pub limits: ValidationLimits,
    /// Width of the KPI windows ([`crate::kpi`]); `None` keeps no KPI facts.
    pub kpi_window_ms: Option<i64>,
    /// Alert rules evaluated on the KPI windows (none without KPI windows).
    pub alert_rules: Vec<AlertRule>,
    /// Hopping KPI windows to build from the tumbling ones: (size, every) in ms,
    /// both multiples of `kpi_window_ms`.
    pub kpi_hops: Vec<(i64, i64)>,
    /// Scores each request as its features are computed ([`crate::scoring`]).
    pub scorer: Option<ScorerHandle>,
    /// Attach each request's route statistics to its feature record
    /// ([`crate::features::FeatureRecord::routes`]) without a scorer:
    /// training replays learn from what the scorer will read.
    pub request_routes: bool,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PipelineConfig {
    /// The operator's settings from `[pipeline]`; no KPIs, alerts or scorer.
    pub fn new(settings: &PipelineSettings) -> Self {
        PipelineConfig {
            ttl_ms: ms(settings.ttl),
            allowed_lateness_ms: ms(settings.allowed_lateness),
            retention_after_decision_ms: ms(settings.retention_after_decision),
            limits: ValidationLimits {
                max_event_bytes: settings.max_event_bytes,
                max_future_skew_ms: settings.max_future_skew.map(ms),
                ..ValidationLimits::default()
            },
            kpi_window_ms: None,
            alert_rules: Vec::new(),
            kpi_hops: Vec::new(),
            scorer: None,
            request_routes: false,
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig::new(&PipelineSettings::default())
    }
}
