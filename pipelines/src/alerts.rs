//! Alert rules over KPI windows: a metric per scope key, compared with a threshold
//! or with its own baseline, with hysteresis and a cool-down so that one incident
//! fires once.
//!
//! Each window is evaluated once, as of one window length after its end (most
//! approvals and receipts of its requests are in by then; a deterministic instant,
//! so alerts do not depend on arrival order). Baselines are exponentially weighted
//! means of the same statistic at the same lag, updated only while the key is
//! healthy, so an incident does not teach the baseline that it is normal. A key with
//! too little history of its own is compared with its tenant's baseline.

use std::collections::BTreeMap;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use veriflow_common::config::{ConfigError, Validate, duration, ensure};

use crate::Text;
use crate::time::EventTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Requests,
    ConversionRate,
    DeliveryRate,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::ConversionRate => "conversion_rate",
            Metric::DeliveryRate => "delivery_rate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Tenant,
    TenantCountry,
    TenantCountryProvider,
    /// Across the partition's tenants (tenant tag `*`): route health is a property
    /// of the country and provider, and pooling gives it the volume to be judged.
    CountryProvider,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// Fires below `baseline × (1 − threshold)`.
    Drop,
    /// Fires above `baseline × threshold`.
    Spike,
    /// Fires below `threshold`.
    Below,
    /// Fires above `threshold`.
    Above,
}

/// One rule, as written in `[[alerts.rules]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: String,
    pub metric: Metric,
    pub scope: Scope,
    pub comparison: Comparison,
    pub threshold: f64,
    /// Requests (or receipts, for delivery rate) a key needs in a window to count.
    #[serde(default)]
    pub min_volume: u32,
    /// After firing, the key stays quiet this long (event time).
    #[serde(with = "duration", default = "default_cooldown")]
    pub cooldown: Duration,
    #[serde(default = "default_severity")]
    pub severity: String,
}

fn default_cooldown() -> Duration {
    Duration::from_secs(10 * 60)
}

fn default_severity() -> String {
    "warning".into()
}

/// `[alerts]`: rules over the KPI windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Evaluate alert rules on the KPI windows (needs KPIs on).
    pub enabled: bool,
    /// Replaces the built-in rules ([`AlertRule::defaults`]) when non-empty.
    pub rules: Vec<AlertRule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            rules: Vec::new(),
        }
    }
}

impl AlertsConfig {
    /// The rules in force (none when alerts are off).
    pub fn rules(&self) -> Vec<AlertRule> {
        match (self.enabled, self.rules.is_empty()) {
            (false, _) => Vec::new(),
            (true, true) => AlertRule::defaults(),
            (true, false) => self.rules.clone(),
        }
    }
}

impl Validate for AlertsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let key = format!("rules[{i}]");
            let within = |e: ConfigError| e.within(&key);
            ensure(!rule.name.trim().is_empty(), "name", "must not be empty").map_err(within)?;
            ensure(
                names.insert(rule.name.as_str()),
                "name",
                format!("{:?} is used by two rules", rule.name),
            )
            .map_err(within)?;
            ensure(rule.threshold.is_finite(), "threshold", "must be a number").map_err(within)?;
            let ratio = matches!(rule.comparison, Comparison::Drop);
            ensure(
                !ratio || (0.0..1.0).contains(&rule.threshold),
                "threshold",
                "a drop's threshold is the share lost, between 0 and 1",
            )
            .map_err(within)?;
            ensure(
                !matches!(rule.comparison, Comparison::Spike) || rule.threshold > 1.0,
                "threshold",
                "a spike's threshold is a multiple of the baseline, above 1",
            )
            .map_err(within)?;
        }
        Ok(())
    }
}

impl AlertRule {
    /// The contract's event type for this rule's firings.
    pub fn event_type(&self) -> &'static str {
        match self.metric {
            Metric::DeliveryRate => "route.degraded",
            _ => "kpi.alert",
        }
    }

    /// The rules veriflow ships: the SMS-pumping signature, route degradation,
    /// and volume spikes.
    pub fn defaults() -> Vec<AlertRule> {
        vec![
            AlertRule {
                name: "conversion_drop".into(),
                metric: Metric::ConversionRate,
                scope: Scope::TenantCountry,
                comparison: Comparison::Drop,
                threshold: 0.5,
                min_volume: 20,
                cooldown: default_cooldown(),
                severity: "critical".into(),
            },
            AlertRule {
                name: "route_degraded".into(),
                metric: Metric::DeliveryRate,
                scope: Scope::CountryProvider,
                comparison: Comparison::Drop,
                threshold: 0.5,
                min_volume: 8,
                cooldown: default_cooldown(),
                severity: "warning".into(),
            },
            AlertRule {
                name: "volume_spike".into(),
                metric: Metric::Requests,
                scope: Scope::TenantCountry,
                comparison: Comparison::Spike,
                threshold: 4.0,
                min_volume: 10,
                cooldown: default_cooldown(),
                severity: "warning".into(),
            },
        ]
    }
}

/// What a window holds for one scope key, as of its evaluation instant.
#[derive(Debug, Clone, Default)]
pub struct KeyStats {
    pub requests: u32,
    pub approved: u32,
    pub delivered: u32,
    pub undelivered: u32,
}

impl KeyStats {
    fn value(&self, metric: Metric) -> Option<(f64, u32)> {
        match metric {
            Metric::Requests => Some((f64::from(self.requests), self.requests)),
            Metric::ConversionRate => (self.requests > 0).then(|| {
                (
                    f64::from(self.approved) / f64::from(self.requests),
                    self.requests,
                )
            }),
            Metric::DeliveryRate => {
                let receipts = self.delivered + self.undelivered;
                (receipts > 0).then(|| (f64::from(self.delivered) / f64::from(receipts), receipts))
            }
        }
    }
}

/// How many standard deviations a rate must be off its baseline to fire.
const Z_MIN: f64 = 3.0;

/// A rate from fewer observations than this is too noisy to teach a baseline.
const RATE_LEARN_MIN: u32 = 5;

/// Whether a window under the rule's `min_volume` still teaches its baseline:
/// counts always do (that is the key's normal level), rates from enough
/// observations.
fn learns(metric: Metric, volume: u32) -> bool {
    match metric {
        Metric::Requests => volume > 0,
        Metric::ConversionRate | Metric::DeliveryRate => volume >= RATE_LEARN_MIN,
    }
}

/// Scope key: tenant, country, provider (empty when not part of the scope).
pub type ScopeKey = (Text, Text, Text);

/// A firing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub partition: i32,
    pub rule: String,
    pub event_type: String,
    pub severity: String,
    pub tenant: Text,
    pub country: Text,
    pub provider: Text,
    pub metric: Metric,
    pub value: f64,
    pub baseline: Option<f64>,
    /// The value the metric crossed.
    pub threshold: f64,
    pub volume: u32,
    pub window_start: EventTime,
    /// The evaluation instant (one window after the window's end).
    pub at: EventTime,
    pub message: String,
}

impl Alert {
    /// Deterministic identity: one alert per rule, key and window.
    pub fn alert_id(&self) -> String {
        format!(
            "alert-{}-{}-{}-{}-{}",
            self.rule, self.tenant, self.country, self.provider, self.window_start
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Baseline {
    mean: f64,
    updates: u32,
}

impl Baseline {
    const ALPHA: f64 = 0.2;
    const WARM: u32 = 3;

    fn update(&mut self, x: f64) {
        self.mean = if self.updates == 0 {
            x
        } else {
            self.mean + Self::ALPHA * (x - self.mean)
        };
        self.updates += 1;
    }

    fn warm(&self) -> Option<f64> {
        (self.updates >= Self::WARM).then_some(self.mean)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct KeyState {
    baseline: Baseline,
    firing: bool,
    healthy_streak: u32,
    quiet_until: EventTime,
}

/// Alert state of one partition (checkpointed with the KPI windows).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// (rule index, key) → state.
    keys: BTreeMap<(usize, ScopeKey), KeyState>,
    /// (rule index, tenant) → the tenant-wide baseline, for keys without history.
    tenants: BTreeMap<(usize, Text), Baseline>,
}

impl AlertState {
    /// Evaluates one window (stats per key at the finest scope: tenant, country,
    /// provider) against every rule.
    pub fn evaluate(
        &mut self,
        rules: &[AlertRule],
        partition: i32,
        window_start: EventTime,
        at: EventTime,
        stats: &BTreeMap<ScopeKey, KeyStats>,
        forecast: &dyn Fn(&ScopeKey) -> Option<f64>,
    ) -> Vec<Alert> {
        let mut fired = Vec::new();
        for (r, rule) in rules.iter().enumerate() {
            // Roll the finest stats up to the rule's scope.
            let mut scoped: BTreeMap<ScopeKey, KeyStats> = BTreeMap::new();
            let mut per_tenant: BTreeMap<Text, KeyStats> = BTreeMap::new();
            for ((tenant, country, provider), s) in stats {
                let key = match rule.scope {
                    Scope::Tenant => (tenant.clone(), Text::default(), Text::default()),
                    Scope::TenantCountry => (tenant.clone(), country.clone(), Text::default()),
                    Scope::TenantCountryProvider => {
                        (tenant.clone(), country.clone(), provider.clone())
                    }
                    Scope::CountryProvider => (Text::from("*"), country.clone(), provider.clone()),
                };
                for target in [
                    scoped.entry(key).or_default(),
                    per_tenant.entry(tenant.clone()).or_default(),
                ] {
                    target.requests += s.requests;
                    target.approved += s.approved;
                    target.delivered += s.delivered;
                    target.undelivered += s.undelivered;
                }
            }
            for (key, s) in &scoped {
                let Some((value, volume)) = s.value(rule.metric) else {
                    continue;
                };
                // `min_volume` decides whether a window may fire, not whether it
                // teaches the baseline: a key whose normal windows sit under it
                // must still learn its normal level, or its spike is never seen.
                if volume < rule.min_volume {
                    if learns(rule.metric, volume) {
                        let state = self.keys.entry((r, key.clone())).or_default();
                        if !state.firing {
                            state.baseline.update(value);
                        }
                    }
                    continue;
                }
                let tenant_base = self
                    .tenants
                    .get(&(r, key.0.clone()))
                    .and_then(Baseline::warm);
                let state = self.keys.entry((r, key.clone())).or_default();
                // Volume is judged against the demand forecast for this hour when
                // there is one (daily seasonality), else against its baseline.
                let forecast = match (rule.metric, rule.scope) {
                    (Metric::Requests, Scope::TenantCountry) => forecast(key),
                    _ => None,
                };
                let baseline = forecast.or(state.baseline.warm()).or(tenant_base);
                let limit = match (rule.comparison, baseline) {
                    (Comparison::Drop, Some(b)) => Some(b * (1.0 - rule.threshold)),
                    (Comparison::Spike, Some(b)) => Some(b * rule.threshold),
                    (Comparison::Below | Comparison::Above, _) => Some(rule.threshold),
                    _ => None,
                };
                // A rate must also be improbable under its baseline (a binomial
                // z-score), so a handful of failures on a small route is no incident.
                // A count, improbable under a Poisson of the baseline's mean.
                let significant = match (rule.metric, baseline) {
                    (Metric::ConversionRate | Metric::DeliveryRate, Some(b)) => {
                        let sd = (b * (1.0 - b) / f64::from(volume)).sqrt().max(1e-9);
                        ((value - b) / sd).abs() >= Z_MIN
                    }
                    (Metric::Requests, Some(b)) => {
                        let sd = b.max(1.0).sqrt();
                        ((value - b) / sd).abs() >= Z_MIN
                    }
                    _ => true,
                };
                let breached = significant
                    && limit.is_some_and(|l| match rule.comparison {
                        Comparison::Drop | Comparison::Below => value < l,
                        Comparison::Spike | Comparison::Above => value > l,
                    });
                // Recovery needs to clear half the margin (hysteresis).
                let recovered = match (rule.comparison, baseline, limit) {
                    (Comparison::Drop, Some(b), _) => value >= b * (1.0 - rule.threshold / 2.0),
                    (Comparison::Spike, Some(b), _) => {
                        value <= b * (1.0 + (rule.threshold - 1.0) / 2.0)
                    }
                    (_, _, Some(l)) => !breached && (value - l).abs() > f64::EPSILON,
                    _ => true,
                };
                if breached {
                    state.healthy_streak = 0;
                    if !state.firing && at >= state.quiet_until {
                        state.firing = true;
                        state.quiet_until = at + rule.cooldown.as_millis() as i64;
                        let (tenant, country, provider) = key.clone();
                        let scope = [country.as_str(), provider.as_str()]
                            .into_iter()
                            .filter(|s| !s.is_empty())
                            .collect::<Vec<_>>()
                            .join("/");
                        let message = format!(
                            "{} of tenant {tenant}{}{scope}: {} {:.3} against {} {:.3} ({} in the window)",
                            rule.name,
                            if scope.is_empty() { "" } else { ", " },
                            rule.metric.as_str(),
                            value,
                            if baseline.is_some() {
                                "a limit from its baseline of"
                            } else {
                                "the threshold"
                            },
                            limit.unwrap_or(rule.threshold),
                            volume,
                        );
                        fired.push(Alert {
                            partition,
                            rule: rule.name.clone(),
                            event_type: rule.event_type().into(),
                            severity: rule.severity.clone(),
                            tenant,
                            country,
                            provider,
                            metric: rule.metric,
                            value,
                            baseline,
                            threshold: limit.unwrap_or(rule.threshold),
                            volume,
                            window_start,
                            at,
                            message,
                        });
                    }
                } else if recovered {
                    state.healthy_streak += 1;
                    if state.firing && state.healthy_streak >= 2 {
                        state.firing = false;
                    }
                }
                if !state.firing && !breached {
                    state.baseline.update(value);
                }
            }
            for (tenant, s) in &per_tenant {
                if let Some((value, volume)) = s.value(rule.metric)
                    && (volume >= rule.min_volume || learns(rule.metric, volume))
                {
                    let any_firing = self
                        .keys
                        .range((r, (tenant.clone(), Text::default(), Text::default()))..)
                        .take_while(|((i, k), _)| *i == r && k.0 == *tenant)
                        .any(|(_, s)| s.firing);
                    if !any_firing {
                        self.tenants
                            .entry((r, tenant.clone()))
                            .or_default()
                            .update(value);
                    }
                }
            }
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(requests: u32) -> BTreeMap<ScopeKey, KeyStats> {
        let key = (Text::from("shop"), Text::from("BR"), Text::from("sinch"));
        [(
            key,
            KeyStats {
                requests,
                approved: requests * 3 / 4,
                delivered: requests,
                undelivered: 0,
            },
        )]
        .into_iter()
        .collect()
    }

    /// Windows of `requests` each, minute after minute; the alerts fired.
    fn run(
        state: &mut AlertState,
        rules: &[AlertRule],
        minutes: std::ops::Range<i64>,
        requests: u32,
    ) -> Vec<Alert> {
        minutes
            .flat_map(|m| {
                let start = m * 60_000;
                state.evaluate(rules, 0, start, start + 120_000, &window(requests), &|_| {
                    None
                })
            })
            .collect()
    }

    #[test]
    fn a_small_tenants_campaign_spikes_against_its_own_level() {
        let spike: Vec<AlertRule> = AlertRule::defaults()
            .into_iter()
            .filter(|r| r.name == "volume_spike")
            .collect();
        for normal in [2u32, 3, 5, 8] {
            let mut state = AlertState::default();
            assert!(
                run(&mut state, &spike, 0..60, normal).is_empty(),
                "{normal}/min is its normal level"
            );
            let fired = run(&mut state, &spike, 60..70, normal * 5);
            assert_eq!(
                fired.len(),
                1,
                "a 5× campaign from {normal}/min fires once: {fired:?}"
            );
            assert_eq!(fired[0].rule, "volume_spike");
        }
        // Under the rule's floor nothing fires, however steep: 1/min → 5/min.
        let mut state = AlertState::default();
        run(&mut state, &spike, 0..60, 1);
        assert!(run(&mut state, &spike, 60..70, 5).is_empty());
        // A busy key's ordinary noise does not fire either.
        let mut state = AlertState::default();
        let noisy: Vec<Alert> = (0..120)
            .flat_map(|m| {
                let requests = 100 + (m * 37 % 23) as u32;
                let start = m * 60_000;
                state.evaluate(
                    &spike,
                    0,
                    start,
                    start + 120_000,
                    &window(requests),
                    &|_| None,
                )
            })
            .collect();
        assert!(noisy.is_empty(), "{noisy:?}");
    }
}
