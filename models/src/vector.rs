//! Feature vectors: the one mapping from the pipeline's `Features` (and the live
//! route statistics) to the numbers the models read. Training and serving both
//! call these functions, so there is no train/serve skew by construction.
//!
//! Every input goes through `sign(x)·ln(1+|x|)`: counts spread over orders of
//! magnitude, and z-scores and shares stay close to themselves. Missing values
//! (no IP sent) are 0.

use serde_json::Value;

use crate::logistic::Direction;
use veriflow_pipelines::features::{FEATURE_SCHEMA_VERSION, Features};
use veriflow_pipelines::routes::{Counts, RouteSnapshot};
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

/// How each fraud feature may move the risk (the fraud model keeps its
/// weights to these signs, see [`Logistic::train_monotone`]). The features
/// count signals of abuse — velocity per phone, prefix, IP and device, new
/// numbers, sequences, unusual volume, a destination converting worse than
/// usual — so more of any of them never lowers the risk. Approvals and
/// conversion only lower it; the local hour may go either way.
///
/// [`Logistic::train_monotone`]: crate::logistic::Logistic::train_monotone
pub fn fraud_direction(name: &str) -> Direction {
    match name {
        "phone_lifetime_approvals"
        | "tenant_country_conversion_1h"
        | "tenant_country_conversion_24h" => Direction::Decreasing,
        "local_hour" => Direction::Free,
        _ => Direction::Increasing,
    }
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

/// Live statistics of one route (country × provider) at a request's time: its
/// decayed counts over the last ~5 minutes, ~1 hour and ~24 hours
/// ([`HALF_LIVES`](veriflow_pipelines::routes::HALF_LIVES)).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RouteView {
    pub counts: [Counts; 3],
}

impl RouteView {
    pub fn at(snapshot: Option<&RouteSnapshot>, t: EventTime) -> RouteView {
        RouteView {
            counts: snapshot.map_or_else(Default::default, |s| s.decayed_to(t)),
        }
    }

    /// Attempts over the last hour (decayed).
    pub fn sent_1h(&self) -> f64 {
        self.counts[1].sent
    }

    /// Receipts over the last hour (decayed): how much the router knows of
    /// the route's delivery now.
    pub fn receipts_1h(&self) -> f64 {
        self.counts[1].delivered + self.counts[1].undelivered
    }

    /// Whether any receipt of the route is remembered (the day's window): a
    /// route nobody has confirmed delivering (never used here, or sends that
    /// never came back) has no evidence, only the model's prior.
    pub fn has_evidence(&self) -> bool {
        self.counts[2].delivered + self.counts[2].undelivered > 0.0
    }

    /// Delivered share of receipts at each horizon (5 min, 1 h, 24 h), each
    /// shrunk towards the next longer one: a route with three receipts in the
    /// last five minutes moves its estimate a little, not to 0 or 1. The 24 h
    /// level shrinks towards [`DELIVERY_PRIOR`].
    pub fn delivery_estimates(&self) -> [f64; 3] {
        let [m5, h1, d1] = self.counts;
        let day = shrink(
            d1.delivered,
            d1.delivered + d1.undelivered,
            DELIVERY_PRIOR,
            5.0,
        );
        let hour = shrink(h1.delivered, h1.delivered + h1.undelivered, day, 10.0);
        let now = shrink(m5.delivered, m5.delivered + m5.undelivered, hour, 10.0);
        [now, hour, day]
    }
}

/// What a route without history is assumed to deliver.
const DELIVERY_PRIOR: f64 = 0.85;

/// The posterior mean of a rate: `hits` of `n` plus `weight` pseudo-observations at `prior`.
fn shrink(hits: f64, n: f64, prior: f64, weight: f64) -> f64 {
    (hits + weight * prior) / (n + weight)
}

/// ln(p / (1 − p)), kept finite.
fn logit(p: f64) -> f32 {
    let p = p.clamp(1e-4, 1.0 - 1e-4);
    (p / (1.0 - p)).ln() as f32
}

/// The delivery model's inputs, in order.
pub const DELIVERY_FEATURE_NAMES: [&str; 4] = [
    "route_delivery_5m",
    "route_delivery_1h",
    "route_delivery_24h",
    "route_delivery_drop",
];

/// The delivery rates can only raise the odds of delivering; the drop may
/// go either way once they are in.
pub const DELIVERY_DIRECTIONS: [Direction; 4] = [
    Direction::Increasing,
    Direction::Increasing,
    Direction::Increasing,
    Direction::Free,
];

/// The delivery vector of one route at a request's time: its delivery rate
/// now, over the hour and over the day (as logits of the shrunk estimates), and
/// how far now has fallen under the hour (the outage signal).
///
/// Providers and countries enter only through their statistics, never by
/// name: what a route is like *now* is what the router must read, and a model
/// that learned names would not carry over to a provider that changed, or to
/// one it never saw.
pub fn delivery_vector(route: &RouteView) -> Vec<f32> {
    let [now, hour, day] = route.delivery_estimates();
    vec![logit(now), logit(hour), logit(day), (hour - now) as f32]
}

/// The feature schema a model was trained on: the pipeline's version plus a
/// digest of the fraud features' names and the delivery inputs' names, in
/// order. Loading checks it. (Rename a delivery input when its meaning
/// changes, e.g. another shrinkage: the names are the schema.)
pub fn schema_id(fraud_names: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let all: Vec<&str> = fraud_names
        .iter()
        .map(String::as_str)
        .chain(DELIVERY_FEATURE_NAMES)
        .collect();
    let digest = Sha256::digest(all.join("\n").as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("v{FEATURE_SCHEMA_VERSION}-{hex}")
}
