//! Which providers a verification may go to, before the success model ranks
//! them: the tenant's allow and deny lists, its cost ceiling, and — for a
//! retry — not the providers already tried.

use std::collections::BTreeMap;

use veriflow_common::scoring::ProviderPolicy;

/// The candidates among `providers` for `country`, in their given order.
/// Providers in `tried` are left out unless nothing else remains (a retry goes
/// to a different provider when there is one).
pub fn candidates(
    providers: &[String],
    country: &str,
    policy: &ProviderPolicy,
    costs: &BTreeMap<String, f64>,
    tried: &[String],
) -> Vec<String> {
    let allowed: Vec<String> = providers
        .iter()
        .filter(|p| policy.admits(p))
        .filter(|p| {
            match (
                policy.max_cost_per_message,
                costs.get(&route_key(country, p)),
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

/// Weight of the success model's own estimate, in observations: a route with no
/// recent traffic is sampled as if 10 attempts had agreed with the model.
const MODEL_PRIOR: f64 = 10.0;
/// Evidence beyond this many recent attempts adds no confidence: a route keeps
/// a little exploration however busy it is, so drift is still noticed.
const EVIDENCE_CAP: f64 = 2_000.0;

/// Thompson sampling over the ranked routes: each provider's success
/// probability is drawn from Beta(1 + p·n, 1 + (1 − p)·n), with `n` the model's
/// prior plus the route's recent attempts (`evidence`), and the highest draw is
/// chosen. Busy, clearly better routes win nearly always; routes with little
/// recent traffic are tried now and then, so their statistics keep learning.
/// Deterministic for a `seed` (derive it from the verification).
pub fn thompson_choice(
    routes: &[crate::RankedRoute],
    evidence: impl Fn(&str) -> f64,
    seed: u64,
) -> Option<String> {
    use rand_core::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    routes
        .iter()
        .map(|r| {
            let p = f64::from(r.p_success).clamp(1e-4, 1.0 - 1e-4);
            let n = MODEL_PRIOR + evidence(&r.provider).clamp(0.0, EVIDENCE_CAP);
            let draw = rand_distr::Beta::new(1.0 + p * n, 1.0 + (1.0 - p) * n)
                .map_or(p, |beta| beta.sample(&mut rng));
            (draw, &r.provider)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, provider)| provider.clone())
}

/// The key of a route in a model card (its cost, its delivery): `country/provider`.
pub fn route_key(country: &str, provider: &str) -> String {
    format!("{country}/{provider}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn providers(v: &[&str]) -> Vec<veriflow_common::scoring::ProviderName> {
        v.iter()
            .map(|s| veriflow_common::scoring::ProviderName(s.to_string()))
            .collect()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn thompson_sampling_exploits_busy_routes_and_explores_idle_ones() {
        let routes = [
            crate::RankedRoute {
                provider: "best".into(),
                p_success: 0.85,
            },
            crate::RankedRoute {
                provider: "second".into(),
                p_success: 0.75,
            },
        ];
        let picks = |evidence: f64| {
            (0..2_000u64)
                .filter(|seed| {
                    thompson_choice(&routes, |_| evidence, *seed).as_deref() == Some("second")
                })
                .count()
        };
        let busy = picks(2_000.0);
        let idle = picks(0.0);
        assert!(
            busy < 20,
            "busy routes: the better one nearly always ({busy} of 2000)"
        );
        assert!(idle > 300, "idle routes are explored ({idle} of 2000)");
        assert_eq!(
            thompson_choice(&routes, |_| 5.0, 42),
            thompson_choice(&routes, |_| 5.0, 42),
            "deterministic for a seed"
        );
        assert_eq!(thompson_choice(&[], |_| 0.0, 1), None);
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
        let open = ProviderPolicy::default();
        assert_eq!(candidates(&all, "BR", &open, &costs, &[]), all);
        let allow = ProviderPolicy {
            allow: providers(&["sinch", "twilio"]),
            ..ProviderPolicy::default()
        };
        assert_eq!(
            candidates(&all, "BR", &allow, &costs, &[]),
            names(&["sinch", "twilio"])
        );
        let deny = ProviderPolicy {
            deny: providers(&["twilio"]),
            ..ProviderPolicy::default()
        };
        assert_eq!(
            candidates(&all, "BR", &deny, &costs, &[]),
            names(&["infobip", "sinch", "vonage"])
        );
        let ceiling = ProviderPolicy {
            max_cost_per_message: Some(0.05),
            ..ProviderPolicy::default()
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
        let both = ProviderPolicy {
            allow: providers(&["sinch", "twilio"]),
            deny: providers(&["twilio"]),
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
