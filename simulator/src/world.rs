//! The simulated world: countries, delivery providers, tenants, and how good each
//! provider is in each country at each instant (the ground truth the models chase).

use crate::rng::{Rng, trait_unit};

const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

pub struct Country {
    pub code: &'static str,
    pub calling_code: &'static str,
    /// Digits after the calling code.
    pub subscriber_digits: usize,
    pub utc_offset_h: i64,
    pub locale: &'static str,
    /// Share of legitimate users who enter the code once it arrives.
    pub conversion: f64,
    /// Typical SMS price (USD) on a mid-priced provider.
    pub price: f64,
}

pub const COUNTRIES: &[Country] = &[
    Country {
        code: "US",
        calling_code: "1",
        subscriber_digits: 10,
        utc_offset_h: -5,
        locale: "en-US",
        conversion: 0.93,
        price: 0.0079,
    },
    Country {
        code: "BR",
        calling_code: "55",
        subscriber_digits: 11,
        utc_offset_h: -3,
        locale: "pt-BR",
        conversion: 0.90,
        price: 0.0110,
    },
    Country {
        code: "MX",
        calling_code: "52",
        subscriber_digits: 10,
        utc_offset_h: -6,
        locale: "es-MX",
        conversion: 0.89,
        price: 0.0120,
    },
    Country {
        code: "GB",
        calling_code: "44",
        subscriber_digits: 10,
        utc_offset_h: 0,
        locale: "en-GB",
        conversion: 0.94,
        price: 0.0350,
    },
    Country {
        code: "FR",
        calling_code: "33",
        subscriber_digits: 9,
        utc_offset_h: 1,
        locale: "fr-FR",
        conversion: 0.93,
        price: 0.0700,
    },
    Country {
        code: "ES",
        calling_code: "34",
        subscriber_digits: 9,
        utc_offset_h: 1,
        locale: "es-ES",
        conversion: 0.92,
        price: 0.0650,
    },
    Country {
        code: "IN",
        calling_code: "91",
        subscriber_digits: 10,
        utc_offset_h: 5,
        locale: "en-IN",
        conversion: 0.86,
        price: 0.0040,
    },
    Country {
        code: "ID",
        calling_code: "62",
        subscriber_digits: 10,
        utc_offset_h: 7,
        locale: "id-ID",
        conversion: 0.85,
        price: 0.0300,
    },
    Country {
        code: "NG",
        calling_code: "234",
        subscriber_digits: 10,
        utc_offset_h: 1,
        locale: "en-NG",
        conversion: 0.82,
        price: 0.0450,
    },
    Country {
        code: "EG",
        calling_code: "20",
        subscriber_digits: 10,
        utc_offset_h: 2,
        locale: "ar-EG",
        conversion: 0.84,
        price: 0.0500,
    },
    // Destinations favoured by SMS pumping: high termination rates, little real traffic.
    Country {
        code: "LV",
        calling_code: "371",
        subscriber_digits: 8,
        utc_offset_h: 2,
        locale: "lv-LV",
        conversion: 0.90,
        price: 0.0900,
    },
    Country {
        code: "UZ",
        calling_code: "998",
        subscriber_digits: 9,
        utc_offset_h: 5,
        locale: "uz-UZ",
        conversion: 0.85,
        price: 0.2100,
    },
    Country {
        code: "GN",
        calling_code: "224",
        subscriber_digits: 9,
        utc_offset_h: 0,
        locale: "fr-GN",
        conversion: 0.80,
        price: 0.1800,
    },
    Country {
        code: "KG",
        calling_code: "996",
        subscriber_digits: 9,
        utc_offset_h: 6,
        locale: "ky-KG",
        conversion: 0.82,
        price: 0.1500,
    },
];

/// Indices into [`COUNTRIES`] that pumping attacks target.
pub const PUMPING_TARGETS: &[usize] = &[10, 11, 12, 13];

pub const PROVIDERS: &[&str] = &["twilio", "sinch", "infobip", "vonage", "messagebird"];

pub struct Tenant {
    pub id: &'static str,
    /// Share of all legitimate traffic.
    pub weight: f64,
    /// (country index, weight) of its users.
    pub countries: &'static [(usize, f64)],
    /// Hour of local day when its traffic peaks (shapes the diurnal curve).
    pub peak_hour: f64,
    /// How strongly traffic follows the day (0 = flat, 1 = near zero at night).
    pub diurnal_depth: f64,
    /// Static routing preference: weight per provider (the baseline router).
    pub provider_weights: &'static [f64],
    pub services: &'static [&'static str],
}

pub const TENANTS: &[Tenant] = &[
    Tenant {
        id: "acme-bank",
        weight: 0.40,
        countries: &[(0, 0.35), (1, 0.30), (2, 0.20), (3, 0.10), (4, 0.05)],
        peak_hour: 11.0,
        diurnal_depth: 0.85,
        provider_weights: &[0.5, 0.2, 0.2, 0.1, 0.0],
        services: &["login", "payment", "signup"],
    },
    Tenant {
        id: "shopfast",
        weight: 0.35,
        // A little real traffic to destinations pumping favours too: traffic
        // there is not fraud by itself.
        countries: &[
            (1, 0.25),
            (2, 0.15),
            (5, 0.15),
            (4, 0.10),
            (6, 0.15),
            (7, 0.10),
            (3, 0.10),
            (10, 0.01),
            (13, 0.01),
        ],
        peak_hour: 20.0,
        diurnal_depth: 0.7,
        provider_weights: &[0.2, 0.2, 0.2, 0.2, 0.2],
        services: &["signup", "login", "checkout"],
    },
    Tenant {
        id: "ridego",
        weight: 0.25,
        countries: &[
            (6, 0.35),
            (7, 0.25),
            (8, 0.20),
            (9, 0.15),
            (0, 0.05),
            (11, 0.01),
            (12, 0.01),
        ],
        peak_hour: 8.5,
        diurnal_depth: 0.6,
        provider_weights: &[0.1, 0.3, 0.4, 0.1, 0.1],
        services: &["login", "ride"],
    },
];

/// Which world a simulation runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorldKind {
    /// The fixed world: the countries above, five providers, three tenants.
    #[default]
    Standard,
    /// A world drawn for the seed from family `family`. A family fixes the
    /// ranges everything is drawn from (how many providers and how good,
    /// how dense the number plan, how long outages last, how much users
    /// convert, how many tenants and where); the seed draws one world in
    /// them. Train on some families, judge on others.
    Varied { family: u64 },
}

impl std::fmt::Display for WorldKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorldKind::Standard => f.write_str("standard"),
            WorldKind::Varied { family } => write!(f, "varied:{family}"),
        }
    }
}

impl std::str::FromStr for WorldKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "standard" => Ok(WorldKind::Standard),
            Some(("varied", n)) => n
                .parse()
                .map(|family| WorldKind::Varied { family })
                .map_err(|_| format!("`{n}` is not a world family number (varied:<0..>)")),
            _ => Err(format!("`{s}` is not a world: standard or varied:<family>")),
        }
    }
}

/// A tenant of a world.
#[derive(Debug, Clone)]
pub struct TenantSpec {
    pub id: String,
    pub weight: f64,
    pub countries: Vec<(usize, f64)>,
    pub peak_hour: f64,
    pub diurnal_depth: f64,
    /// Indexed like [`World::providers`].
    pub provider_weights: Vec<f64>,
    pub services: Vec<&'static str>,
    /// Distinct returning users per country.
    pub population: f64,
}

/// How legitimate users' numbers fill a country's plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NumberPlan {
    /// Every subscriber digit drawn (users' numbers rarely share a prefix).
    Spread,
    /// Numbers sit in `blocks` ranges of 10⁴ (the operators' allocations):
    /// legitimate neighbours share a prefix, as in a dense plan.
    Blocks { blocks: u64 },
}

/// The ranges route quality is drawn from: `(lowest, highest)`, except the
/// per-route traits `base`, `drift_period_hours` and `latency_ms`, which are
/// `(lowest, spread)` (drawn as `lowest + spread × u`).
#[derive(Debug, Clone, PartialEq)]
pub struct QualityRanges {
    pub base: (f64, f64),
    pub outage_minutes: (f64, f64),
    pub degradation_ramp_minutes: (f64, f64),
    pub degradation_hold_minutes: (f64, f64),
    pub degradation_floor: (f64, f64),
    pub drift_period_hours: (f64, f64),
    pub latency_ms: (f64, f64),
}

impl QualityRanges {
    fn standard() -> QualityRanges {
        QualityRanges {
            base: (0.70, 0.27),
            outage_minutes: (8.0, 40.0),
            degradation_ramp_minutes: (10.0, 60.0),
            degradation_hold_minutes: (30.0, 180.0),
            degradation_floor: (0.35, 0.65),
            drift_period_hours: (4.0, 44.0),
            latency_ms: (1_500.0, 9_000.0),
        }
    }
}

/// Everything that is fixed about a simulated world.
#[derive(Debug, Clone)]
pub struct World {
    pub providers: Vec<String>,
    pub tenants: Vec<TenantSpec>,
    /// Indices into [`COUNTRIES`] that pumping attacks target.
    pub pumping_targets: Vec<usize>,
    /// Multiplies every country's conversion (how many users enter the code).
    pub conversion_scale: f64,
    pub number_plan: NumberPlan,
    pub quality: QualityRanges,
}

const NAME_HEADS: &[&str] = &[
    "tele", "voxa", "nexo", "sms", "quanto", "bolt", "ora", "zeni", "kappa", "lumen", "pulse",
    "astra", "orbi", "nimbus", "fjord", "tundra", "delta", "rio", "sol", "kite",
];
const NAME_TAILS: &[&str] = &[
    "link", "cast", "route", "tel", "wave", "net", "hub", "gate", "mobile",
];
const SERVICE_POOL: &[&str] = &[
    "login", "signup", "payment", "checkout", "ride", "reset", "transfer", "delivery",
];

impl World {
    pub fn new(kind: WorldKind, seed: u64) -> World {
        match kind {
            WorldKind::Standard => World::standard(),
            WorldKind::Varied { family } => World::varied(family, seed),
        }
    }

    fn standard() -> World {
        World {
            providers: PROVIDERS.iter().map(|p| (*p).to_owned()).collect(),
            tenants: TENANTS
                .iter()
                .map(|t| TenantSpec {
                    id: t.id.to_owned(),
                    weight: t.weight,
                    countries: t.countries.to_vec(),
                    peak_hour: t.peak_hour,
                    diurnal_depth: t.diurnal_depth,
                    provider_weights: t.provider_weights.to_vec(),
                    services: t.services.to_vec(),
                    population: 50_000.0,
                })
                .collect(),
            pumping_targets: PUMPING_TARGETS.to_vec(),
            conversion_scale: 1.0,
            number_plan: NumberPlan::Spread,
            quality: QualityRanges::standard(),
        }
    }

    fn varied(family: u64, seed: u64) -> World {
        // The family's ranges first (from the family alone), then this
        // world inside them (from the family and the seed).
        let mut f = Rng::derive(family, "world-family");
        let providers_range = (f.int(2, 4), f.int(5, 9));
        let base_lo = f.between(0.45, 0.72);
        let base_hi = (base_lo + f.between(0.15, 0.45)).min(0.98);
        let outage_lo = f.between(2.0, 15.0);
        let ramp_lo = f.between(3.0, 30.0);
        let hold_lo = f.between(10.0, 90.0);
        let floor_lo = f.between(0.15, 0.5);
        let period_lo = f.between(0.5, 8.0);
        let conversion_lo = f.between(0.65, 0.95);
        let dense = f.chance(0.7);
        let blocks_range = (f.int(10, 200), f.int(300, 3_000));
        let tenants_range = (f.int(1, 3), f.int(3, 7));
        let quality = QualityRanges {
            base: (base_lo, base_hi - base_lo),
            outage_minutes: (outage_lo, outage_lo + f.between(5.0, 80.0)),
            degradation_ramp_minutes: (ramp_lo, ramp_lo + f.between(5.0, 90.0)),
            degradation_hold_minutes: (hold_lo, hold_lo + f.between(20.0, 300.0)),
            degradation_floor: (floor_lo, (floor_lo + f.between(0.1, 0.4)).min(0.9)),
            drift_period_hours: (period_lo, f.between(2.0, 72.0)),
            latency_ms: (f.between(300.0, 3_000.0), f.between(2_000.0, 15_000.0)),
        };
        let mut w = Rng::derive(seed ^ family.rotate_left(29), "world");
        let n_providers = w.int(providers_range.0, providers_range.1) as usize;
        let mut providers: Vec<String> = Vec::new();
        while providers.len() < n_providers {
            let name = format!(
                "{}{}",
                NAME_HEADS[w.index(NAME_HEADS.len())],
                NAME_TAILS[w.index(NAME_TAILS.len())]
            );
            if !providers.contains(&name) && !PROVIDERS.contains(&name.as_str()) {
                providers.push(name);
            }
        }
        // Countries that carry real traffic, and the pumping destinations.
        let ordinary: Vec<usize> = (0..COUNTRIES.len())
            .filter(|c| !PUMPING_TARGETS.contains(c))
            .collect();
        let mut pumping_targets: Vec<usize> = PUMPING_TARGETS
            .iter()
            .copied()
            .filter(|_| w.chance(0.75))
            .collect();
        if pumping_targets.is_empty() {
            pumping_targets.push(PUMPING_TARGETS[w.index(PUMPING_TARGETS.len())]);
        }
        let n_tenants = w.int(tenants_range.0, tenants_range.1) as usize;
        let tenants = (0..n_tenants)
            .map(|i| {
                let mut countries: Vec<(usize, f64)> = Vec::new();
                for _ in 0..w.int(1, 6) {
                    let c = ordinary[w.index(ordinary.len())];
                    if !countries.iter().any(|(k, _)| *k == c) {
                        countries.push((c, w.between(0.05, 1.0)));
                    }
                }
                if w.chance(0.5) {
                    let c = pumping_targets[w.index(pumping_targets.len())];
                    countries.push((c, 0.01));
                }
                let provider_weights = (0..providers.len())
                    .map(|_| if w.chance(0.2) { 0.0 } else { w.unit() })
                    .collect();
                let services = (0..w.int(1, 4))
                    .map(|_| SERVICE_POOL[w.index(SERVICE_POOL.len())])
                    .collect();
                TenantSpec {
                    id: format!("tenant-{family}-{i}"),
                    weight: w.between(0.05, 1.0),
                    countries,
                    peak_hour: w.between(0.0, 24.0),
                    diurnal_depth: w.between(0.2, 0.9),
                    provider_weights,
                    services,
                    population: w.between(2_000.0, 200_000.0),
                }
            })
            .collect();
        World {
            providers,
            tenants,
            pumping_targets,
            conversion_scale: w.between(conversion_lo, (conversion_lo + 0.1).min(1.0)),
            number_plan: if dense {
                NumberPlan::Blocks {
                    blocks: w.int(blocks_range.0, blocks_range.1) as u64,
                }
            } else {
                NumberPlan::Spread
            },
            quality,
        }
    }
}

/// Traffic multiplier in [1 - depth, 1] for a local hour.
pub fn diurnal(local_hour: f64, peak_hour: f64, depth: f64) -> f64 {
    let phase = (local_hour - peak_hour) / 24.0 * std::f64::consts::TAU;
    1.0 - depth * (1.0 - phase.cos()) / 2.0
}

pub fn local_hour(t: i64, country: &Country) -> f64 {
    let ms = t + country.utc_offset_h * HOUR_MS;
    (ms.rem_euclid(24 * HOUR_MS)) as f64 / HOUR_MS as f64
}

/// An interval during which a provider barely delivers to a country.
#[derive(Debug, Clone, Copy)]
pub struct Outage {
    pub start: i64,
    pub end: i64,
}

/// A slow slide of a route's quality and its recovery: down to `floor` × its
/// usual level over `ramp`, held there for `hold`, back up over `ramp`. Unlike an
/// outage, the route still delivers most messages while it degrades: the live
/// statistics must notice a trend, not a collapse.
#[derive(Debug, Clone, Copy)]
pub struct Degradation {
    pub start: i64,
    pub ramp: i64,
    pub hold: i64,
    pub floor: f64,
}

impl Degradation {
    /// The multiplier on the route's quality at `t` (1 outside the episode).
    fn factor(&self, t: i64) -> f64 {
        let s = (t - self.start) as f64;
        let (ramp, hold) = (self.ramp.max(1) as f64, self.hold as f64);
        let depth = 1.0 - self.floor;
        if s < 0.0 || s >= 2.0 * ramp + hold {
            1.0
        } else if s < ramp {
            1.0 - depth * s / ramp
        } else if s < ramp + hold {
            self.floor
        } else {
            self.floor + depth * (s - ramp - hold) / ramp
        }
    }
}

/// How providers behave over time; the defaults are [`SimConfig`](crate::SimConfig)'s.
#[derive(Debug, Clone, PartialEq)]
pub struct Dynamics {
    /// Hard outages (3 % delivered, 8–40 min) per simulated day, fleet-wide.
    pub outages_per_day: f64,
    /// Slow degradations (to 35–65 % of normal over 10–60 min, held 30 min–3 h)
    /// per simulated day, fleet-wide.
    pub degradations_per_day: f64,
    /// Multiplies each route's slow drift (its amplitude is 0.03–0.12 at 1).
    pub drift_scale: f64,
}

/// Per (country, provider) delivery quality: a base level, slow drift, a dip when
/// the destination is busiest, degradations and outages. Fixed for a seed.
pub struct RouteQuality {
    base: f64,
    drift_amplitude: f64,
    drift_period_ms: f64,
    drift_phase: f64,
    latency_median_ms: f64,
    price_factor: f64,
    outages: Vec<Outage>,
    degradations: Vec<Degradation>,
}

pub struct Quality {
    /// Indexed `[country][provider]`.
    routes: Vec<Vec<RouteQuality>>,
}

impl Quality {
    /// Outages and degradations are scheduled from `start` to `horizon` (exclusive).
    pub fn new(seed: u64, start: i64, horizon: i64, dynamics: &Dynamics, world: &World) -> Self {
        let q = &world.quality;
        // Each pair gets its share of the fleet-wide rates.
        let pairs = (COUNTRIES.len() * world.providers.len()) as f64;
        let mean_gap = |per_day: f64| 24.0 * HOUR_MS as f64 * pairs / per_day.max(1e-9);
        let routes = COUNTRIES
            .iter()
            .map(|c| {
                world
                    .providers
                    .iter()
                    .map(|p| {
                        let name = format!("route/{}/{}", c.code, p);
                        let u = |k: &str| trait_unit(seed, &format!("{name}/{k}"));
                        let mut rng = Rng::derive(seed, &format!("{name}/outages"));
                        let mut outages = Vec::new();
                        let gap = mean_gap(dynamics.outages_per_day);
                        let mut t = start as f64 + rng.exponential(gap);
                        while (t as i64) < horizon {
                            let (lo, hi) = q.outage_minutes;
                            let len = rng.between(lo, hi) * MINUTE_MS as f64;
                            outages.push(Outage {
                                start: t as i64,
                                end: (t + len) as i64,
                            });
                            t += len + rng.exponential(gap);
                        }
                        // Its own stream: adding degradations leaves the outages alone.
                        let mut rng = Rng::derive(seed, &format!("{name}/degradations"));
                        let mut degradations = Vec::new();
                        let gap = mean_gap(dynamics.degradations_per_day);
                        let mut t = start as f64 + rng.exponential(gap);
                        while (t as i64) < horizon {
                            let (ramp, hold, floor) = (
                                q.degradation_ramp_minutes,
                                q.degradation_hold_minutes,
                                q.degradation_floor,
                            );
                            let d = Degradation {
                                start: t as i64,
                                ramp: (rng.between(ramp.0, ramp.1) * MINUTE_MS as f64) as i64,
                                hold: (rng.between(hold.0, hold.1) * MINUTE_MS as f64) as i64,
                                floor: rng.between(floor.0, floor.1),
                            };
                            t += (2 * d.ramp + d.hold) as f64 + rng.exponential(gap);
                            degradations.push(d);
                        }
                        let span = |(lo, spread): (f64, f64), x: f64| lo + spread * x;
                        RouteQuality {
                            base: span(q.base, u("base")),
                            drift_amplitude: (0.03 + 0.09 * u("drift")) * dynamics.drift_scale,
                            drift_period_ms: span(q.drift_period_hours, u("period"))
                                * HOUR_MS as f64,
                            drift_phase: std::f64::consts::TAU * u("phase"),
                            latency_median_ms: span(q.latency_ms, u("latency")),
                            price_factor: 0.7 + 0.6 * u("price"),
                            outages,
                            degradations,
                        }
                    })
                    .collect()
            })
            .collect();
        Quality { routes }
    }

    /// True probability that a message sent now via `provider` reaches the handset.
    pub fn delivery_probability(&self, country: usize, provider: usize, t: i64) -> f64 {
        let r = &self.routes[country][provider];
        if r.outages.iter().any(|o| o.start <= t && t < o.end) {
            return 0.03;
        }
        let drift = r.drift_amplitude
            * ((t as f64 / r.drift_period_ms) * std::f64::consts::TAU + r.drift_phase).sin();
        let busy = diurnal(local_hour(t, &COUNTRIES[country]), 19.0, 1.0);
        let degraded: f64 = r.degradations.iter().map(|d| d.factor(t)).product();
        ((r.base + drift - 0.06 * busy) * degraded).clamp(0.01, 0.99)
    }

    pub fn latency_median_ms(&self, country: usize, provider: usize) -> f64 {
        self.routes[country][provider].latency_median_ms
    }

    pub fn price(&self, country: usize, provider: usize) -> f64 {
        COUNTRIES[country].price * self.routes[country][provider].price_factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_degradation_slides_down_holds_and_recovers() {
        let d = Degradation {
            start: 1_000,
            ramp: 100,
            hold: 300,
            floor: 0.4,
        };
        assert_eq!(d.factor(999), 1.0);
        assert!((d.factor(1_050) - 0.7).abs() < 1e-9, "half way down");
        assert_eq!(d.factor(1_100), 0.4);
        assert_eq!(d.factor(1_399), 0.4);
        assert!((d.factor(1_450) - 0.7).abs() < 1e-9, "half way back");
        assert_eq!(d.factor(1_500), 1.0);
    }

    #[test]
    fn degraded_routes_deliver_less_and_outages_leave_the_schedule_alone() {
        let day = 24 * HOUR_MS;
        let calm = Dynamics {
            outages_per_day: 20.0,
            degradations_per_day: 0.0,
            drift_scale: 1.0,
        };
        let rough = Dynamics {
            degradations_per_day: 200.0,
            ..calm.clone()
        };
        let world = World::new(WorldKind::Standard, 5);
        let (a, b) = (
            Quality::new(5, 0, day, &calm, &world),
            Quality::new(5, 0, day, &rough, &world),
        );
        let (mut lower, mut higher) = (0, 0);
        for c in 0..COUNTRIES.len() {
            for p in 0..PROVIDERS.len() {
                assert_eq!(a.routes[c][p].outages.len(), b.routes[c][p].outages.len());
                for t in (0..day).step_by(600_000) {
                    let (x, y) = (
                        a.delivery_probability(c, p, t),
                        b.delivery_probability(c, p, t),
                    );
                    lower += usize::from(y < x - 1e-12);
                    higher += usize::from(y > x + 1e-12);
                }
            }
        }
        assert!(lower > 100, "{lower} route-instants degraded");
        assert_eq!(higher, 0, "a degradation never improves a route");
    }
}
