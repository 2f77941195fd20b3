//! Which providers a verification may go to, before the success model ranks
//! them: the tenant's allow and deny lists, its cost ceiling, and — for a
//! retry — not the providers already tried.

use std::collections::BTreeMap;

use veriflow_common::scoring::ProviderPolicy;

use crate::vector::RouteView;

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

/// The exploration rate with no evidence at all (a cold start).
const EXPLORE_MAX: f64 = 0.2;
/// The floor: a route keeps being probed however much is known, so a
/// recovery (or a drift) is still noticed.
const EXPLORE_MIN: f64 = 0.01;

/// The route to send through: the best route with evidence, except on a
/// budgeted share of verifications that probe another.
///
/// `routes` come ranked by `p_success`; `view` gives each one's live
/// statistics. The best route is the first with evidence (receipts in the
/// day: [`RouteView::has_evidence`]) — a provider nobody sends through in
/// the country (one of the card's on a platform that does not use it) cannot
/// be judged, so it is never chosen outright — or the first when none has
/// any (a cold start). The probing share is `1 / sqrt(1 + receipts)` over
/// the candidates' receipts in the last hour, kept within 1–20 %: it shrinks
/// as the statistics fill, so the chosen route is the best one nearly
/// always once there is evidence, and never stops probing entirely (a
/// collapsed route is tried now and then, and comes back when it recovers).
/// A probe prefers the routes known least (weight `1 / (1 + receipts)`).
/// Deterministic for a `seed` (derive it from the verification).
pub fn choose(
    routes: &[crate::RankedRoute],
    view: impl Fn(&str) -> RouteView,
    seed: u64,
) -> Option<String> {
    use rand_core::{RngCore, SeedableRng};
    let best = best(routes, &view)?;
    if routes.len() == 1 {
        return Some(routes[best].provider.clone());
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let unit =
        |rng: &mut rand_chacha::ChaCha8Rng| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let receipts: Vec<f64> = routes
        .iter()
        .map(|r| view(&r.provider).receipts_1h().max(0.0))
        .collect();
    let total: f64 = receipts.iter().sum();
    let share = (1.0 / (1.0 + total).sqrt()).clamp(EXPLORE_MIN, EXPLORE_MAX);
    if unit(&mut rng) >= share {
        return Some(routes[best].provider.clone());
    }
    let others: Vec<usize> = (0..routes.len()).filter(|i| *i != best).collect();
    let weights: Vec<f64> = others.iter().map(|i| 1.0 / (1.0 + receipts[*i])).collect();
    let mut pick = unit(&mut rng) * weights.iter().sum::<f64>();
    for (i, w) in others.iter().zip(&weights) {
        if pick < *w {
            return Some(routes[*i].provider.clone());
        }
        pick -= w;
    }
    others.last().map(|i| routes[*i].provider.clone())
}

/// Orders routes as every ranking is ordered: highest `p_success` first,
/// ties by name (so equal probabilities rank alike everywhere).
pub fn rank(routes: &mut [crate::RankedRoute]) {
    routes.sort_by(|a, b| {
        b.p_success
            .total_cmp(&a.p_success)
            .then(a.provider.cmp(&b.provider))
    });
}

/// The index of the best route of `routes` (ranked by `p_success`): the first
/// with evidence, else the first.
pub fn best(routes: &[crate::RankedRoute], view: impl Fn(&str) -> RouteView) -> Option<usize> {
    if routes.is_empty() {
        return None;
    }
    Some(
        routes
            .iter()
            .position(|r| view(&r.provider).has_evidence())
            .unwrap_or(0),
    )
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
    fn exploration_is_budgeted_and_shrinks_with_evidence() {
        let routes = [
            crate::RankedRoute {
                provider: "best".into(),
                p_success: 0.85,
            },
            crate::RankedRoute {
                provider: "second".into(),
                p_success: 0.75,
            },
            crate::RankedRoute {
                provider: "third".into(),
                p_success: 0.70,
            },
        ];
        let picks = |evidence: &dyn Fn(&str) -> f64| {
            let mut n = std::collections::BTreeMap::new();
            for seed in 0..10_000u64 {
                *n.entry(choose(&routes, |p| view(evidence(p)), seed).unwrap())
                    .or_insert(0) += 1;
            }
            n
        };
        let cold = picks(&|_| 0.0);
        assert!(
            (1_700..2_300).contains(&(10_000 - cold["best"])),
            "20 % probes cold: {cold:?}"
        );
        let busy = picks(&|_| 3_000.0);
        let probes = 10_000 - busy["best"];
        assert!((50..160).contains(&probes), "~1 % once known: {busy:?}");
        // Probes prefer the route known least.
        let skewed = picks(&|p| if p == "third" { 0.0 } else { 400.0 });
        assert!(
            skewed["third"] > 10 * skewed.get("second").copied().unwrap_or(1),
            "{skewed:?}"
        );
        assert_eq!(
            choose(&routes, |_| view(5.0), 42),
            choose(&routes, |_| view(5.0), 42)
        );
        assert_eq!(choose(&[], |_| view(0.0), 1), None);
        // The top-ranked route without any receipt is not the best one while
        // another has evidence; it is still probed.
        let unknown_first = picks(&|p| if p == "best" { 0.0 } else { 400.0 });
        assert!(
            unknown_first["second"] > 9_500 && unknown_first.contains_key("best"),
            "{unknown_first:?}"
        );
    }

    /// Live statistics with `receipts` delivered in the last hour (and day).
    fn view(receipts: f64) -> RouteView {
        let mut v = RouteView::default();
        v.counts[1].delivered = receipts;
        v.counts[2].delivered = receipts;
        v
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
