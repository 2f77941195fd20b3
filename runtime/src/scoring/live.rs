//! `POST /v1/route` and `/v1/score` inside `veriflow run`: a prospective
//! request's features peeked from the live partition state, scored by the
//! stream's models and `verdict` — the numbers its `verifications.scored`
//! record would carry.

use std::sync::Arc;

use veriflow_api::scoring::{LiveScorer, Prospect, Scored, ScoringError, ScoringSettings};
use veriflow_pipelines::LiveFeatures;
use veriflow_pipelines::country::is_assigned_alpha2 as is_assigned;
use veriflow_pipelines::features::FeatureRequest;

use super::ScoringStage;
use super::verdict::{Request, seed_of, verdict};

pub struct LiveScoring {
    pub stage: Arc<ScoringStage>,
    /// The partitions' feature state and route statistics.
    pub features: Arc<LiveFeatures>,
}

impl LiveScorer for LiveScoring {
    fn score(
        &self,
        prospect: &Prospect,
        settings: Option<&ScoringSettings>,
    ) -> Result<Scored, ScoringError> {
        for (field, code) in [
            ("country", Some(&prospect.country)),
            ("ip_country", prospect.ip_country.as_ref()),
        ] {
            if let Some(code) = code
                && !is_assigned(code)
            {
                return Err(ScoringError::Invalid(format!(
                    "{field} {code:?} is not an assigned ISO 3166-1 code"
                )));
            }
        }
        let assignment = self
            .stage
            .assign(&prospect.tenant_id, prospect.verification_id.as_deref())
            .ok_or_else(|| ScoringError::Unavailable("no scoring models are loaded".into()))?;
        let verification = prospect.verification_id.clone().unwrap_or_default();
        let request = FeatureRequest {
            tenant_id: prospect.tenant_id.as_str().into(),
            verification_id: verification.as_str().into(),
            event_id: "".into(),
            at: prospect.requested_at,
            phone_number: prospect.phone_number.as_str().into(),
            country: prospect.country.as_str().into(),
            ip: prospect.ip.as_deref().map(Into::into),
            ip_country: prospect.ip_country.as_deref().map(Into::into),
            device_id: prospect.device_id.as_deref().map(Into::into),
        };
        let peeked = self.features.peek(&request);
        let seed_key = match &prospect.verification_id {
            Some(id) => id.clone(),
            None => format!("{}@{}", prospect.phone_number, prospect.requested_at),
        };
        let scoring = Request {
            features: &peeked.features,
            country: &prospect.country,
            at: prospect.requested_at,
            seed: seed_of(&prospect.tenant_id, &seed_key),
            tried: &prospect.tried,
            feedback: &peeked.feedback,
        };
        let verdict = verdict(&assignment.decides, &scoring, &peeked.routes, settings)
            .map_err(|e| ScoringError::Failed(e.to_string()))?
            .verdict;
        Ok(Scored {
            features: serde_json::to_value(&peeked.features)
                .map_err(|e| ScoringError::Failed(e.to_string()))?,
            partition: peeked.partition,
            variant: assignment.variant,
            verdict,
        })
    }
}
