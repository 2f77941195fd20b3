//! The seam where models score a request inside the pipeline.
//!
//! Scoring happens when a request's features are computed (the watermark passed
//! it), before anything later in event time is decided. So the score is in the
//! verification's state before its outcome and KPI fact are frozen, whatever
//! the batching: outcomes carry the scores the verification was given, and
//! KPI facts carry its A/B variant, as a function of the events (and the
//! models in use). The pipeline knows nothing of models: the caller plugs a
//! [`RequestScorer`] into [`crate::PipelineConfig::scorer`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Text;
use crate::features::FeatureRecord;

/// Scores featurized requests (the models live outside this crate).
pub trait RequestScorer: Send + Sync {
    /// The record carries the route statistics and the feedback as of the
    /// request ([`FeatureRecord::routes`], [`FeatureRecord::feedback`]). `None` when nothing scores this request
    /// (no models loaded); an error is the scorer's to report.
    fn score(&self, record: &FeatureRecord) -> Option<Scored>;
}

/// What scoring one request produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Kept in the verification's state.
    pub note: ScoreNote,
    /// The `verifications.scored` record to write (opaque here).
    pub record: Vec<u8>,
    /// The success model's raw probability per candidate provider, before
    /// the feedback's calibration: what the calibration learns from.
    pub success_raw: Vec<(Text, f32)>,
}

/// What a verification remembers of its scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreNote {
    /// The A/B arm that decided: `champion` or `challenger`.
    pub variant: Text,
    pub fraud_score: f32,
    pub fraud_decision: FraudDecision,
}

pub use veriflow_common::scoring::FraudDecision;

/// A scored request as the pipeline emits it ([`crate::Output::Scored`]),
/// just before the request's feature record: the runtime writes it to
/// `verifications.scored`. Its id is the feature record's, so a replay
/// after a crash recognises it on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredRequest {
    pub partition: i32,
    pub tenant_id: Text,
    /// `features_id` of the request.
    pub scored_id: String,
    /// The record bytes the scorer built (opaque here).
    pub record: Vec<u8>,
}

/// A scorer in the pipeline's configuration.
#[derive(Clone)]
pub struct ScorerHandle(pub Arc<dyn RequestScorer>);

impl std::fmt::Debug for ScorerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScorerHandle")
    }
}
