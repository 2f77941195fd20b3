//! The scoring domain, one type per idea, shared by the pipeline (what a
//! verification remembers), the models (what the router honours), the API
//! (what tenants set and read) and the runtime (what the stream writes).
//!
//! These types are public contract: they appear in `verifications.scored`,
//! in `/v1/route` and `/v1/score` answers and in tenants' settings. Add
//! fields, never rename.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What to do with a verification about to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FraudDecision {
    Allow,
    /// Informative: worth a look.
    Review,
    /// The upstream should not send.
    Block,
}

impl FraudDecision {
    /// The decision for `score` under `thresholds` (each bound inclusive).
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

    pub fn as_str(self) -> &'static str {
        match self {
            FraudDecision::Allow => "allow",
            FraudDecision::Review => "review",
            FraudDecision::Block => "block",
        }
    }
}

/// Scores at or above `block` are blocked, else at or above `review` reviewed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FraudThresholds {
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub review: f64,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub block: f64,
}

/// A delivery provider's route name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
pub struct ProviderName(pub String);

impl ProviderName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which delivery providers the router may pick for a tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderPolicy {
    /// When non-empty, only these providers are used.
    #[serde(default)]
    #[schema(max_items = 50, inline)]
    pub allow: Vec<ProviderName>,
    /// Never used; wins over `allow`.
    #[serde(default)]
    #[schema(max_items = 50, inline)]
    pub deny: Vec<ProviderName>,
    /// Providers whose known cost per message in the destination exceeds this
    /// are not used; a provider without a known cost is kept (nothing to judge by).
    #[schema(minimum = 0.0)]
    pub max_cost_per_message: Option<f64>,
}

impl ProviderPolicy {
    /// Whether the lists let `provider` through (costs are the router's).
    pub fn admits(&self, provider: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|p| p.0 == provider))
            && !self.deny.iter().any(|p| p.0 == provider)
    }
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// The provider to send through: `routes[0]`, except on a budgeted share
    /// of verifications (20 % with no receipts, shrinking with the country's
    /// receipts in the last hour to 1 %) that probe another route, the least
    /// known first, so routes keep being measured and a failed one is noticed
    /// when it recovers. `null` when no provider is allowed.
    pub choice: Option<String>,
    pub model: ModelVersions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RankedProvider {
    pub provider: String,
    /// Calibrated probability that a first attempt sent through this provider
    /// now is approved without a resend (a retry's success is its own route's).
    pub p_success: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelVersions {
    pub fraud: ModelName,
    pub success: ModelName,
    /// The feature schema both read.
    pub feature_schema: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelName {
    pub name: String,
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_follow_inclusive_thresholds() {
        let t = FraudThresholds {
            review: 0.5,
            block: 0.9,
        };
        assert_eq!(FraudDecision::at(0.49, &t), FraudDecision::Allow);
        assert_eq!(FraudDecision::at(0.5, &t), FraudDecision::Review);
        assert_eq!(FraudDecision::at(0.95, &t), FraudDecision::Block);
        assert_eq!(
            serde_json::to_string(&FraudDecision::Review).unwrap(),
            "\"review\""
        );
    }

    #[test]
    fn the_policy_lists_admit_and_deny() {
        let p = |allow: &[&str], deny: &[&str]| ProviderPolicy {
            allow: allow.iter().map(|s| ProviderName(s.to_string())).collect(),
            deny: deny.iter().map(|s| ProviderName(s.to_string())).collect(),
            max_cost_per_message: None,
        };
        assert!(p(&[], &[]).admits("a"));
        assert!(!p(&["b"], &[]).admits("a"));
        assert!(!p(&["a"], &["a"]).admits("a"));
    }
}
