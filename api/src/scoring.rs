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

pub use veriflow_common::scoring::{
    FraudDecision, FraudThresholds, ModelName, ModelVersions, ProviderPolicy, RankedProvider,
    ScoringSettings, Verdict,
};

use crate::store::{Store, StoreError};
use crate::tenant_settings::TenantSettings;

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
            .filter_map(|row| match TenantSettings::of(row) {
                Ok(settings) => Some((row.id.clone(), Arc::new(settings.scoring()))),
                Err(e) => {
                    tracing::error!(tenant = %row.id, error = %e, "stored tenant settings are corrupt");
                    None
                }
            })
            .collect();
        *self
            .by_tenant
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(map);
        Ok(())
    }
}
