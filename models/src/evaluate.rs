//! Training both models on a time split, and the honest evaluation: fraud
//! average precision and recall at a 0.5 % false-block rate, success Brier
//! score and calibration error, and the routing report — the expected success
//! rate of the router's choices against a uniform baseline and the oracle,
//! computed from the ground truth's per-provider probabilities.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::Serialize;
use veriflow_pipelines::PipelineSettings;
use veriflow_pipelines::features::FEATURE_SCHEMA_VERSION;
use veriflow_pipelines::feedback::{Decided, Feedback, FeedbackState};
use veriflow_pipelines::time::format_rfc3339;

use crate::ModelError;
use crate::bundle::{ModelCard, ScoringModels, TrainingInfo};
use crate::dataset::Example;
use crate::logistic::{Direction, Logistic, Stack, TrainConfig};
use crate::metrics::{
    AttackMetrics, FraudMetrics, OutageReaction, RoutingReport, SuccessMetrics, average_precision,
    brier, ece, ece_against, recall_at_fpr, threshold_above,
};
use crate::router::{best, choose, route_key};
use crate::vector::{
    DELIVERY_DIRECTIONS, DELIVERY_FEATURE_NAMES, delivery_vector, fraud_direction,
    fraud_feature_names, schema_id,
};

/// The share of the (time-ordered) examples held out for calibration and metrics.
pub const HOLDOUT_SHARE: f64 = 0.2;
/// The false-block budget the fraud model is judged at.
pub const MAX_FALSE_BLOCK_RATE: f64 = 0.005;
/// The share of legitimate holdout traffic the block threshold leaves above
/// it: half the budget, a margin for traffic that drifts from the holdout.
pub const BLOCK_SHARE: f64 = MAX_FALSE_BLOCK_RATE / 2.0;
/// The same for the review threshold (`review` is informative).
pub const REVIEW_SHARE: f64 = 0.01;

/// Outages as the requests see them, per (country, provider).
#[derive(Default)]
struct OutageTracker {
    open: BTreeMap<(String, String), Episode>,
    /// Closed episodes' reaction times (`None`: never chosen).
    closed: Vec<Option<i64>>,
}

struct Episode {
    start: i64,
    /// The router's last choice of the failing route.
    last_chosen: Option<i64>,
    /// First attempts the history sent through it in the first two minutes.
    attempts_early: usize,
}

/// The window in which a failing route must carry traffic for its outage to be
/// visible to the statistics at all.
const REACTION_WINDOW_MS: i64 = 120_000;
/// The traffic that makes it visible.
const VISIBLE_ATTEMPTS: usize = 5;

impl OutageTracker {
    fn observe(&mut self, e: &Example, provider: &str, failing: bool, chosen: bool) {
        let at = e.requested_at;
        let sent_through = e.first_provider.as_deref() == Some(provider);
        let key = (e.country.clone(), provider.to_string());
        match (failing, self.open.get_mut(&key)) {
            (true, Some(ep)) => {
                if chosen {
                    ep.last_chosen = Some(at);
                }
                if sent_through && at < ep.start + REACTION_WINDOW_MS {
                    ep.attempts_early += 1;
                }
            }
            (true, None) => {
                let ep = Episode {
                    start: at,
                    last_chosen: chosen.then_some(at),
                    attempts_early: usize::from(sent_through),
                };
                self.open.insert(key, ep);
            }
            (false, Some(_)) => {
                if let Some(ep) = self.open.remove(&key) {
                    self.close(ep);
                }
            }
            (false, None) => {}
        }
    }

    /// Episodes whose route carried too little traffic for any statistics to
    /// see the failure (the history's own routing hardly used it) are left out:
    /// they say nothing about how fast the router reacts.
    fn close(&mut self, ep: Episode) {
        if ep.attempts_early >= VISIBLE_ATTEMPTS {
            self.closed.push(ep.last_chosen.map(|l| l - ep.start));
        }
    }

    fn report(mut self) -> Option<OutageReaction> {
        for ep in std::mem::take(&mut self.open).into_values() {
            self.close(ep);
        }
        if self.closed.is_empty() {
            return None;
        }
        let mut chosen: Vec<i64> = self.closed.iter().flatten().copied().collect();
        chosen.sort_unstable();
        let seconds = |ms: Option<&i64>| ms.map_or(0.0, |ms| *ms as f64 / 1000.0);
        Some(OutageReaction {
            outages: self.closed.len(),
            never_chosen: self.closed.len() - chosen.len(),
            median_s: seconds(chosen.get(chosen.len() / 2)),
            max_s: seconds(chosen.last()),
        })
    }
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
            outage_reaction: None,
            chosen: None,
        }
    }
}

/// Where training examples came from: the history's name, and the pipeline
/// settings it was replayed with (recorded in the card, so that serving under
/// other settings can be told apart).
#[derive(Debug, Clone)]
pub struct History {
    pub source: String,
    pub pipeline: PipelineSettings,
}

/// Trains both models on the examples before the holdout, calibrates and
/// scores them on the holdout.
pub fn train(
    examples: &[Example],
    history: &History,
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
    let directions: Vec<Direction> = fraud_names.iter().map(|n| fraud_direction(n)).collect();
    let mut fraud = Logistic::train_monotone(&fx, &fy, config, &directions)?;
    let hx: Vec<Vec<f32>> = holdout.iter().map(|e| e.fraud_row.clone()).collect();
    let hy: Vec<f32> = holdout
        .iter()
        .map(|e| f32::from(u8::from(e.is_fraud)))
        .collect();
    fraud.calibrate(&hx, &hy)?;

    // Success, first half: did the first attempt's provider deliver (by its
    // receipt)?
    let delivery_rows = |set: &[Example]| -> (Vec<Vec<f32>>, Vec<f32>) {
        set.iter()
            .filter_map(|e| {
                let provider = e.first_provider.as_ref()?;
                let delivered = e.first_delivered?;
                Some((
                    delivery_vector(&e.route(provider)),
                    f32::from(u8::from(delivered)),
                ))
            })
            .unzip()
    };
    let (dx, dy) = delivery_rows(train);
    // The three delivery rates can only raise the odds of delivering.
    let delivery = Logistic::train_monotone(&dx, &dy, config, &DELIVERY_DIRECTIONS)?;
    // Second half: once delivered, is the code entered (without a resend)?
    // The request decides.
    let (ax, ay): (Vec<Vec<f32>>, Vec<f32>) = train
        .iter()
        .filter(|e| e.first_delivered == Some(true))
        .map(|e| {
            (
                e.fraud_row.clone(),
                f32::from(u8::from(e.first_attempt_approved)),
            )
        })
        .unzip();
    let approval = Logistic::train(&ax, &ay, config)?;

    let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for e in train {
        if let (Some(provider), Some(cost)) = (&e.first_provider, e.single_attempt_cost) {
            let entry = sums.entry(route_key(&e.country, provider)).or_default();
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
            fraud_features: fraud_names,
            delivery_features: DELIVERY_FEATURE_NAMES.map(String::from).to_vec(),
            providers,
            countries,
            route_costs,
            training: TrainingInfo {
                source: history.source.clone(),
                pipeline: Some(history.pipeline.clone()),
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
                ece_uncalibrated: 0.0,
                ece_truth: None,
                mean_abs_error_truth: None,
            },
            routing: RoutingReport::default(),
            review_threshold: 0.5,
            block_threshold: 0.9,
        },
        fraud,
        delivery,
        approval,
        stack: Stack::default(),
    };
    // The halves joined on the holdout.
    let (mut zd, mut za, mut zy) = (Vec::new(), Vec::new(), Vec::new());
    for e in holdout {
        let Some(provider) = &e.first_provider else {
            continue;
        };
        zd.extend(
            models
                .delivery
                .calibrated_logits(&[delivery_vector(&e.route(provider))])?,
        );
        za.extend(
            models
                .approval
                .calibrated_logits(std::slice::from_ref(&e.fraud_row))?,
        );
        zy.push(f32::from(u8::from(e.first_attempt_approved)));
    }
    models.stack = Stack::fit(&zd, &za, &zy);
    let sent: Vec<&Example> = train
        .iter()
        .filter(|e| e.first_provider.is_some())
        .collect();
    let mean_train =
        sent.iter().filter(|e| e.first_attempt_approved).count() as f64 / sent.len().max(1) as f64;
    // Operating thresholds from the legitimate traffic alone: block what
    // scores above all but BLOCK_SHARE of it, review above all but
    // REVIEW_SHARE. Legitimate traffic is what the holdout knows well; the
    // pumping in it is one history's attacks, and a threshold fitted to their
    // scores (the highest one that still catches them all) lets through the
    // next attack that scores a little lower.
    let legit_scores: Vec<f32> = models
        .fraud
        .predict(&hx)?
        .into_iter()
        .zip(holdout)
        .filter(|(_, e)| !e.is_fraud)
        .map(|(s, _)| s)
        .collect();
    let block = threshold_above(&legit_scores, BLOCK_SHARE);
    models.card.block_threshold = block;
    models.card.review_threshold = threshold_above(&legit_scores, REVIEW_SHARE).min(block);
    let report = evaluate(&models, holdout, mean_train)?;
    models.card.fraud = report.fraud;
    models.card.success = report.success;
    models.card.routing = report.routing;
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
        block_threshold: 1.0,
        recall_at_block_threshold: 0.0,
        false_block_rate: 0.0,
        review_rate: 0.0,
        by_attack: BTreeMap::new(),
    }
}

/// All metrics of `models` on `examples`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub fraud: FraudMetrics,
    pub success: SuccessMetrics,
    pub routing: RoutingReport,
}

/// The feedback each example's request reads in the stream: the outcomes
/// learned before it (in event time), learned as the stream learns them
/// ([`FeedbackState`], the same type and updates). One state for the whole
/// history, where the stream keeps one per partition (tenant-keyed input:
/// tenants' thresholds are the same; a country's calibration pools more).
/// Beside it, each example's raw `p_success` for its first attempt's
/// provider (what the feedback learned from), when one was sent.
fn replay_feedback(
    models: &ScoringModels,
    examples: &[Example],
    scores: &[f32],
) -> Result<Vec<(Feedback, Option<f32>)>, ModelError> {
    let mut state = FeedbackState::default();
    let mut served = Vec::with_capacity(examples.len());
    for (e, score) in examples.iter().zip(scores) {
        state.advance(e.requested_at);
        let feedback = state.for_request(&e.tenant_id, &e.country);
        let first_raw = match &e.first_provider {
            Some(provider) => models
                .success(&e.fraud_row, &[e.route(provider)])?
                .first()
                .copied(),
            None => None,
        };
        // Queued until its learning time, which is past this request's.
        state.on_decided(
            Decided {
                tenant: &e.tenant_id,
                country: &e.country,
                first_attempt: first_raw.map(|p| (p, e.first_attempt_approved)),
                fraud_score: *score,
                approved: e.approved,
            },
            e.learned_at,
        );
        served.push((feedback, first_raw));
    }
    Ok(served)
}

/// Scores `examples` (which the models did not train on) as the stream
/// serves them: probabilities recalibrated and thresholds learned online
/// from the outcomes decided before each request (the card's thresholds the
/// floor). `constant` is the trivial success model's prediction (the
/// training mean).
pub fn evaluate(
    models: &ScoringModels,
    examples: &[Example],
    constant: f64,
) -> Result<Report, ModelError> {
    let rows: Vec<Vec<f32>> = examples.iter().map(|e| e.fraud_row.clone()).collect();
    let labels: Vec<bool> = examples.iter().map(|e| e.is_fraud).collect();
    let scores = models.fraud.predict(&rows)?;
    let (recall, threshold) = recall_at_fpr(&scores, &labels, MAX_FALSE_BLOCK_RATE);
    let threshold = threshold.min(1.0);
    let block = models.card.block_threshold;
    let feedback = replay_feedback(models, examples, &scores)?;
    // Each request's (review, block) as served.
    let served: Vec<(f64, f64)> = feedback
        .iter()
        .map(|(f, _)| f.thresholds(f64::from(models.card.review_threshold), f64::from(block)))
        .collect();
    let share_blocked = |of: &dyn Fn(&Example) -> bool| {
        let (mut n, mut blocked) = (0usize, 0usize);
        for ((e, s), (_, b)) in examples.iter().zip(&scores).zip(&served) {
            if of(e) {
                n += 1;
                blocked += usize::from(f64::from(*s) >= *b);
            }
        }
        (n, blocked as f64 / n.max(1) as f64)
    };
    let legit_reviewed = {
        let (mut n, mut reviewed) = (0usize, 0usize);
        for ((e, s), (r, b)) in examples.iter().zip(&scores).zip(&served) {
            if !e.is_fraud {
                n += 1;
                let s = f64::from(*s);
                reviewed += usize::from(s >= *r && s < *b);
            }
        }
        reviewed as f64 / n.max(1) as f64
    };
    let shapes: BTreeSet<&str> = examples
        .iter()
        .filter_map(|e| e.attack.as_deref())
        .collect();
    let by_attack = shapes
        .into_iter()
        .map(|shape| {
            let (s, l): (Vec<f32>, Vec<bool>) = examples
                .iter()
                .zip(&scores)
                .filter(|(e, _)| !e.is_fraud || e.attack.as_deref() == Some(shape))
                .map(|(e, s)| (*s, e.is_fraud))
                .unzip();
            let (verifications, recall) = share_blocked(&|e| e.attack.as_deref() == Some(shape));
            let metrics = AttackMetrics {
                verifications,
                average_precision: average_precision(&s, &l),
                recall_at_block_threshold: recall,
            };
            (shape.to_string(), metrics)
        })
        .collect();
    let fraud = FraudMetrics {
        holdout_rows: examples.len(),
        base_rate: labels.iter().filter(|l| **l).count() as f64 / examples.len().max(1) as f64,
        average_precision: average_precision(&scores, &labels),
        recall_at_0_5pct_fpr: recall,
        threshold_at_0_5pct_fpr: threshold,
        block_threshold: block,
        recall_at_block_threshold: share_blocked(&|e| e.is_fraud).1,
        false_block_rate: share_blocked(&|e| !e.is_fraud).1,
        review_rate: legit_reviewed,
        by_attack,
    };

    let (mut sp, mut sy) = (Vec::new(), Vec::new());
    // The same predictions beside the truth's probability for that provider,
    // where the history has one: the calibration that does not depend on
    // which way each coin fell.
    let (mut tp, mut tt) = (Vec::new(), Vec::new());
    let mut raw = Vec::new();
    for (e, (f, first_raw)) in examples.iter().zip(&feedback) {
        if let (Some(provider), Some(p_raw)) = (&e.first_provider, *first_raw) {
            let p = f.calibrated(p_raw);
            if let Some(truth) = e.p_success.get(provider) {
                tp.push(p);
                tt.push(*truth);
            }
            raw.push(p_raw);
            sp.push(p);
            sy.push(e.first_attempt_approved);
        }
    }
    let constant_p = vec![constant as f32; sy.len()];
    let success = SuccessMetrics {
        holdout_rows: sy.len(),
        brier: brier(&sp, &sy),
        brier_constant: brier(&constant_p, &sy),
        ece: ece(&sp, &sy, 10),
        ece_uncalibrated: ece(&raw, &sy, 10),
        ece_truth: (!tp.is_empty()).then(|| ece_against(&tp, &tt, 10)),
        mean_abs_error_truth: (!tp.is_empty()).then(|| {
            tp.iter()
                .zip(&tt)
                .map(|(p, t)| (f64::from(*p) - t).abs())
                .sum::<f64>()
                / tp.len() as f64
        }),
    };

    // Routing on legitimate verifications with a truth for each candidate.
    let (mut all, mut outages) = (RoutingSums::default(), RoutingSums::default());
    let (mut chosen, mut chosen_outages) = (RoutingSums::default(), RoutingSums::default());
    let mut reaction = OutageTracker::default();
    for e in examples
        .iter()
        .filter(|e| !e.is_fraud && !e.p_success.is_empty())
    {
        let candidates: Vec<String> = e.p_success.keys().cloned().collect();
        let views: Vec<_> = candidates.iter().map(|p| e.route(p)).collect();
        let predicted = models.success(&e.fraud_row, &views)?;
        // Ranked and chosen as the stream does: by p_success, the best route
        // the first with evidence, exploration seeded per verification.
        let mut ranked: Vec<crate::RankedRoute> = candidates
            .iter()
            .zip(&predicted)
            .map(|(provider, p)| crate::RankedRoute {
                provider: provider.clone(),
                p_success: *p,
            })
            .collect();
        crate::router::rank(&mut ranked);
        let position = |p: &str| candidates.iter().position(|c| c == p);
        let choice = best(&ranked, |p| e.route(p))
            .and_then(|i| position(&ranked[i].provider))
            .unwrap_or(0);
        let truth: Vec<f64> = candidates.iter().map(|p| e.p_success[p]).collect();
        all.add(&truth, choice);
        let seed = veriflow_common::hash::mixed64(e.verification_id.as_bytes());
        let sent = choose(&ranked, |p| e.route(p), seed)
            .and_then(|p| position(&p))
            .unwrap_or(choice);
        chosen.add(&truth, sent);
        if truth.iter().any(|p| *p < OUTAGE_P_SUCCESS) {
            outages.add(&truth, choice);
            chosen_outages.add(&truth, sent);
        }
        // Choosing a failing route counts only when a healthy one was there.
        let healthy = truth.iter().any(|p| *p >= OUTAGE_P_SUCCESS);
        for (i, (provider, p)) in candidates.iter().zip(&truth).enumerate() {
            reaction.observe(e, provider, *p < OUTAGE_P_SUCCESS, healthy && i == choice);
        }
    }
    let mut routing = all.report((outages.n > 0).then(|| Box::new(outages.report(None))));
    routing.outage_reaction = reaction.report();
    let chosen_outages = (chosen_outages.n > 0).then(|| Box::new(chosen_outages.report(None)));
    routing.chosen = Some(Box::new(chosen.report(chosen_outages)));
    Ok(Report {
        fraud,
        success,
        routing,
    })
}
