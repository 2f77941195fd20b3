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
use crate::routes::GlobalRouteStats;

pub struct StreamScorer {
    pub stage: Arc<ScoringStage>,
    /// The global route statistics and the input topic they are kept for.
    pub routes: Arc<GlobalRouteStats>,
    pub topic: String,
    /// Tenants' thresholds and provider policies (from the API, when it runs).
    pub settings: Option<Arc<TenantScoring>>,
}

impl RequestScorer for StreamScorer {
    fn score(&self, record: &FeatureRecord) -> Option<Scored> {
        let r = &record.request;
        let assignment = self.stage.assign(&r.tenant_id, Some(&r.verification_id))?;
        let routes = self.routes.merged(&self.topic);
        let settings = self.settings.as_ref().and_then(|s| s.get(&r.tenant_id));
        match scored_record(&assignment, record, &routes, settings.as_deref()) {
            Ok((bytes, verdict)) => Some(Scored {
                note: ScoreNote {
                    variant: assignment.variant.into(),
                    fraud_score: verdict.fraud_score,
                    fraud_decision: verdict.fraud_decision,
                },
                record: bytes,
            }),
            Err(e) => {
                tracing::error!(error = %e, verification = %r.verification_id, "scoring a request failed; it goes unscored");
                None
            }
        }
    }
}
