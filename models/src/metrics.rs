//! Evaluation metrics, computed the textbook way (and tested on small cases).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// P(success) below [`crate::evaluate::OUTAGE_P_SUCCESS`]) while another candidate was not.
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
    /// How fast the router leaves a route that fails, in event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage_reaction: Option<OutageReaction>,
    /// The same report for the route actually chosen, exploration included
    /// (the fields above rank by the top prediction alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<Box<RoutingReport>>,
}

/// For each outage (a route's true P(success) under [`crate::evaluate::OUTAGE_P_SUCCESS`] for a
/// run of requests), how long after it began the router last chose that route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutageReaction {
    pub outages: usize,
    /// Outages the router never chose the failing route in.
    pub never_chosen: usize,
    /// Over the others: the median and the longest time from the outage's
    /// start to the router's last choice of it, in seconds.
    pub median_s: f64,
    pub max_s: f64,
}

impl Default for RoutingReport {
    /// The report of no verifications.
    fn default() -> Self {
        RoutingReport {
            verifications: 0,
            baseline_success: 0.0,
            router_success: 0.0,
            oracle_success: 0.0,
            uplift_captured: 0.0,
            failed_per_1000_baseline: 1000.0,
            failed_per_1000_router: 1000.0,
            sent_into_outage: 0.0,
            uniform_into_outage: 0.0,
            during_outages: None,
            outage_reaction: None,
            chosen: None,
        }
    }
}

/// Average precision: the area under the precision-recall curve, as the mean of
/// the precision at each positive in score order (ties broken pessimistically).
pub fn average_precision(scores: &[f32], labels: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        scores[b]
            .total_cmp(&scores[a])
            .then(labels[a].cmp(&labels[b]))
    });
    let positives = labels.iter().filter(|l| **l).count();
    if positives == 0 {
        return 0.0;
    }
    let (mut hits, mut sum) = (0usize, 0f64);
    for (rank, &i) in order.iter().enumerate() {
        if labels[i] {
            hits += 1;
            sum += hits as f64 / (rank + 1) as f64;
        }
    }
    sum / positives as f64
}

/// The best recall whose false-positive rate stays at or under `max_fpr`, and
/// the highest threshold that reaches it.
pub fn recall_at_fpr(scores: &[f32], labels: &[bool], max_fpr: f64) -> (f64, f32) {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let positives = labels.iter().filter(|l| **l).count().max(1) as f64;
    let negatives = labels.iter().filter(|l| !**l).count().max(1) as f64;
    let (mut tp, mut fp) = (0f64, 0f64);
    let (mut best_recall, mut threshold) = (0f64, f32::INFINITY);
    let mut i = 0;
    while i < order.len() {
        // Take every row tied at this score together.
        let s = scores[order[i]];
        // `total_cmp` equality, so a NaN score cannot stall the scan.
        while i < order.len() && scores[order[i]].total_cmp(&s).is_eq() {
            if labels[order[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        if fp / negatives > max_fpr {
            break;
        }
        // The highest threshold reaching this recall: going lower only adds
        // false positives once every reachable positive is in.
        if tp / positives > best_recall {
            best_recall = tp / positives;
            threshold = s;
        }
    }
    (best_recall, threshold)
}

/// The lowest threshold that leaves at most `share` of `scores` at or above
/// it (1 when `scores` is empty): for a false-positive budget, the scores are
/// the negatives'.
pub fn threshold_above(scores: &[f32], share: f64) -> f32 {
    let mut sorted: Vec<f32> = scores.iter().copied().filter(|s| !s.is_nan()).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let allowed = (share.max(0.0) * sorted.len() as f64).floor() as usize;
    match sorted.get(allowed) {
        // Just above the first score that must stay under it.
        Some(s) => s.next_up().min(1.0),
        None => sorted.last().copied().unwrap_or(1.0).min(1.0),
    }
}

/// Mean squared error of probabilities.
pub fn brier(p: &[f32], y: &[bool]) -> f64 {
    let n = p.len().max(1) as f64;
    p.iter()
        .zip(y)
        .map(|(p, y)| (f64::from(*p) - f64::from(u8::from(*y))).powi(2))
        .sum::<f64>()
        / n
}

/// Expected calibration error over `bins` equal-width bins.
pub fn ece(p: &[f32], y: &[bool], bins: usize) -> f64 {
    let mut count = vec![0f64; bins];
    let mut conf = vec![0f64; bins];
    let mut acc = vec![0f64; bins];
    for (p, y) in p.iter().zip(y) {
        let b = ((f64::from(*p) * bins as f64) as usize).min(bins - 1);
        count[b] += 1.0;
        conf[b] += f64::from(*p);
        acc[b] += f64::from(u8::from(*y));
    }
    let n = p.len().max(1) as f64;
    (0..bins)
        .filter(|b| count[*b] > 0.0)
        .map(|b| (count[b] / n) * ((acc[b] - conf[b]) / count[b]).abs())
        .sum()
}

/// Expected calibration error against known probabilities (a simulator's
/// truth) instead of outcomes: per bin of the prediction, the gap between the
/// mean prediction and the mean true probability, weighted by the bin's share.
pub fn ece_against(p: &[f32], truth: &[f64], bins: usize) -> f64 {
    let mut count = vec![0f64; bins];
    let mut conf = vec![0f64; bins];
    let mut real = vec![0f64; bins];
    for (p, t) in p.iter().zip(truth) {
        let b = ((f64::from(*p) * bins as f64) as usize).min(bins - 1);
        count[b] += 1.0;
        conf[b] += f64::from(*p);
        real[b] += t;
    }
    let n = p.len().max(1) as f64;
    (0..bins)
        .filter(|b| count[*b] > 0.0)
        .map(|b| (count[b] / n) * ((real[b] - conf[b]) / count[b]).abs())
        .sum()
}

/// What a model card records about a fraud model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FraudMetrics {
    pub holdout_rows: usize,
    pub base_rate: f64,
    pub average_precision: f64,
    /// Recall when at most 0.5 % of legitimate verifications are flagged.
    pub recall_at_0_5pct_fpr: f64,
    pub threshold_at_0_5pct_fpr: f32,
    /// What the model's block threshold (chosen on its training holdout) does
    /// here: the threshold an operator runs with, not one fitted to this data.
    #[serde(default)]
    pub block_threshold: f32,
    #[serde(default)]
    pub recall_at_block_threshold: f64,
    #[serde(default)]
    pub false_block_rate: f64,
    /// The share of legitimate verifications sent to review (at or above the
    /// review threshold, below the block one).
    #[serde(default)]
    pub review_rate: f64,
    /// Per attack shape (the truth's `attack`), against all legitimate traffic.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_attack: BTreeMap<String, AttackMetrics>,
}

/// How one attack shape fares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackMetrics {
    pub verifications: usize,
    pub average_precision: f64,
    pub recall_at_block_threshold: f64,
}

/// What a model card records about a success model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuccessMetrics {
    pub holdout_rows: usize,
    pub brier: f64,
    /// The Brier score of always predicting the training mean (the trivial model).
    pub brier_constant: f64,
    /// Against outcomes (approved or not), as served (recalibrated online
    /// by the stream's own outcomes).
    pub ece: f64,
    /// The same for the model's own probabilities, before recalibration.
    #[serde(default)]
    pub ece_uncalibrated: f64,
    /// Against the history's true probabilities, where it has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ece_truth: Option<f64>,
    /// Mean |predicted − true probability|, where the history has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_abs_error_truth: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_on_small_cases() {
        let s = [0.9, 0.8, 0.7, 0.1];
        let y = [true, false, true, false];
        // Precision at the positives: 1/1, 2/3.
        assert!((average_precision(&s, &y) - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-9);
        assert_eq!(recall_at_fpr(&s, &y, 0.0), (0.5, 0.9));
        assert_eq!(recall_at_fpr(&s, &y, 0.5), (1.0, 0.7));
        // Below the last positive the threshold does not move down.
        assert_eq!(recall_at_fpr(&s, &y, 1.0), (1.0, 0.7));
        assert!((brier(&[1.0, 0.0], &[true, false])).abs() < 1e-12);
        assert!((brier(&[0.5, 0.5], &[true, false]) - 0.25).abs() < 1e-12);
        assert!(ece(&[0.75; 4], &[true, true, true, false], 10) < 1e-9);
        assert!((ece(&[0.9; 2], &[false, false], 10) - 0.9).abs() < 1e-6);
        let negatives: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let t = threshold_above(&negatives, 0.005);
        let above = negatives.iter().filter(|s| **s >= t).count();
        assert_eq!(above, 5, "threshold {t}");
        assert!(t > 0.994 && t <= 0.995001, "{t}");
        assert_eq!(threshold_above(&[], 0.01), 1.0);
    }
}
