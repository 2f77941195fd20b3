//! Synchronous scoring for a verification about to be sent: `POST /v1/route`
//! and `POST /v1/score` (handlers in `routes/scoring.rs`).
//!
//! The answers come from the stream's live features and loaded models, which the
//! API does not own: `veriflow run` attaches a [`LiveScorer`] that computes them
//! with the same code that writes `verifications.scored`. `veriflow api` alone
//! has no stream, so these routes answer 503 there.
//!
//! Tenants' scoring settings (fraud thresholds, provider policy) are read per
//! request by the stream as well as here, so they are kept in memory
//! ([`TenantScoring`]) and refreshed from the store every second and after
//! every tenant change made through this API.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use serde::Serialize;
use utoipa::ToSchema;

use crate::routes::tenants::{FraudThresholds, ProviderPolicy};
use crate::store::{Store, StoreError};

/// A verification about to be sent, as the synchronous calls describe it.
#[derive(Debug, Clone)]
pub struct Prospect {
    pub tenant_id: String,
    /// The id the verification will carry; it decides the A/B arm exactly as in
    /// the stream. Without one, the champion answers.
    pub verification_id: Option<String>,
    pub phone_number: String,
    pub country: String,
    pub ip: Option<String>,
    pub ip_country: Option<String>,
    pub device_id: Option<String>,
    /// Unix milliseconds; the features are read as of this time.
    pub requested_at: i64,
    /// Providers already tried for this verification (a retry goes elsewhere).
    pub tried: Vec<String>,
}

/// A tenant's settings that scoring applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoringSettings {
    /// `None`: the model card's suggested thresholds.
    pub fraud_thresholds: Option<FraudThresholds>,
    pub providers: ProviderPolicy,
}

/// What scoring decided about one request: the part of a
/// `verifications.scored` record and of the synchronous answers that comes
/// from the models.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Verdict {
    /// Calibrated probability that the request is SMS pumping.
    pub fraud_score: f32,
    pub fraud_decision: FraudDecision,
    /// The features that pushed the score up most, strongest first.
    pub fraud_reasons: Vec<String>,
    /// The thresholds the decision used: the tenant's, else the model's.
    pub fraud_thresholds: FraudThresholds,
    /// The providers the tenant's policy allows, best first.
    pub routes: Vec<RankedProvider>,
    /// The provider to send through: Thompson sampling over the success
    /// model's uncertainty, so little-used routes keep being measured. Usually
    /// `routes[0]`; `null` when no provider is allowed.
    pub choice: Option<String>,
    pub model: ModelVersions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FraudDecision {
    Allow,
    /// Informative: worth a look.
    Review,
    /// The upstream should not send.
    Block,
}

impl FraudDecision {
    pub fn at(score: f32, thresholds: &FraudThresholds) -> FraudDecision {
        let score = f64::from(score);
        if score >= thresholds.block {
            FraudDecision::Block
        } else if score >= thresholds.review {
            FraudDecision::Review
        } else {
            FraudDecision::Allow
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RankedProvider {
    pub provider: String,
    /// Calibrated probability that a verification sent through this provider
    /// now is approved.
    pub p_success: f32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelVersions {
    pub fraud: ModelName,
    pub success: ModelName,
    /// The feature schema both read.
    pub feature_schema: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelName {
    pub name: String,
    pub version: String,
}

/// A prospect scored against live state.
#[derive(Debug, Clone)]
pub struct Scored {
    /// The feature values read (the features topic's names).
    pub features: serde_json::Value,
    /// The input partition whose history they come from; `None` when no
    /// partition on this instance knows the tenant's phone, prefix, IP, device
    /// or country yet (a first request).
    pub partition: Option<i32>,
    /// `champion` or `challenger`.
    pub variant: &'static str,
    pub verdict: Verdict,
}

#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    /// No models loaded, or no stream on this process.
    #[error("{0}")]
    Unavailable(String),
    /// The request cannot be scored as given.
    #[error("{0}")]
    Invalid(String),
    #[error("scoring failed: {0}")]
    Failed(String),
}

/// Scores prospects against live state; `veriflow run` provides it.
pub trait LiveScorer: Send + Sync + 'static {
    fn score(
        &self,
        prospect: &Prospect,
        settings: Option<&ScoringSettings>,
    ) -> Result<Scored, ScoringError>;
}

/// The scorer, once the process attaches one.
pub type ScorerSlot = Arc<OnceLock<Arc<dyn LiveScorer>>>;

/// Every tenant's [`ScoringSettings`], as of the last refresh.
#[derive(Default)]
pub struct TenantScoring {
    by_tenant: RwLock<Arc<HashMap<String, Arc<ScoringSettings>>>>,
}

impl TenantScoring {
    /// The tenant's settings; `None` for a tenant the API does not know (its
    /// traffic is scored with the model's thresholds and every provider).
    pub fn get(&self, tenant: &str) -> Option<Arc<ScoringSettings>> {
        self.by_tenant
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .cloned()
    }

    /// Reloads every tenant's settings from the store.
    pub async fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        let tenants = store.tenants().await?;
        let map: HashMap<String, Arc<ScoringSettings>> = tenants
            .iter()
            .filter_map(|row| {
                let settings = crate::routes::tenants::scoring_settings(row)?;
                Some((row.id.clone(), Arc::new(settings)))
            })
            .collect();
        *self
            .by_tenant
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(map);
        Ok(())
    }
}
