//! What the stream learns from the outcomes it decides itself, for scoring to
//! read as of each request.
//!
//! Labels here are delayed by nature: a verification's outcome is known only
//! when the watermark decides it (an approval, or the TTL). Each decided,
//! scored verification teaches two things:
//!
//! - **Calibration** (per country, and partition-wide where a country has too
//!   few outcomes): how the success model's raw `p_success` for the
//!   first attempt's provider turned out. An online Platt map
//!   `σ(a·logit(p) + b)`, fitted on decayed reliability bins with a prior
//!   towards the identity, so the served probabilities follow the traffic's
//!   true rates when they differ from the training world's. The map is
//!   monotone (`a > 0`): it never reorders routes, only corrects their
//!   probabilities.
//! - **Legitimate scores** (per tenant): the fraud scores of its approved
//!   verifications. Pumping traffic does not enter codes, so approved
//!   verifications are the tenant's legitimate population as it is now; the
//!   block and review thresholds are set above all but a small share of them
//!   (with the card's thresholds as the floor), so a busy population the
//!   model was not trained on is not blocked wholesale.
//!
//! A decided outcome is learned at [`learned_at`]: its decision, but never
//! before its request's TTL has passed. Approvals are decided within a minute
//! and expiries only after the TTL; learning each when decided would count a
//! cohort's successes ten minutes before its failures (every cold start and
//! every change in quality would read as a rise in success).
//!
//! Everything is a function of the partition's events: updates happen as the
//! watermark passes their learning time, decay counts outcomes (not wall time), and
//! fits are refreshed every [`REFIT_EVERY`] updates and stored in the state,
//! so a replay or a restart from a checkpoint serves the same numbers.
//! Caveat of the legitimate-score thresholds: they learn from verifications
//! that were sent. When upstream enforces `block`, scores above the block
//! threshold are never approved, so the block threshold can rise only from
//! evidence below it (the review band); the card's threshold stays the floor.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Text;
use crate::time::EventTime;

/// Reliability bins over the raw probability.
const CALIBRATION_BINS: usize = 20;
/// Outcomes a country's calibration remembers (exponential decay by count).
const CALIBRATION_MEMORY: f64 = 10_000.0;
/// Decayed outcomes before a country's own map is used (else the partition's).
pub const MIN_CALIBRATION_OUTCOMES: f64 = 200.0;
/// The prior's weight towards the identity map, in outcomes.
const CALIBRATION_PRIOR: f64 = 20.0;
/// Score bins of a tenant's legitimate scores (width 1/400).
const SCORE_BINS: usize = 400;
/// Approved verifications a tenant's score distribution remembers.
const SCORE_MEMORY: f64 = 20_000.0;
/// Decayed approved verifications before a tenant's thresholds are learned.
pub const MIN_LEGIT_SCORES: f64 = 150.0;
/// The share of a tenant's legitimate (approved) traffic left above the block
/// threshold: under the 0.5 % goal, with a margin for the unapproved
/// legitimate users the approved ones stand for.
pub const BLOCK_LEGIT_SHARE: f64 = 0.002;
/// The same for review (goal 2 %).
pub const REVIEW_LEGIT_SHARE: f64 = 0.01;
/// Fits and thresholds are refreshed every this many updates of their key.
pub const REFIT_EVERY: u64 = 16;
/// The partition-wide calibration's key.
const ALL_COUNTRIES: &str = "*";
/// The partition-wide legitimate scores' key (tenant ids are never empty).
const ALL_TENANTS: &str = "";

/// A monotone recalibration of a probability: `σ(a·logit(p) + b)`.
/// (`f32`: every feature record carries one.)
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Platt {
    pub a: f32,
    pub b: f32,
    /// The (decayed) outcomes it was fitted on.
    pub outcomes: f32,
}

impl Platt {
    pub const IDENTITY: Platt = Platt {
        a: 1.0,
        b: 0.0,
        outcomes: 0.0,
    };

    pub fn apply(&self, p: f32) -> f32 {
        let z = f64::from(self.a) * logit(f64::from(p)) + f64::from(self.b);
        sigmoid(z) as f32
    }
}

/// A tenant's thresholds learned from its legitimate traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LegitThresholds {
    /// Scores above which at most [`REVIEW_LEGIT_SHARE`] of approved ones lie.
    pub review: f32,
    /// Scores above which at most [`BLOCK_LEGIT_SHARE`] of approved ones lie.
    pub block: f32,
}

/// What scoring one request reads of the feedback, as of the request.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Feedback {
    /// `None`: too few outcomes yet (serve the model's probabilities).
    pub calibration: Option<Platt>,
    /// `None`: too few approved verifications yet (the card's thresholds).
    pub legit: Option<LegitThresholds>,
}

impl Feedback {
    /// `p` recalibrated (unchanged without a calibration).
    pub fn calibrated(&self, p: f32) -> f32 {
        self.calibration.map_or(p, |c| c.apply(p))
    }

    /// The thresholds to decide with: the learned ones, never below `floor`
    /// (the card's, from training).
    pub fn thresholds(&self, floor_review: f64, floor_block: f64) -> (f64, f64) {
        match self.legit {
            None => (floor_review, floor_block),
            Some(l) => {
                let block = f64::from(l.block).max(floor_block);
                (f64::from(l.review).max(floor_review).min(block), block)
            }
        }
    }
}

/// When a verification's outcome is learned: when it was decided, but not
/// before its request's TTL has passed (so one cohort's successes and
/// failures count together).
pub fn learned_at(requested_at: EventTime, decided_at: EventTime, ttl_ms: i64) -> EventTime {
    decided_at.max(requested_at.saturating_add(ttl_ms))
}

/// One decided verification, as the feedback learns from it.
#[derive(Debug, Clone, Copy)]
pub struct Decided<'a> {
    pub tenant: &'a str,
    pub country: &'a str,
    /// The model's raw `p_success` for the first attempt's provider, and
    /// whether that attempt got the code through (approved, one attempt).
    pub first_attempt: Option<(f32, bool)>,
    /// The fraud score it was given, and whether it was approved.
    pub fraud_score: f32,
    pub approved: bool,
}

/// Counts that decay by count: each update multiplies what came before by
/// `1 - 1/memory`. Stored against a growing weight (an update adds the
/// current weight), so an update touches one bin; renormalized before the
/// weight overflows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DecayedBins<const N: usize, const K: usize> {
    #[serde(with = "serde_big_array")]
    bins: [[f64; K]; N],
    weight: f64,
    total: f64,
    updates: u64,
}

/// serde derives arrays only of fixed small lengths; the bins are stored
/// as one flat sequence (bin by bin) and checked for length on reading.
mod serde_big_array {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, const N: usize, const K: usize>(
        v: &[[f64; K]; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.as_flattened().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize, const K: usize>(
        d: D,
    ) -> Result<[[f64; K]; N], D::Error> {
        let flat = Vec::<f64>::deserialize(d)?;
        if flat.len() != N * K {
            return Err(D::Error::invalid_length(
                flat.len(),
                &"bins × values per bin",
            ));
        }
        let mut bins = [[0.0; K]; N];
        for (bin, values) in bins.iter_mut().zip(flat.chunks_exact(K.max(1))) {
            bin.copy_from_slice(values);
        }
        Ok(bins)
    }
}

impl<const N: usize, const K: usize> Default for DecayedBins<N, K> {
    fn default() -> Self {
        DecayedBins {
            bins: [[0.0; K]; N],
            weight: 1.0,
            total: 0.0,
            updates: 0,
        }
    }
}

impl<const N: usize, const K: usize> DecayedBins<N, K> {
    /// Adds `values` (each times the current weight) to `bin`.
    fn add(&mut self, memory: f64, bin: usize, values: [f64; K]) {
        let bin = bin.min(N - 1);
        for (slot, v) in self.bins[bin].iter_mut().zip(values) {
            *slot += v * self.weight;
        }
        self.total += self.weight;
        self.updates += 1;
        self.weight /= 1.0 - 1.0 / memory;
        if self.weight > 1e200 {
            let k = 1.0 / self.weight;
            for b in &mut self.bins {
                for v in b.iter_mut() {
                    *v *= k;
                }
            }
            self.total *= k;
            self.weight = 1.0;
        }
    }

    /// The bins in units of recent updates (the newest counts about 1).
    fn effective(&self) -> impl Iterator<Item = [f64; K]> + '_ {
        let k = 1.0 / self.weight;
        self.bins.iter().map(move |b| b.map(|v| v * k))
    }

    fn effective_total(&self) -> f64 {
        self.total / self.weight
    }
}

/// A country's (or the partition's) reliability bins and its current fit.
/// Bin values: outcomes, successes, sum of raw p.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Reliability {
    bins: DecayedBins<CALIBRATION_BINS, 3>,
    fit: Option<Platt>,
}

impl Reliability {
    fn add(&mut self, p: f32, success: bool) {
        let p = f64::from(p).clamp(0.0, 1.0);
        let bin = (p * CALIBRATION_BINS as f64) as usize;
        self.bins.add(
            CALIBRATION_MEMORY,
            bin,
            [1.0, f64::from(u8::from(success)), p],
        );
        if self.bins.updates.is_multiple_of(REFIT_EVERY) {
            let outcomes = self.bins.effective_total();
            self.fit = (outcomes >= MIN_CALIBRATION_OUTCOMES).then(|| fit_platt(&self.bins));
        }
    }
}

/// Newton's method on the binned log-loss plus a ridge prior towards the
/// identity; `a` is kept positive (the map stays monotone).
fn fit_platt(bins: &DecayedBins<CALIBRATION_BINS, 3>) -> Platt {
    let points: Vec<(f64, f64, f64)> = bins
        .effective()
        .filter(|b| b[0] > 1e-9)
        .map(|[n, hits, p_sum]| (logit(p_sum / n), n, hits))
        .collect();
    let (mut a, mut b) = (1.0, 0.0);
    let lambda = CALIBRATION_PRIOR;
    for _ in 0..12 {
        let (mut ga, mut gb) = (lambda * (a - 1.0), lambda * b);
        let (mut haa, mut hab, mut hbb) = (lambda, 0.0, lambda);
        for &(x, n, hits) in &points {
            let q = sigmoid(a * x + b);
            let r = n * q - hits;
            let w = n * q * (1.0 - q);
            ga += r * x;
            gb += r;
            haa += w * x * x;
            hab += w * x;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-12 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        a = (a - da.clamp(-1.0, 1.0)).clamp(0.05, 5.0);
        b = (b - db.clamp(-1.0, 1.0)).clamp(-5.0, 5.0);
        if da.abs() < 1e-6 && db.abs() < 1e-6 {
            break;
        }
    }
    Platt {
        a: a as f32,
        b: b as f32,
        outcomes: bins.effective_total() as f32,
    }
}

/// A tenant's approved verifications' scores and the thresholds drawn from them.
/// Bin value: the count.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct LegitScores {
    bins: DecayedBins<SCORE_BINS, 1>,
    thresholds: Option<LegitThresholds>,
}

impl LegitScores {
    fn add(&mut self, score: f32) {
        let s = f64::from(score).clamp(0.0, 1.0);
        let bin = (s * SCORE_BINS as f64) as usize;
        self.bins.add(SCORE_MEMORY, bin, [1.0]);
        if self.bins.updates.is_multiple_of(REFIT_EVERY) {
            let approved = self.bins.effective_total();
            self.thresholds = (approved >= MIN_LEGIT_SCORES).then(|| {
                let counts: Vec<f64> = self.bins.effective().map(|b| b[0]).collect();
                LegitThresholds {
                    review: upper_quantile(&counts, REVIEW_LEGIT_SHARE) as f32,
                    block: upper_quantile(&counts, BLOCK_LEGIT_SHARE) as f32,
                }
            });
        }
    }
}

/// The lowest bin edge with at most `share` of the mass above it.
fn upper_quantile(counts: &[f64], share: f64) -> f64 {
    let total: f64 = counts.iter().sum();
    let mut above = 0.0;
    for (i, c) in counts.iter().enumerate().rev() {
        if above + c > share * total {
            return (i + 1) as f64 / counts.len() as f64;
        }
        above += c;
    }
    0.0
}

/// A first attempt's outcome waiting for its learning time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pending {
    country: Text,
    p: f32,
    success: bool,
}

/// A partition's feedback: calibration per country and partition-wide,
/// legitimate scores per tenant, and the outcomes not learned yet. Only the
/// partition's pipeline writes it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FeedbackState {
    calibration: BTreeMap<Text, Reliability>,
    legit: BTreeMap<Text, LegitScores>,
    /// By (learning time, arrival order).
    pending: BTreeMap<(EventTime, u64), Pending>,
    queued: u64,
}

/// Shared with readers on other threads (the synchronous API).
pub type SharedFeedback = std::sync::Arc<std::sync::RwLock<FeedbackState>>;

impl FeedbackState {
    /// Learns from one decided verification: its score at once if it was
    /// approved (the legitimate population as it is now), its first
    /// attempt's outcome once [`Self::advance`] passes `learn_at` (see
    /// [`learned_at`]).
    pub fn on_decided(&mut self, d: Decided<'_>, learn_at: EventTime) {
        if let Some((p, success)) = d.first_attempt {
            self.queued += 1;
            self.pending.insert(
                (learn_at, self.queued),
                Pending {
                    country: d.country.into(),
                    p,
                    success,
                },
            );
        }
        self.learn_score(d);
    }

    /// Learns every queued outcome whose learning time is at or before `now`.
    pub fn advance(&mut self, now: EventTime) {
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let p = entry.remove();
            self.learn_outcome(&p.country, p.p, p.success);
        }
    }

    #[cfg(test)]
    fn learn(&mut self, d: Decided<'_>) {
        if let Some((p, success)) = d.first_attempt {
            self.learn_outcome(d.country, p, success);
        }
        self.learn_score(d);
    }

    fn learn_outcome(&mut self, country: &str, p: f32, success: bool) {
        for key in [country, ALL_COUNTRIES] {
            if !self.calibration.contains_key(key) {
                self.calibration.insert(key.into(), Reliability::default());
            }
            if let Some(r) = self.calibration.get_mut(key) {
                r.add(p, success);
            }
        }
    }

    fn learn_score(&mut self, d: Decided<'_>) {
        if d.approved {
            for key in [d.tenant, ALL_TENANTS] {
                if !self.legit.contains_key(key) {
                    self.legit.insert(key.into(), LegitScores::default());
                }
                if let Some(l) = self.legit.get_mut(key) {
                    l.add(d.fraud_score);
                }
            }
        }
    }

    /// What scoring a request of `tenant` to `country` reads now: the
    /// country's own map and the tenant's own thresholds once they have the
    /// volume, else the partition's (all its countries, all its tenants).
    /// The stream calls [`Self::advance`] to the request's time first.
    pub fn for_request(&self, tenant: &str, country: &str) -> Feedback {
        let fitted = |key: &str| self.calibration.get(key).and_then(|r| r.fit);
        self.feedback(tenant, fitted(country), fitted(ALL_COUNTRIES))
    }

    /// What [`Self::for_request`] would read after `advance(at)`, without
    /// changing the state (a reader holding the read lock: the synchronous
    /// API scoring a prospective request at `at`, as the stream will).
    pub fn for_request_at(&self, tenant: &str, country: &str, at: EventTime) -> Feedback {
        let mut due = self.pending.range(..=(at, u64::MAX)).peekable();
        if due.peek().is_none() {
            return self.for_request(tenant, country);
        }
        let mut own = self.calibration.get(country).cloned().unwrap_or_default();
        let mut all = self
            .calibration
            .get(ALL_COUNTRIES)
            .cloned()
            .unwrap_or_default();
        for (_, p) in due {
            if p.country.as_str() == country {
                own.add(p.p, p.success);
            }
            all.add(p.p, p.success);
        }
        self.feedback(tenant, own.fit, all.fit)
    }

    fn feedback(&self, tenant: &str, own: Option<Platt>, all: Option<Platt>) -> Feedback {
        let calibration = own
            .filter(|f| f64::from(f.outcomes) >= MIN_CALIBRATION_OUTCOMES)
            .or(all);
        let learned = |key: &str| self.legit.get(key).and_then(|l| l.thresholds);
        Feedback {
            calibration,
            legit: learned(tenant).or_else(|| learned(ALL_TENANTS)),
        }
    }
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-4, 1.0 - 1e-4);
    (p / (1.0 - p)).ln()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of uniforms.
    fn uniforms(seed: u64) -> impl Iterator<Item = f64> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        std::iter::from_fn(move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Some((x >> 11) as f64 / (1u64 << 53) as f64)
        })
    }

    fn decided(country: &str, p: f32, success: bool) -> Decided<'_> {
        Decided {
            tenant: "t",
            country,
            first_attempt: Some((p, success)),
            fraud_score: 0.01,
            approved: success,
        }
    }

    #[test]
    fn calibration_converges_to_rates_unlike_the_models() {
        // This world delivers far less than the model learned, and its
        // rates spread differently.
        let truth = |p: f64| sigmoid(0.7 * logit(p) - 1.0);
        let mut state = FeedbackState::default();
        let mut u = uniforms(7);
        assert_eq!(state.for_request("t", "BR").calibration, None);
        for _ in 0..6_000 {
            let p = 0.6 + 0.35 * u.next().unwrap_or(0.5);
            let success = u.next().unwrap_or(0.5) < truth(p);
            state.learn(decided("BR", p as f32, success));
        }
        let fb = state.for_request("t", "BR");
        let c = fb.calibration.expect("fitted");
        for p in [0.65, 0.75, 0.85, 0.93] {
            let served = f64::from(fb.calibrated(p as f32));
            assert!(
                (served - truth(p)).abs() < 0.04,
                "p {p}: served {served:.3}, truth {:.3} ({c:?})",
                truth(p)
            );
        }
        // Monotone: routes keep their order.
        assert!(fb.calibrated(0.7) < fb.calibrated(0.8));
    }

    #[test]
    fn a_country_without_volume_reads_the_partition_map_and_recent_outcomes_dominate() {
        let mut state = FeedbackState::default();
        let mut u = uniforms(3);
        for _ in 0..3_000 {
            let success = u.next().unwrap_or(0.5) < 0.5;
            state.learn(decided("US", 0.8, success));
        }
        let fb = state.for_request("t", "LV");
        assert!((fb.calibrated(0.8) - 0.5).abs() < 0.05, "{fb:?}");
        // The world changes: the same raw p now succeeds 80 % of the time.
        for _ in 0..12_000 {
            let success = u.next().unwrap_or(0.5) < 0.8;
            state.learn(decided("US", 0.8, success));
        }
        let fb = state.for_request("t", "US");
        assert!((fb.calibrated(0.8) - 0.8).abs() < 0.04, "{fb:?}");
    }

    #[test]
    fn legitimate_scores_set_thresholds_above_all_but_a_small_share() {
        let mut state = FeedbackState::default();
        let mut u = uniforms(11);
        let mut scores = Vec::new();
        for _ in 0..10_000 {
            // A busy population: scores spread up to 0.9.
            let s = (u.next().unwrap_or(0.5).powi(3) * 0.9) as f32;
            scores.push(s);
            state.learn(Decided {
                tenant: "busy",
                country: "BR",
                first_attempt: None,
                fraud_score: s,
                approved: true,
            });
        }
        let fb = state.for_request("busy", "BR");
        let (review, block) = fb.thresholds(0.3, 0.5);
        let above = |t: f64| {
            scores.iter().filter(|s| f64::from(**s) >= t).count() as f64 / scores.len() as f64
        };
        assert!(
            block > 0.5 && above(block) <= BLOCK_LEGIT_SHARE + 0.001,
            "{block}"
        );
        assert!(above(review) <= REVIEW_LEGIT_SHARE + 0.002, "{review}");
        assert!(review <= block);
        // A tenant without its own volume yet reads the partition's.
        assert_eq!(
            state.for_request("quiet", "BR").thresholds(0.3, 0.5),
            (review, block)
        );
        // A calm population keeps the floor (learned thresholds never lower it).
        let mut calm = FeedbackState::default();
        for _ in 0..1_000 {
            calm.learn(Decided {
                tenant: "calm",
                country: "BR",
                first_attempt: None,
                fraud_score: 0.01,
                approved: true,
            });
        }
        assert_eq!(
            calm.for_request("calm", "BR").thresholds(0.3, 0.5),
            (0.3, 0.5)
        );
    }

    #[test]
    fn the_state_round_trips_through_its_checkpoint_form() {
        let mut state = FeedbackState::default();
        for i in 0..100 {
            state.learn(decided("FR", 0.5 + (i % 40) as f32 / 100.0, i % 3 != 0));
        }
        state.on_decided(decided("FR", 0.7, true), 5_000);
        let bytes = postcard::to_stdvec(&state).expect("serializes");
        let back: FeedbackState = postcard::from_bytes(&bytes).expect("reads back");
        assert_eq!(back, state);
    }

    #[test]
    fn outcomes_are_learned_in_learning_time_order_once_the_ttl_has_passed() {
        assert_eq!(learned_at(1_000, 30_000, 600_000), 601_000);
        assert_eq!(learned_at(1_000, 900_000, 600_000), 900_000);
        let mut state = FeedbackState::default();
        for i in 0..400u32 {
            // Successes decided early, failures late: all of one cohort.
            let at = i64::from(i) * 1_000;
            state.on_decided(
                decided("BR", 0.8, i % 2 == 0),
                learned_at(at, at + 20_000, 600_000),
            );
        }
        state.advance(399_000);
        assert_eq!(
            state.for_request("t", "BR").calibration,
            None,
            "nothing learned before the TTL"
        );
        state.advance(2_000_000);
        let fb = state.for_request("t", "BR");
        assert!((fb.calibrated(0.8) - 0.5).abs() < 0.05, "{fb:?}");
        assert!(state.pending.is_empty());
    }
}
