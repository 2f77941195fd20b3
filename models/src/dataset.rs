//! Training data from history: events replayed through the stream's own
//! pipeline (validation, lifecycle join, feature state, route statistics), so
//! the features a model learns from are exactly those it will be served.
//!
//! Labels: success = the verification was approved (its outcome); fraud = the
//! ground truth's `is_fraud` (the simulator writes it beside its events; a
//! production lake would carry confirmed pumping cases). The truth's
//! per-provider `p_success` is kept for the routing evaluation (the oracle).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use veriflow_pipelines::partition::{Output, PartitionPipeline, PipelineConfig};
use veriflow_pipelines::routes::RouteSnapshot;
use veriflow_pipelines::time::EventTime;
use veriflow_pipelines::{OutcomeKind, ValidationLimits};

use crate::vector::{RouteView, fraud_feature_names, fraud_vector};

/// One line of a ground-truth file (`veriflow simulate` writes them).
#[derive(Debug, Clone, Deserialize)]
pub struct TruthLine {
    pub verification_id: String,
    pub is_fraud: bool,
    /// The attack's shape, for pumping (optional; metrics per shape).
    #[serde(default)]
    pub attack: Option<String>,
    #[serde(default)]
    pub p_success: BTreeMap<String, f64>,
}

/// One verification, as a training or evaluation example.
#[derive(Debug, Clone)]
pub struct Example {
    pub verification_id: String,
    pub requested_at: EventTime,
    pub country: String,
    pub fraud_row: Vec<f32>,
    /// Live statistics of each candidate provider's route at request time.
    pub routes: BTreeMap<String, RouteView>,
    /// The provider of the first attempt, if one was sent.
    pub first_provider: Option<String>,
    /// Its receipt: delivered, undelivered, or none.
    pub first_delivered: Option<bool>,
    /// What one attempt cost, when the verification took exactly one (so the
    /// cost is the first provider's).
    pub single_attempt_cost: Option<f64>,
    pub approved: bool,
    pub is_fraud: bool,
    pub attack: Option<String>,
    /// True P(approved) per provider at request time (simulator truth).
    pub p_success: BTreeMap<String, f64>,
}

impl Example {
    /// The live statistics of `provider`'s route at request time (a route
    /// never seen reads as one without statistics).
    pub fn route(&self, provider: &str) -> RouteView {
        self.routes.get(provider).copied().unwrap_or_default()
    }
}

/// Replays `events` (JSON payloads in arrival order) through one pipeline
/// partition and returns one example per verification with a truth line.
pub fn replay<'a>(
    events: impl IntoIterator<Item = &'a [u8]>,
    truth: &HashMap<String, TruthLine>,
) -> Vec<Example> {
    let cfg = PipelineConfig {
        limits: ValidationLimits {
            max_future_skew_ms: None,
            ..ValidationLimits::default()
        },
        ..PipelineConfig::default()
    };
    let names = fraud_feature_names();
    let mut p = PartitionPipeline::new(0);
    let mut out = Vec::new();
    let mut routes: HashMap<(String, String), RouteSnapshot> = HashMap::new();
    let mut pending: HashMap<String, Example> = HashMap::new();
    let mut done: Vec<Example> = Vec::new();
    let mut absorb = |out: &mut Vec<Output>,
                      p: &mut PartitionPipeline,
                      routes: &mut HashMap<(String, String), RouteSnapshot>| {
        for o in out.drain(..) {
            match o {
                Output::Features(f) => {
                    let id = f.request.verification_id.to_string();
                    let Some(t) = truth.get(&id) else { continue };
                    let country = f.request.country.to_string();
                    let at = f.request.at;
                    let views = t
                        .p_success
                        .keys()
                        .map(|provider| {
                            let snapshot = routes.get(&(country.clone(), provider.clone()));
                            (provider.clone(), RouteView::at(snapshot, at))
                        })
                        .collect();
                    pending.insert(
                        id.clone(),
                        Example {
                            verification_id: id,
                            requested_at: at,
                            country,
                            fraud_row: fraud_vector(&f.features, &names),
                            routes: views,
                            first_provider: None,
                            first_delivered: None,
                            single_attempt_cost: None,
                            approved: false,
                            is_fraud: t.is_fraud,
                            attack: t.attack.clone(),
                            p_success: t.p_success.clone(),
                        },
                    );
                }
                Output::Outcome(o) => {
                    if let Some(mut e) = pending.remove(o.verification_id.as_str()) {
                        e.first_provider = o.providers.first().map(|p| p.to_string());
                        e.first_delivered = o.first_attempt_delivered;
                        e.single_attempt_cost = o.cost.filter(|_| o.attempts == 1);
                        e.approved = o.outcome == OutcomeKind::Approved;
                        done.push(e);
                    }
                }
                _ => {}
            }
        }
        // Route statistics as they stand after these outputs, for later requests.
        for ((country, provider), snapshot) in p.take_route_updates() {
            routes.insert((country.to_string(), provider.to_string()), snapshot);
        }
    };
    for payload in events {
        p.replay_next(&cfg, payload, 1024, &mut out);
        absorb(&mut out, &mut p, &mut routes);
    }
    p.drain(&cfg, &mut out);
    absorb(&mut out, &mut p, &mut routes);
    done.sort_by(|a, b| {
        a.requested_at
            .cmp(&b.requested_at)
            .then_with(|| a.verification_id.cmp(&b.verification_id))
    });
    done
}
