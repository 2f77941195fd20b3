//! The stream's scorer: plugged into the pipeline
//! ([`veriflow_pipelines::scoring::RequestScorer`]), it scores each request as
//! its features are computed and hands back the scored record to write and
//! the note the verification keeps (variant, score, decision).

use std::sync::Arc;

use veriflow_api::scoring::TenantScoring;
use veriflow_pipelines::features::FeatureRecord;
use veriflow_pipelines::scoring::{RequestScorer, ScoreNote, Scored};

use super::ScoringStage;

use super::verdict::scored_record;

/// Route statistics come with each request from its partition (as of the
/// request), not from the global view: so a scored record is a function of
/// the partition's events, whatever the pace they arrive at (a backlog, a
/// backfill), and a replay scores it the same.
pub struct StreamScorer {
    pub stage: Arc<ScoringStage>,
    /// Tenants' thresholds and provider policies (from the API, when it runs).
    pub settings: Option<Arc<TenantScoring>>,
}

impl RequestScorer for StreamScorer {
    fn score(&self, record: &FeatureRecord) -> Option<Scored> {
        let r = &record.request;
        let assignment = self.stage.assign(&r.tenant_id, Some(&r.verification_id))?;
        let settings = self.settings.as_ref().and_then(|s| s.get(&r.tenant_id));
        match scored_record(&assignment, record, settings.as_deref()) {
            Ok((bytes, judged)) => Some(Scored {
                note: ScoreNote {
                    variant: assignment.variant.into(),
                    fraud_score: judged.verdict.fraud_score,
                    fraud_decision: judged.verdict.fraud_decision,
                },
                record: bytes,
                success_raw: judged.success_raw,
            }),
            Err(e) => {
                tracing::error!(error = %e, verification = %r.verification_id, "scoring a request failed; it goes unscored");
                None
            }
        }
    }
}
