//! Which providers a verification may go to, before the success model ranks
//! them: the tenant's allow and deny lists, its cost ceiling, and — for a
//! retry — not the providers already tried.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A tenant's provider settings (the API's `providers` object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoutePolicy {
    /// When not empty, only these providers.
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    /// Providers whose known cost per message in the destination exceeds this are
    /// left out; a provider without a known cost is kept (nothing to judge by).
    #[serde(default)]
    pub max_cost_per_message: Option<f64>,
}

/// The candidates among `providers` for `country`, in their given order.
/// Providers in `tried` are left out unless nothing else remains (a retry goes
/// to a different provider when there is one).
pub fn candidates(
    providers: &[String],
    country: &str,
    policy: &RoutePolicy,
    costs: &BTreeMap<String, f64>,
    tried: &[String],
) -> Vec<String> {
    let allowed: Vec<String> = providers
        .iter()
        .filter(|p| policy.allow.is_empty() || policy.allow.contains(p))
        .filter(|p| !policy.deny.contains(p))
        .filter(|p| {
            match (
                policy.max_cost_per_message,
                costs.get(&cost_key(country, p)),
            ) {
                (Some(ceiling), Some(cost)) => *cost <= ceiling,
                _ => true,
            }
        })
        .cloned()
        .collect();
    let fresh: Vec<String> = allowed
        .iter()
        .filter(|p| !tried.contains(p))
        .cloned()
        .collect();
    if fresh.is_empty() { allowed } else { fresh }
}

/// The key of a route's cost in a model card: `country/provider`.
pub fn cost_key(country: &str, provider: &str) -> String {
    format!("{country}/{provider}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn allow_deny_cost_ceiling_and_retries() {
        let all = names(&["infobip", "sinch", "twilio", "vonage"]);
        let costs: BTreeMap<String, f64> = [
            ("BR/infobip", 0.02),
            ("BR/sinch", 0.08),
            ("BR/twilio", 0.05),
            ("MX/sinch", 0.01),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let open = RoutePolicy::default();
        assert_eq!(candidates(&all, "BR", &open, &costs, &[]), all);
        let allow = RoutePolicy {
            allow: names(&["sinch", "twilio"]),
            ..RoutePolicy::default()
        };
        assert_eq!(
            candidates(&all, "BR", &allow, &costs, &[]),
            names(&["sinch", "twilio"])
        );
        let deny = RoutePolicy {
            deny: names(&["twilio"]),
            ..RoutePolicy::default()
        };
        assert_eq!(
            candidates(&all, "BR", &deny, &costs, &[]),
            names(&["infobip", "sinch", "vonage"])
        );
        let ceiling = RoutePolicy {
            max_cost_per_message: Some(0.05),
            ..RoutePolicy::default()
        };
        assert_eq!(
            candidates(&all, "BR", &ceiling, &costs, &[]),
            names(&["infobip", "twilio", "vonage"]),
            "sinch costs 0.08 in BR; vonage's cost is unknown"
        );
        assert_eq!(
            candidates(&all, "MX", &ceiling, &costs, &[]),
            all,
            "costs are per destination"
        );
        let both = RoutePolicy {
            allow: names(&["sinch", "twilio"]),
            deny: names(&["twilio"]),
            max_cost_per_message: Some(0.05),
        };
        assert!(
            candidates(&all, "BR", &both, &costs, &[]).is_empty(),
            "nothing left"
        );
        assert_eq!(
            candidates(&all, "BR", &allow, &costs, &names(&["sinch"])),
            names(&["twilio"]),
            "a retry goes elsewhere"
        );
        assert_eq!(
            candidates(&all, "BR", &allow, &costs, &names(&["sinch", "twilio"])),
            names(&["sinch", "twilio"]),
            "unless every allowed provider was tried"
        );
    }
}
