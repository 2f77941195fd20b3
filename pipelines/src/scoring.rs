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
    /// `None` when nothing scores this request (no models loaded); an error
    /// is the scorer's to report.
    fn score(&self, record: &FeatureRecord) -> Option<Scored>;
}

/// What scoring one request produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Kept in the verification's state.
    pub note: ScoreNote,
    /// The `verifications.scored` record to write (opaque here).
    pub record: Vec<u8>,
}

/// What a verification remembers of its scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreNote {
    /// The A/B arm that decided: `champion` or `challenger`.
    pub variant: Text,
    pub fraud_score: f32,
    pub fraud_decision: FraudDecision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FraudDecision {
    Allow,
    Review,
    Block,
}

impl FraudDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            FraudDecision::Allow => "allow",
            FraudDecision::Review => "review",
            FraudDecision::Block => "block",
        }
    }
}

/// A scorer in the pipeline's configuration.
#[derive(Clone)]
pub struct ScorerHandle(pub Arc<dyn RequestScorer>);

impl std::fmt::Debug for ScorerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScorerHandle")
    }
}
