//! Feature vectors: the one mapping from the pipeline's `Features` (and the live
//! route statistics) to the numbers the models read. Training and serving both
//! call these functions, so there is no train/serve skew by construction.
//!
//! Every input goes through `sign(x)·ln(1+|x|)`: counts spread over orders of
//! magnitude, and z-scores and shares stay close to themselves. Missing values
//! (no IP sent) are 0.

use serde_json::Value;
use veriflow_pipelines::features::{FEATURE_SCHEMA_VERSION, Features};
use veriflow_pipelines::routes::RouteSnapshot;
use veriflow_pipelines::time::EventTime;

/// The fraud model's inputs: every field of `Features`, sorted by name (so the
/// order never depends on serde_json's map features in a given build).
pub fn fraud_feature_names() -> Vec<String> {
    let mut names: Vec<String> = match serde_json::to_value(Features::default()) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };
    names.sort();
    names
}

/// `sign(x)·ln(1+|x|)`; not-a-number and infinities (a ratio over nothing)
/// read as 0.
pub fn squash(x: f64) -> f32 {
    if x.is_finite() {
        (x.signum() * x.abs().ln_1p()) as f32
    } else {
        0.0
    }
}

/// The fraud vector of one request, in [`fraud_feature_names`] order.
pub fn fraud_vector(features: &Features, names: &[String]) -> Vec<f32> {
    let value = serde_json::to_value(features).unwrap_or(Value::Null);
    names
        .iter()
        .map(|name| match value.get(name) {
            Some(Value::Bool(b)) => f32::from(u8::from(*b)),
            Some(Value::Number(n)) => squash(n.as_f64().unwrap_or(0.0)),
            _ => 0.0,
        })
        .collect()
}

/// Live statistics of one route (country × provider) at a request's time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteView {
    /// Decayed over ~5 minutes and ~1 hour; `None` without receipts.
    pub delivery_rate_5m: Option<f64>,
    pub delivery_rate_1h: Option<f64>,
    pub conversion_rate_1h: Option<f64>,
    /// Attempts seen in the last hour (decayed).
    pub sent_1h: f64,
}

impl RouteView {
    pub fn at(snapshot: Option<&RouteSnapshot>, t: EventTime) -> RouteView {
        match snapshot {
            None => RouteView {
                delivery_rate_5m: None,
                delivery_rate_1h: None,
                conversion_rate_1h: None,
                sent_1h: 0.0,
            },
            Some(s) => {
                let [m5, h1, _] = s.decayed_to(t);
                RouteView {
                    delivery_rate_5m: m5.delivery_rate(),
                    delivery_rate_1h: h1.delivery_rate(),
                    conversion_rate_1h: h1.conversion_rate(),
                    sent_1h: h1.sent,
                }
            }
        }
    }
}

/// Names of the success model's inputs after the fraud features.
pub const ROUTE_FEATURE_NAMES: [&str; 7] = [
    "route_delivery_rate_5m",
    "route_delivery_rate_1h",
    "route_conversion_rate_1h",
    "route_has_receipts_5m",
    "route_has_receipts_1h",
    "route_sent_1h",
    "route_delivery_drop",
];

/// The success vector for one (request, provider): the request's features,
/// the route's live statistics, then one-hot provider and country.
pub fn success_vector(
    fraud: &[f32],
    route: &RouteView,
    provider: &str,
    country: &str,
    providers: &[String],
    countries: &[String],
) -> Vec<f32> {
    let mut v = Vec::with_capacity(fraud.len() + 7 + providers.len() + countries.len());
    v.extend_from_slice(fraud);
    let rate5 = route.delivery_rate_5m;
    let rate1 = route.delivery_rate_1h;
    v.push(rate5.unwrap_or(0.0) as f32);
    v.push(rate1.unwrap_or(0.0) as f32);
    v.push(route.conversion_rate_1h.unwrap_or(0.0) as f32);
    v.push(f32::from(u8::from(rate5.is_some())));
    v.push(f32::from(u8::from(rate1.is_some())));
    v.push(squash(route.sent_1h));
    // A route failing now against its own last hour: the outage signal.
    v.push(match (rate5, rate1) {
        (Some(a), Some(b)) => (b - a) as f32,
        _ => 0.0,
    });
    v.extend(providers.iter().map(|p| f32::from(u8::from(p == provider))));
    v.extend(countries.iter().map(|c| f32::from(u8::from(c == country))));
    v
}

/// The names of [`success_vector`]'s entries.
pub fn success_feature_names(
    fraud_names: &[String],
    providers: &[String],
    countries: &[String],
) -> Vec<String> {
    let mut names: Vec<String> = fraud_names.to_vec();
    names.extend(ROUTE_FEATURE_NAMES.iter().map(|s| s.to_string()));
    names.extend(providers.iter().map(|p| format!("provider={p}")));
    names.extend(countries.iter().map(|c| format!("country={c}")));
    names
}

/// The feature schema a model was trained on: the pipeline's version plus a
/// digest of the names in order. Loading checks it.
pub fn schema_id(names: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(names.join("\n").as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("v{FEATURE_SCHEMA_VERSION}-{hex}")
}
