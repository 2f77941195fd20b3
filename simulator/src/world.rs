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
    pub fn new(seed: u64, start: i64, horizon: i64, dynamics: &Dynamics) -> Self {
        // Each pair gets its share of the fleet-wide rates.
        let pairs = (COUNTRIES.len() * PROVIDERS.len()) as f64;
        let mean_gap = |per_day: f64| 24.0 * HOUR_MS as f64 * pairs / per_day.max(1e-9);
        let routes = COUNTRIES
            .iter()
            .map(|c| {
                PROVIDERS
                    .iter()
                    .map(|p| {
                        let name = format!("route/{}/{}", c.code, p);
                        let u = |k: &str| trait_unit(seed, &format!("{name}/{k}"));
                        let mut rng = Rng::derive(seed, &format!("{name}/outages"));
                        let mut outages = Vec::new();
                        let gap = mean_gap(dynamics.outages_per_day);
                        let mut t = start as f64 + rng.exponential(gap);
                        while (t as i64) < horizon {
                            let len = rng.between(8.0, 40.0) * MINUTE_MS as f64;
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
                            let d = Degradation {
                                start: t as i64,
                                ramp: (rng.between(10.0, 60.0) * MINUTE_MS as f64) as i64,
                                hold: (rng.between(30.0, 180.0) * MINUTE_MS as f64) as i64,
                                floor: rng.between(0.35, 0.65),
                            };
                            t += (2 * d.ramp + d.hold) as f64 + rng.exponential(gap);
                            degradations.push(d);
                        }
                        RouteQuality {
                            base: 0.70 + 0.27 * u("base"),
                            drift_amplitude: (0.03 + 0.09 * u("drift")) * dynamics.drift_scale,
                            drift_period_ms: (4.0 + 44.0 * u("period")) * HOUR_MS as f64,
                            drift_phase: std::f64::consts::TAU * u("phase"),
                            latency_median_ms: 1_500.0 + 9_000.0 * u("latency"),
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
        let (a, b) = (
            Quality::new(5, 0, day, &calm),
            Quality::new(5, 0, day, &rough),
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
