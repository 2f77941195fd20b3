//! Training data from history: the outputs of the stream's own pipeline
//! (validation, lifecycle join, feature state, route statistics) replayed over
//! the history, joined with labels, so the features a model learns from are
//! exactly those it will be served. The runtime drives the replay
//! (`veriflow_runtime::replay`); [`ExampleBuilder`] turns what it emits into
//! examples.
//!
//! Labels: success = the verification was approved (its outcome); fraud = the
//! ground truth's `is_fraud` (the simulator writes it beside its events; a
//! production lake would carry confirmed pumping cases). The truth's
//! per-provider `p_success` is kept for the routing evaluation (the oracle).

use std::collections::{BTreeMap, HashMap};

use veriflow_common::truth::TruthRecord;
use veriflow_pipelines::feedback::learned_at;
use veriflow_pipelines::time::EventTime;
use veriflow_pipelines::{OutcomeKind, Output};

use crate::vector::{RouteView, fraud_feature_names, fraud_vector};

/// One verification, as a training or evaluation example.
#[derive(Debug, Clone)]
pub struct Example {
    pub verification_id: String,
    pub tenant_id: String,
    pub requested_at: EventTime,
    /// When the stream's feedback learns its outcome
    /// ([`veriflow_pipelines::feedback::learned_at`]).
    pub learned_at: EventTime,
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
    /// Approved on the first attempt, without a resend: what `p_success`
    /// predicts (the provider chosen for an attempt decides that attempt; a
    /// retry's success belongs to the retry's route).
    pub first_attempt_approved: bool,
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

/// Collects examples from a replay's outputs: one per verification with a
/// truth record, in request-time order.
pub struct ExampleBuilder {
    truth: HashMap<String, TruthRecord>,
    names: Vec<String>,
    pending: HashMap<String, Example>,
    done: Vec<Example>,
    ttl_ms: i64,
}

impl ExampleBuilder {
    /// Labels by verification id; `ttl_ms` the replay's verification TTL.
    pub fn new(truth: HashMap<String, TruthRecord>, ttl_ms: i64) -> Self {
        ExampleBuilder {
            truth,
            names: fraud_feature_names(),
            pending: HashMap::new(),
            done: Vec::new(),
            ttl_ms,
        }
    }

    /// One output of the replay, in emission order.
    pub fn observe(&mut self, output: &Output) {
        match output {
            Output::Features(f) => {
                let id = f.request.verification_id.to_string();
                let Some(t) = self.truth.get(&id) else { return };
                let country = f.request.country.to_string();
                let at = f.request.at;
                // What the scorer reads for this request: the partition's
                // statistics as of it (the replay asks the pipeline for them).
                let views = t
                    .p_success
                    .keys()
                    .map(|provider| {
                        let snapshot = f
                            .routes
                            .iter()
                            .find(|(p, _)| p.as_str() == &**provider)
                            .map(|(_, s)| s);
                        (provider.to_string(), RouteView::at(snapshot, at))
                    })
                    .collect();
                self.pending.insert(
                    id.clone(),
                    Example {
                        verification_id: id,
                        tenant_id: f.request.tenant_id.to_string(),
                        requested_at: at,
                        learned_at: at,
                        country,
                        fraud_row: fraud_vector(&f.features, &self.names),
                        routes: views,
                        first_provider: None,
                        first_delivered: None,
                        single_attempt_cost: None,
                        approved: false,
                        first_attempt_approved: false,
                        is_fraud: t.is_fraud,
                        attack: t.attack.as_deref().map(str::to_owned),
                        p_success: t
                            .p_success
                            .iter()
                            .map(|(k, v)| (k.to_string(), *v))
                            .collect(),
                    },
                );
            }
            Output::Outcome(o) => {
                if let Some(mut e) = self.pending.remove(o.verification_id.as_str()) {
                    e.learned_at = learned_at(e.requested_at, o.decided_at, self.ttl_ms);
                    e.first_provider = o.providers.first().map(|p| p.to_string());
                    e.first_delivered = o.first_attempt_delivered;
                    e.single_attempt_cost = o.cost.filter(|_| o.attempts == 1);
                    e.approved = o.outcome == OutcomeKind::Approved;
                    e.first_attempt_approved = e.approved && o.attempts == 1;
                    self.done.push(e);
                }
            }
            _ => {}
        }
    }

    /// The examples, in request-time order.
    pub fn finish(mut self) -> Vec<Example> {
        self.done.sort_by(|a, b| {
            a.requested_at
                .cmp(&b.requested_at)
                .then_with(|| a.verification_id.cmp(&b.verification_id))
        });
        self.done
    }
}
