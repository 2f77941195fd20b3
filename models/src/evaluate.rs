//! Training both models on a time split, and the honest evaluation: fraud
//! average precision and recall at a 0.5 % false-block rate, success Brier
//! score and calibration error, and the routing report — the expected success
//! rate of the router's choices against a uniform baseline and the oracle,
//! computed from the ground truth's per-provider probabilities.

use std::collections::BTreeSet;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use veriflow_pipelines::features::FEATURE_SCHEMA_VERSION;
use veriflow_pipelines::time::format_rfc3339;

use crate::ModelError;
use crate::bundle::{ModelCard, ScoringModels, TrainingInfo};
use crate::dataset::Example;
use crate::logistic::{Logistic, TrainConfig};
use crate::metrics::{FraudMetrics, SuccessMetrics, average_precision, brier, ece, recall_at_fpr};
use crate::router::cost_key;
use crate::vector::{fraud_feature_names, schema_id, success_feature_names};

/// The share of the (time-ordered) examples held out for calibration and metrics.
pub const HOLDOUT_SHARE: f64 = 0.2;
/// The false-block budget the fraud model's block threshold is set for.
pub const MAX_FALSE_BLOCK_RATE: f64 = 0.005;

/// Expected first-attempt success of routing policies on legitimate traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingReport {
    pub verifications: usize,
    /// Picking a candidate uniformly at random.
    pub baseline_success: f64,
    /// The router: the highest predicted P(success).
    pub router_success: f64,
    /// Always the truly best provider.
    pub oracle_success: f64,
    /// (router − baseline) / (oracle − baseline).
    pub uplift_captured: f64,
    /// Expected failed first attempts per 1,000 verifications (contract: a
    /// `sent` of a verification that does not succeed).
    pub failed_per_1000_baseline: f64,
    pub failed_per_1000_router: f64,
    /// Share of verifications the router sent to a route in an outage (its true
    /// P(success) below [`OUTAGE_P_SUCCESS`]) while another candidate was not.
    #[serde(default)]
    pub sent_into_outage: f64,
    /// The same share for uniform routing.
    #[serde(default)]
    pub uniform_into_outage: f64,
    /// The same report over the verifications requested while one of their
    /// candidate routes was in an outage: how well the live route statistics
    /// steer around a failing provider. `None` when history has no outage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub during_outages: Option<Box<RoutingReport>>,
}

/// A route whose true P(success) is below this is in an outage (the
/// simulator's outages deliver 3 % of messages; healthy routes convert
/// above 50 %).
pub const OUTAGE_P_SUCCESS: f64 = 0.15;

/// Sums of expected success over verifications, for one routing report.
#[derive(Default)]
struct RoutingSums {
    n: usize,
    base: f64,
    router: f64,
    oracle: f64,
    into_outage: usize,
    uniform_into_outage: f64,
}

impl RoutingSums {
    fn add(&mut self, truth: &[f64], choice: usize) {
        self.n += 1;
        self.base += truth.iter().sum::<f64>() / truth.len() as f64;
        self.router += truth[choice];
        self.oracle += truth.iter().copied().fold(0.0, f64::max);
        if truth.iter().any(|p| *p >= OUTAGE_P_SUCCESS) {
            let failing = truth.iter().filter(|p| **p < OUTAGE_P_SUCCESS).count();
            self.into_outage += usize::from(truth[choice] < OUTAGE_P_SUCCESS);
            self.uniform_into_outage += failing as f64 / truth.len() as f64;
        }
    }

    fn report(&self, during_outages: Option<Box<RoutingReport>>) -> RoutingReport {
        let per = |x: f64| if self.n == 0 { 0.0 } else { x / self.n as f64 };
        let (base, router, oracle) = (per(self.base), per(self.router), per(self.oracle));
        RoutingReport {
            verifications: self.n,
            baseline_success: base,
            router_success: router,
            oracle_success: oracle,
            uplift_captured: if oracle > base {
                (router - base) / (oracle - base)
            } else {
                0.0
            },
            failed_per_1000_baseline: (1.0 - base) * 1000.0,
            failed_per_1000_router: (1.0 - router) * 1000.0,
            sent_into_outage: per(self.into_outage as f64),
            uniform_into_outage: per(self.uniform_into_outage),
            during_outages,
        }
    }
}

/// Trains both models on the examples before the holdout, calibrates and
/// scores them on the holdout.
pub fn train(
    examples: &[Example],
    source: &str,
    version: &str,
    seed: u64,
    config: &TrainConfig,
) -> Result<ScoringModels, ModelError> {
    if examples.len() < 20 {
        return Err(ModelError::NoData);
    }
    let started = Instant::now();
    let split = ((examples.len() as f64) * (1.0 - HOLDOUT_SHARE)) as usize;
    let (train, holdout) = examples.split_at(split);
    let fraud_names = fraud_feature_names();
    let providers: Vec<String> = examples
        .iter()
        .flat_map(|e| e.routes.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let countries: Vec<String> = train
        .iter()
        .map(|e| e.country.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    // Fraud: every verification.
    let fx: Vec<Vec<f32>> = train.iter().map(|e| e.fraud_row.clone()).collect();
    let fy: Vec<f32> = train
        .iter()
        .map(|e| f32::from(u8::from(e.is_fraud)))
        .collect();
    let mut fraud = Logistic::train(&fx, &fy, config)?;
    let hx: Vec<Vec<f32>> = holdout.iter().map(|e| e.fraud_row.clone()).collect();
    let hy: Vec<f32> = holdout
        .iter()
        .map(|e| f32::from(u8::from(e.is_fraud)))
        .collect();
    fraud.calibrate(&hx, &hy)?;

    // Success: verifications that were sent, on their first attempt's route.
    let rows = |set: &[Example]| -> (Vec<Vec<f32>>, Vec<f32>) {
        set.iter()
            .filter_map(|e| {
                let provider = e.first_provider.as_ref()?;
                Some((
                    e.success_row(provider, &providers, &countries),
                    f32::from(u8::from(e.approved)),
                ))
            })
            .unzip()
    };
    let (sx, sy) = rows(train);
    let mut success = Logistic::train(&sx, &sy, config)?;
    let (shx, shy) = rows(holdout);
    success.calibrate(&shx, &shy)?;

    let mut sums: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for e in train {
        if let (Some(provider), Some(cost)) = (&e.first_provider, e.single_attempt_cost) {
            let entry = sums.entry(cost_key(&e.country, provider)).or_default();
            entry.0 += cost;
            entry.1 += 1.0;
        }
    }
    // Money to a millionth: short decimals survive the card's JSON exactly.
    let route_costs = sums
        .into_iter()
        .map(|(k, (sum, n))| (k, (sum / n * 1e6).round() / 1e6))
        .collect();
    let mut models = ScoringModels {
        card: ModelCard {
            name: "veriflow-scoring".into(),
            version: version.into(),
            pipeline_feature_schema: FEATURE_SCHEMA_VERSION,
            feature_schema: schema_id(&fraud_names),
            success_features: success_feature_names(&fraud_names, &providers, &countries),
            fraud_features: fraud_names,
            providers,
            countries,
            route_costs,
            training: TrainingInfo {
                source: source.into(),
                seed,
                from: format_rfc3339(examples[0].requested_at),
                until: format_rfc3339(examples[examples.len() - 1].requested_at),
                holdout_from: format_rfc3339(holdout.first().map_or(0, |e| e.requested_at)),
                train_rows: train.len(),
                holdout_rows: holdout.len(),
                epochs: config.epochs,
                seconds: 0.0,
            },
            fraud: placeholder_fraud(),
            success: SuccessMetrics {
                holdout_rows: 0,
                brier: 0.0,
                brier_constant: 0.0,
                ece: 0.0,
            },
            routing: RoutingReport::default(),
            review_threshold: 0.5,
            block_threshold: 0.9,
        },
        fraud,
        success,
    };
    let mean_train = f64::from(sy.iter().sum::<f32>()) / sy.len().max(1) as f64;
    let report = evaluate(&models, holdout, mean_train)?;
    models.card.fraud = report.fraud;
    models.card.success = report.success;
    models.card.routing = report.routing;
    models.card.block_threshold = models.card.fraud.threshold_at_0_5pct_fpr.clamp(0.0, 1.0);
    models.card.review_threshold = (models.card.block_threshold * 0.5).min(0.5);
    models.card.training.seconds = started.elapsed().as_secs_f64();
    Ok(models)
}

fn placeholder_fraud() -> FraudMetrics {
    FraudMetrics {
        holdout_rows: 0,
        base_rate: 0.0,
        average_precision: 0.0,
        recall_at_0_5pct_fpr: 0.0,
        threshold_at_0_5pct_fpr: 1.0,
    }
}

impl Default for RoutingReport {
    fn default() -> Self {
        RoutingSums::default().report(None)
    }
}

/// All metrics of `models` on `examples`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub fraud: FraudMetrics,
    pub success: SuccessMetrics,
    pub routing: RoutingReport,
}

/// Scores `examples` (which the models did not train on). `constant` is the
/// trivial success model's prediction (the training mean).
pub fn evaluate(
    models: &ScoringModels,
    examples: &[Example],
    constant: f64,
) -> Result<Report, ModelError> {
    let card = &models.card;
    let rows: Vec<Vec<f32>> = examples.iter().map(|e| e.fraud_row.clone()).collect();
    let labels: Vec<bool> = examples.iter().map(|e| e.is_fraud).collect();
    let scores = models.fraud.predict(&rows)?;
    let (recall, threshold) = recall_at_fpr(&scores, &labels, MAX_FALSE_BLOCK_RATE);
    let fraud = FraudMetrics {
        holdout_rows: examples.len(),
        base_rate: labels.iter().filter(|l| **l).count() as f64 / examples.len().max(1) as f64,
        average_precision: average_precision(&scores, &labels),
        recall_at_0_5pct_fpr: recall,
        threshold_at_0_5pct_fpr: threshold.min(1.0),
    };

    let sent: Vec<&Example> = examples
        .iter()
        .filter(|e| e.first_provider.is_some())
        .collect();
    let srows: Vec<Vec<f32>> = sent
        .iter()
        .map(|e| {
            let provider = e.first_provider.as_deref().unwrap_or_default();
            e.success_row(provider, &card.providers, &card.countries)
        })
        .collect();
    let sy: Vec<bool> = sent.iter().map(|e| e.approved).collect();
    let sp = models.success.predict(&srows)?;
    let constant_p = vec![constant as f32; sy.len()];
    let success = SuccessMetrics {
        holdout_rows: sy.len(),
        brier: brier(&sp, &sy),
        brier_constant: brier(&constant_p, &sy),
        ece: ece(&sp, &sy, 10),
    };

    // Routing on legitimate verifications with a truth for each candidate.
    let (mut all, mut outages) = (RoutingSums::default(), RoutingSums::default());
    for e in examples
        .iter()
        .filter(|e| !e.is_fraud && !e.p_success.is_empty())
    {
        let candidates: Vec<String> = e.p_success.keys().cloned().collect();
        let rows: Vec<Vec<f32>> = candidates
            .iter()
            .map(|p| e.success_row(p, &card.providers, &card.countries))
            .collect();
        let predicted = models.success.predict(&rows)?;
        let choice = predicted
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .map_or(0, |(i, _)| i);
        let truth: Vec<f64> = candidates.iter().map(|p| e.p_success[p]).collect();
        all.add(&truth, choice);
        if truth.iter().any(|p| *p < OUTAGE_P_SUCCESS) {
            outages.add(&truth, choice);
        }
    }
    let routing = all.report((outages.n > 0).then(|| Box::new(outages.report(None))));
    Ok(Report {
        fraud,
        success,
        routing,
    })
}
