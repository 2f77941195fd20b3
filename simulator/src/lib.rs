//! A seeded, deterministic simulator of verification traffic, with ground truth.
//!
//! It produces the contract's lifecycle events (§1) in *arrival* order: receipts and
//! approvals arrive late and out of order, some events twice. Beside them it produces
//! one [`Truth`] record per verification (the real outcome, whether it was fraud, and
//! each provider's true success probability at that moment) so tests and training can
//! score the engine against what really happened.
//!
//! Guarantee: no event arrives more than [`SimConfig::max_arrival_delay_ms`] after it
//! occurred, so an engine whose allowed lateness is at least that sees nothing late.
//! Same seed and config, same bytes.

mod rng;
pub mod world;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use rng::Rng;
pub use world::WorldKind;
use world::{COUNTRIES, Dynamics, NumberPlan, Quality, World, diurnal, local_hour};

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Event time of the first request, ms since the epoch.
    pub start: i64,
    /// Span of simulated request times; `None` runs forever.
    pub duration_ms: Option<i64>,
    /// Mean verification requests per simulated second (legitimate and fraud).
    pub rate: f64,
    /// Share of verifications that are SMS-pumping attack traffic.
    pub fraud_share: f64,
    /// Share of events delivered twice (same `event_id`, same bytes).
    pub duplicate_share: f64,
    /// Upper bound on arrival delay after the event occurred.
    pub max_arrival_delay_ms: i64,
    /// Verification TTL used to decide the true outcome.
    pub ttl_ms: i64,
    /// Provider outages per simulated day, across all countries and providers.
    pub outages_per_day: f64,
    /// Slow provider degradations per simulated day, fleet-wide.
    pub degradations_per_day: f64,
    /// Multiplies the slow drift of every route's quality.
    pub drift_scale: f64,
    /// The attack shapes pumping traffic is drawn from (uniformly per attack).
    pub attack_shapes: Vec<AttackShape>,
    /// Share of events followed by an extra malformed message (bad JSON, unknown
    /// type, missing field, bad timestamp, not an object). Not part of the truth.
    pub malformed_share: f64,
    /// The world: the fixed one, or one drawn from a family for the seed.
    pub world: WorldKind,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            start: 1_767_571_200_000, // 2026-01-05T00:00:00Z
            duration_ms: Some(10 * 60_000),
            rate: 20.0,
            fraud_share: 0.02,
            duplicate_share: 0.01,
            max_arrival_delay_ms: 60_000,
            ttl_ms: 600_000,
            outages_per_day: 8.0,
            degradations_per_day: 4.0,
            drift_scale: 1.0,
            attack_shapes: AttackShape::STANDARD.to_vec(),
            malformed_share: 0.0,
            world: WorldKind::Standard,
        }
    }
}

/// How an SMS-pumping attack picks its numbers and where it comes from. Real
/// attacks vary along these lines; a model trained on one shape and judged on
/// another tells whether it learned pumping or one attacker's habits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttackShape {
    /// The classic: a sequential sweep through one premium-rate number range,
    /// from a pool of datacenter IPs, with a scripting client's user agent.
    Sweep,
    /// Random numbers across several ranges of one destination (premium, or
    /// one of the tenant's own countries), from many residential-looking IPs
    /// with browser user agents, the destination's locale and a fresh device
    /// each time.
    Scatter,
    /// One bot (an IP or two, one device) requesting random numbers in several
    /// premium destinations.
    SingleSource,
    /// Low and slow: a request every ten seconds or so for up to two hours,
    /// random numbers across a destination's ranges, a fresh proxy IP and a
    /// browser user agent each time.
    Trickle,
    /// Looks like the tenant's own users: numbers in the blocks its users
    /// sit in (the destination's number plan), addresses from the same
    /// residential pools, browser user agents, the destination's locale,
    /// a user id and the tenant's services, at a legitimate pace.
    Mimicry,
    /// A slow spread over a range of destinations: a few hours, several
    /// countries (premium and the tenant's own), many ranges in each, a
    /// fresh proxy address per request.
    SlowSpread,
}

impl AttackShape {
    pub const ALL: [AttackShape; 6] = [
        AttackShape::Sweep,
        AttackShape::Scatter,
        AttackShape::SingleSource,
        AttackShape::Trickle,
        AttackShape::Mimicry,
        AttackShape::SlowSpread,
    ];
    /// The shapes drawn from by default (the newer ones are opt-in, so the
    /// default stream stays the same bytes).
    pub const STANDARD: [AttackShape; 4] = [
        AttackShape::Sweep,
        AttackShape::Scatter,
        AttackShape::SingleSource,
        AttackShape::Trickle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AttackShape::Sweep => "sweep",
            AttackShape::Scatter => "scatter",
            AttackShape::SingleSource => "single-source",
            AttackShape::Trickle => "trickle",
            AttackShape::Mimicry => "mimicry",
            AttackShape::SlowSpread => "slow-spread",
        }
    }
}

impl std::str::FromStr for AttackShape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AttackShape::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = AttackShape::ALL.iter().map(|a| a.name()).collect();
                format!("`{s}` is not an attack shape ({})", names.join(", "))
            })
    }
}

/// One message to produce: the key is the tenant id, as the contract requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvent {
    /// When the message reaches the broker (simulated time, ms).
    pub arrival: i64,
    pub key: String,
    pub payload: Vec<u8>,
}

/// What really happened to one verification (the one truth type, shared
/// with training, which reads it back).
pub use veriflow_common::truth::TruthRecord as Truth;

pub enum SimItem {
    Event(SimEvent),
    /// Boxed: a truth is several times an event's size, and rarer.
    Truth(Box<Truth>),
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    arrival: i64,
    seq: u64,
    key: String,
    payload: Vec<u8>,
}

struct Attack {
    shape: AttackShape,
    tenant: usize,
    /// Number ranges: (destination, the number minus its last
    /// [`ATTACK_NUMBER_WIDTH`] digits).
    ranges: Vec<(usize, String)>,
    /// The sweep's position in its range.
    next_number: u64,
    next_at: f64,
    end_at: f64,
    mean_gap_ms: f64,
    /// The IPs it rotates through; empty: a fresh one per request.
    ips: Vec<String>,
    /// Its one device, if it keeps one.
    device: Option<String>,
    /// A scripting client's user agent; `None`: a browser's, per request.
    user_agent: Option<&'static str>,
    /// Addresses, user ids and services like the tenant's own users'.
    mimic: bool,
}

/// Attacks vary the last this many digits of a number.
const ATTACK_NUMBER_WIDTH: usize = 4;

const BOT_USER_AGENTS: [&str; 3] = [
    "okhttp/4.9.0",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
];

const BROWSER_USER_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)",
    "Mozilla/5.0 (Linux; Android 14)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
];

pub struct Simulator {
    cfg: SimConfig,
    world: World,
    rng: Rng,
    quality: Quality,
    end: f64,
    next_legit_at: f64,
    legit_candidate_gap_ms: f64,
    next_attack_start: f64,
    attack_gap_ms: f64,
    attacks: Vec<Attack>,
    pending: BinaryHeap<Reverse<Pending>>,
    truths: VecDeque<Box<Truth>>,
    seq: u64,
    verifications: u64,
}

const MEAN_DIURNAL: f64 = 0.62;

impl Simulator {
    pub fn new(cfg: SimConfig) -> Self {
        let mut rng = Rng::seeded(cfg.seed);
        let end = cfg
            .duration_ms
            .map_or(f64::INFINITY, |d| (cfg.start + d) as f64);
        let horizon = cfg.start + cfg.duration_ms.unwrap_or(30 * 86_400_000) + 86_400_000;
        let world = World::new(cfg.world, cfg.seed);
        let quality = Quality::new(
            cfg.seed,
            cfg.start,
            horizon,
            &Dynamics {
                outages_per_day: cfg.outages_per_day,
                degradations_per_day: cfg.degradations_per_day,
                drift_scale: cfg.drift_scale,
            },
            &world,
        );
        let legit_rate = cfg.rate * (1.0 - cfg.fraud_share);
        let legit_candidate_gap_ms = 1000.0 * MEAN_DIURNAL / legit_rate.max(1e-9);
        // An attack lasts ~3 min at ~25 % of the normal rate: size ≈ 45 s × rate.
        let fraud_rate = cfg.rate * cfg.fraud_share;
        let attack_gap_ms = if fraud_rate > 0.0 {
            1000.0 * 45.0 * cfg.rate / fraud_rate
        } else {
            f64::INFINITY
        };
        let start = cfg.start as f64;
        let next_legit_at = start + rng.exponential(legit_candidate_gap_ms);
        let next_attack_start = start + rng.exponential(attack_gap_ms);
        Simulator {
            cfg,
            world,
            rng,
            quality,
            end,
            next_legit_at,
            legit_candidate_gap_ms,
            next_attack_start,
            attack_gap_ms,
            attacks: Vec::new(),
            pending: BinaryHeap::new(),
            truths: VecDeque::new(),
            seq: 0,
            verifications: 0,
        }
    }

    /// The next event in arrival order, or a ground-truth record; `None` at the end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<SimItem> {
        loop {
            if let Some(truth) = self.truths.pop_front() {
                return Some(SimItem::Truth(truth));
            }
            let next_request = self.next_request_time();
            if let Some(Reverse(p)) = self.pending.peek()
                && (p.arrival as f64) <= next_request
            {
                let Reverse(p) = self.pending.pop()?;
                return Some(SimItem::Event(SimEvent {
                    arrival: p.arrival,
                    key: p.key,
                    payload: p.payload,
                }));
            }
            if next_request.is_infinite() {
                return None;
            }
            self.generate_next_request();
        }
    }

    fn next_request_time(&self) -> f64 {
        let attack = self
            .attacks
            .iter()
            .map(|a| a.next_at)
            .fold(f64::INFINITY, f64::min);
        let t = self.next_legit_at.min(attack).min(self.next_attack_start);
        if t >= self.end { f64::INFINITY } else { t }
    }

    fn generate_next_request(&mut self) {
        let attack_idx = self
            .attacks
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.next_at.total_cmp(&b.1.next_at))
            .map(|(i, a)| (i, a.next_at));
        let legit_at = self.next_legit_at;
        match attack_idx {
            Some((i, at)) if at <= legit_at && at <= self.next_attack_start => {
                self.fraud_request(i, at as i64);
                let gap = self.rng.exponential(self.attacks[i].mean_gap_ms);
                self.attacks[i].next_at += gap;
                if self.attacks[i].next_at >= self.attacks[i].end_at {
                    self.attacks.swap_remove(i);
                }
            }
            _ if self.next_attack_start <= legit_at => {
                let at = self.next_attack_start;
                self.start_attack(at);
                self.next_attack_start = at + self.rng.exponential(self.attack_gap_ms);
            }
            _ => {
                self.next_legit_at += self.rng.exponential(self.legit_candidate_gap_ms);
                self.legit_request(legit_at as i64);
            }
        }
    }

    fn start_attack(&mut self, at: f64) {
        let rng = &mut self.rng;
        let world = &self.world;
        let tenant = rng.weighted(&world.tenants.iter().map(|t| t.weight).collect::<Vec<_>>());
        let shape = match self.cfg.attack_shapes.len() {
            0 => AttackShape::Sweep,
            n => self.cfg.attack_shapes[rng.index(n)],
        };
        let targets = &world.pumping_targets;
        let premium = |rng: &mut Rng| targets[rng.index(targets.len())];
        let range = |rng: &mut Rng, country: usize| {
            let c = &COUNTRIES[country];
            let mut prefix = format!("+{}{}", c.calling_code, rng.int(2, 9));
            for _ in 1..c.subscriber_digits - ATTACK_NUMBER_WIDTH {
                prefix.push(char::from(b'0' + rng.int(0, 9) as u8));
            }
            (country, prefix)
        };
        // Half the time a destination the tenant really serves.
        let own = &world.tenants[tenant].countries;
        let own_or_premium = |rng: &mut Rng| {
            if rng.chance(0.5) {
                own[rng.index(own.len())].0
            } else {
                premium(rng)
            }
        };
        // Sizes keep each shape's share of pumping traffic comparable: an
        // attack sends ~45 s × rate requests on average, whatever its shape.
        let rate = self.cfg.rate;
        // The slow shapes send ~45 s × rate requests spread over their duration.
        let spread_over = |duration_ms: f64| 45.0 * rate / (duration_ms / 1000.0);
        let (ranges, ips, device, user_agent, rate_per_s, duration_ms) = match shape {
            AttackShape::Sweep => {
                let country = premium(rng);
                let ips = (0..rng.int(8, 40)).map(|_| datacenter_ip(rng)).collect();
                (
                    vec![range(rng, country)],
                    ips,
                    None,
                    Some(BOT_USER_AGENTS[rng.index(3)]),
                    rate * rng.between(0.1, 0.4),
                    rng.between(60_000.0, 300_000.0),
                )
            }
            AttackShape::Scatter => {
                let country = own_or_premium(rng);
                let ranges = (0..rng.int(3, 8)).map(|_| range(rng, country)).collect();
                let ips = (0..rng.int(40, 200)).map(|_| residential_ip(rng)).collect();
                (
                    ranges,
                    ips,
                    None,
                    None,
                    rate * rng.between(0.05, 0.15),
                    rng.between(240_000.0, 900_000.0),
                )
            }
            AttackShape::SingleSource => {
                let ranges = (0..rng.int(2, 4))
                    .map(|_| {
                        let country = premium(rng);
                        range(rng, country)
                    })
                    .collect();
                let ips = (0..rng.int(1, 2)).map(|_| datacenter_ip(rng)).collect();
                (
                    ranges,
                    ips,
                    Some(format!("d-{:012x}", rng.next_u64() >> 16)),
                    Some(BOT_USER_AGENTS[rng.index(3)]),
                    rate * rng.between(0.1, 0.3),
                    rng.between(60_000.0, 240_000.0),
                )
            }
            AttackShape::Trickle => {
                let country = own_or_premium(rng);
                let ranges = (0..rng.int(5, 20)).map(|_| range(rng, country)).collect();
                let duration_ms = rng.between(1_800_000.0, 7_200_000.0);
                (
                    ranges,
                    Vec::new(),
                    None,
                    None,
                    spread_over(duration_ms),
                    duration_ms,
                )
            }
            AttackShape::Mimicry => {
                // One of the tenant's own destinations (by its traffic), in its users' blocks.
                let weights: Vec<f64> = own.iter().map(|(_, w)| *w).collect();
                let country = own[rng.weighted(&weights)].0;
                let ranges = (0..rng.int(2, 12))
                    .map(|_| {
                        let user = rng.next_u64();
                        (
                            country,
                            number_block(&COUNTRIES[country], user, world.number_plan),
                        )
                    })
                    .collect();
                let duration_ms = rng.between(600_000.0, 2_400_000.0);
                (
                    ranges,
                    Vec::new(),
                    None,
                    None,
                    spread_over(duration_ms),
                    duration_ms,
                )
            }
            AttackShape::SlowSpread => {
                let ranges = (0..rng.int(3, 6))
                    .flat_map(|_| {
                        let country = own_or_premium(rng);
                        (0..rng.int(2, 5))
                            .map(|_| range(rng, country))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let duration_ms = rng.between(7_200_000.0, 21_600_000.0);
                (
                    ranges,
                    Vec::new(),
                    None,
                    None,
                    spread_over(duration_ms),
                    duration_ms,
                )
            }
        };
        self.attacks.push(Attack {
            shape,
            tenant,
            ranges,
            next_number: rng.int(0, 5000) as u64,
            next_at: at,
            end_at: at + duration_ms,
            mean_gap_ms: 1000.0 / rate_per_s.max(1e-6),
            ips,
            device,
            user_agent,
            mimic: shape == AttackShape::Mimicry,
        });
    }

    fn new_ids(verifications: &mut u64, seed: u64) -> String {
        *verifications += 1;
        format!("v{seed:x}-{:09}", *verifications)
    }

    fn legit_request(&mut self, t: i64) {
        let tenant_idx = self.rng.weighted(
            &self
                .world
                .tenants
                .iter()
                .map(|t| t.weight)
                .collect::<Vec<_>>(),
        );
        let tenant = &self.world.tenants[tenant_idx];
        let weights: Vec<f64> = tenant.countries.iter().map(|(_, w)| *w).collect();
        let country = tenant.countries[self.rng.weighted(&weights)].0;
        let c = &COUNTRIES[country];
        // Thinning: keep the candidate with the destination's diurnal intensity.
        if !self.rng.chance(diurnal(
            local_hour(t, c),
            tenant.peak_hour,
            tenant.diurnal_depth,
        )) {
            return;
        }
        let vid = Self::new_ids(&mut self.verifications, self.cfg.seed);
        let rng = &mut self.rng;
        // Returning users are common: a skewed draw from a fixed population.
        let user = (tenant.population * rng.unit().powi(2)) as u64;
        let user_hash = rng::hash64(format!("{}/{}/{}", tenant.id, c.code, user).as_bytes());
        let phone = phone_number(c, user_hash, self.world.number_plan);
        let channel = match rng.unit() {
            x if x < 0.88 => "sms",
            x if x < 0.96 => "whatsapp",
            _ => "voice",
        };
        let service = tenant.services[rng.index(tenant.services.len())];
        // One user in eight sits behind a mobile carrier's NAT, sharing one of a
        // few addresses per country with many others (legitimate, yet an IP
        // with many numbers).
        let ip = user_ip(country, tenant_idx, user_hash);
        let request = RequestFields {
            phone_number: phone,
            country: c.code,
            channel,
            service,
            ip: Some(ip),
            device_id: Some(format!("d-{:012x}", user_hash >> 16)),
            user_id: Some(format!("u-{:010x}", user_hash >> 24)),
            locale: Some(c.locale),
            user_agent: Some(BROWSER_USER_AGENTS[(user_hash % 3) as usize]),
        };
        let behaviour = Behaviour {
            converts: c.conversion * self.world.conversion_scale,
            retry_after_failure: 0.7,
            retry_after_silence: 0.3,
            attack: None,
        };
        self.lifecycle(vid, tenant_idx, country, t, request, behaviour);
    }

    fn fraud_request(&mut self, attack: usize, t: i64) {
        let vid = Self::new_ids(&mut self.verifications, self.cfg.seed);
        let rng = &mut self.rng;
        let a = &mut self.attacks[attack];
        let modulus = 10u64.pow(ATTACK_NUMBER_WIDTH as u32);
        let (country, prefix) = a.ranges[rng.index(a.ranges.len())].clone();
        let number = if a.shape == AttackShape::Sweep {
            a.next_number += if rng.chance(0.8) { 1 } else { 2 };
            a.next_number % modulus
        } else {
            rng.next_u64() % modulus
        };
        let phone = format!("{prefix}{number:0ATTACK_NUMBER_WIDTH$}");
        let tenant_spec = &self.world.tenants[a.tenant];
        let ip = if a.mimic {
            // An address from the pools the tenant's users come from.
            user_ip(country, a.tenant, rng.next_u64())
        } else if a.ips.is_empty() {
            // A residential proxy network: a new address every time.
            residential_ip(rng)
        } else {
            a.ips[rng.index(a.ips.len())].clone()
        };
        let disguised = a.user_agent.is_none();
        let device_id = match (&a.device, disguised) {
            (Some(d), _) => Some(d.clone()),
            (None, true) => Some(format!("d-{:012x}", rng.next_u64() >> 16)),
            (None, false) => rng
                .chance(0.5)
                .then(|| format!("d-{:012x}", rng.next_u64() >> 16)),
        };
        let (service, user_id) = if a.mimic {
            let services = &tenant_spec.services;
            (
                services[rng.index(services.len())],
                Some(format!("u-{:010x}", rng.next_u64() >> 24)),
            )
        } else {
            (if rng.chance(0.8) { "signup" } else { "login" }, None)
        };
        let request = RequestFields {
            phone_number: phone,
            country: COUNTRIES[country].code,
            channel: "sms",
            service,
            ip: Some(ip),
            device_id,
            user_id,
            locale: if disguised {
                Some(COUNTRIES[country].locale)
            } else if rng.chance(0.7) {
                Some("en-US")
            } else {
                None
            },
            user_agent: Some(
                a.user_agent
                    .unwrap_or_else(|| BROWSER_USER_AGENTS[rng.index(BROWSER_USER_AGENTS.len())]),
            ),
        };
        let tenant = a.tenant;
        let behaviour = Behaviour {
            converts: 0.005,
            retry_after_failure: 0.5,
            retry_after_silence: 0.4,
            attack: Some(a.shape),
        };
        self.lifecycle(vid, tenant, country, t, request, behaviour);
    }

    /// Plays one verification out: sends, receipts, retries on another provider,
    /// wrong codes, approval within the TTL or expiry.
    fn lifecycle(
        &mut self,
        vid: String,
        tenant_idx: usize,
        country: usize,
        t: i64,
        req: RequestFields,
        b: Behaviour,
    ) {
        let tenant_id = self.world.tenants[tenant_idx].id.clone();
        let c = &COUNTRIES[country];
        let expiry = t + self.cfg.ttl_ms;
        let quality = &self.quality;
        let p_success: BTreeMap<veriflow_common::truth::Label, f64> = self
            .world
            .providers
            .iter()
            .enumerate()
            .map(|(p, name)| {
                (
                    std::borrow::Cow::Owned(name.clone()),
                    quality.delivery_probability(country, p, t) * b.converts,
                )
            })
            .collect();

        let mut events: Vec<(i64, WireEvent)> = Vec::new();
        let mut n = 0u32;
        let mut next_event_id = |vid: &str| {
            n += 1;
            format!("{vid}-e{n}")
        };
        let base = |kind: &'static str, at: i64, id: String| {
            WireEvent::new(id, kind, &vid, &tenant_id, at)
        };
        events.push((
            t,
            base("verification.requested", t, next_event_id(&vid)).with_request(&req),
        ));

        let mut tried: Vec<usize> = Vec::new();
        let mut cursor = t;
        let mut approved_at = None;
        for attempt in 1..=3u32 {
            let provider = self.route(tenant_idx, &tried);
            tried.push(provider);
            let sent_at = cursor + self.rng.int(50, 400);
            if sent_at >= expiry {
                tried.pop();
                break;
            }
            let mut sent = base("verification.sent", sent_at, next_event_id(&vid));
            sent.provider = Some(self.world.providers[provider].clone());
            sent.attempt = Some(attempt);
            sent.cost = Some((self.quality.price(country, provider) * 10_000.0).round() / 10_000.0);
            sent.currency = Some("USD");
            events.push((sent_at, sent));

            let delivered = self.rng.chance(
                self.quality
                    .delivery_probability(country, provider, sent_at),
            );
            let latency = self
                .rng
                .lognormal(self.quality.latency_median_ms(country, provider), 0.6)
                .min(120_000.0) as i64;
            let receipt_at = sent_at + latency.max(200);
            if delivered {
                let mut dlr = base("verification.delivered", receipt_at, next_event_id(&vid));
                dlr.provider = Some(self.world.providers[provider].clone());
                events.push((receipt_at, dlr));
                if self.rng.chance(b.converts) {
                    let mut typing_at = receipt_at + self.rng.int(6_000, 60_000);
                    if self.rng.chance(0.07) {
                        events.push((
                            typing_at,
                            base("verification.check_failed", typing_at, next_event_id(&vid)),
                        ));
                        typing_at += self.rng.int(4_000, 25_000);
                    }
                    if typing_at <= expiry {
                        events.push((
                            typing_at,
                            base("verification.approved", typing_at, next_event_id(&vid)),
                        ));
                        approved_at = Some(typing_at);
                    }
                    break;
                }
                if !self.rng.chance(b.retry_after_silence) {
                    break;
                }
                cursor = sent_at + self.rng.int(30_000, 90_000);
            } else {
                if self.rng.chance(0.8) {
                    let mut dlr = base("verification.undelivered", receipt_at, next_event_id(&vid));
                    dlr.provider = Some(self.world.providers[provider].clone());
                    dlr.error_code = Some(["30003", "30005", "30006", "30008"][self.rng.index(4)]);
                    events.push((receipt_at, dlr));
                }
                if !self.rng.chance(b.retry_after_failure) {
                    break;
                }
                cursor = sent_at + self.rng.int(20_000, 60_000);
            }
        }

        for (at, event) in events {
            let payload = serde_json::to_vec(&event).unwrap_or_default();
            if self.rng.chance(self.cfg.malformed_share) {
                let bad = malformed(&payload, self.rng.index(5));
                self.seq += 1;
                self.pending.push(Reverse(Pending {
                    arrival: at,
                    seq: self.seq,
                    key: tenant_id.clone(),
                    payload: bad,
                }));
            }
            let copies = if self.rng.chance(self.cfg.duplicate_share) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay = self.arrival_delay();
                self.seq += 1;
                self.pending.push(Reverse(Pending {
                    arrival: at + delay,
                    seq: self.seq,
                    key: tenant_id.clone(),
                    payload: payload.clone(),
                }));
            }
        }
        self.truths.push_back(Box::new(Truth {
            verification_id: vid,
            tenant_id,
            requested_at: rfc3339(t),
            country: c.code.to_owned(),
            channel: req.channel.to_owned(),
            is_fraud: b.attack.is_some(),
            attack: b.attack.map(|a| a.name().into()),
            outcome: if approved_at.is_some() {
                "approved".into()
            } else {
                "expired".into()
            },
            approved_at: approved_at.map(rfc3339),
            time_to_approve_ms: approved_at.map(|a| a - t),
            attempts: tried.len() as u32,
            providers: tried
                .iter()
                .map(|&p| self.world.providers[p].clone())
                .collect(),
            p_success,
        }));
    }

    /// The tenant's static preference among providers not tried yet.
    fn route(&mut self, tenant: usize, tried: &[usize]) -> usize {
        let weights: Vec<f64> = self.world.tenants[tenant]
            .provider_weights
            .iter()
            .enumerate()
            .map(|(p, w)| {
                if tried.contains(&p) {
                    0.0
                } else {
                    w.max(0.001)
                }
            })
            .collect();
        self.rng.weighted(&weights)
    }

    /// Mostly prompt, sometimes slow, never beyond the configured bound.
    fn arrival_delay(&mut self) -> i64 {
        let max = self.cfg.max_arrival_delay_ms.max(0);
        let d = if self.rng.chance(0.85) {
            self.rng.exponential(300.0)
        } else {
            self.rng.between(0.0, max as f64)
        };
        (d as i64).min(max)
    }
}

struct Behaviour {
    converts: f64,
    retry_after_failure: f64,
    retry_after_silence: f64,
    /// Pumping traffic: the attack's shape.
    attack: Option<AttackShape>,
}

struct RequestFields {
    phone_number: String,
    country: &'static str,
    channel: &'static str,
    service: &'static str,
    ip: Option<String>,
    device_id: Option<String>,
    user_id: Option<String>,
    locale: Option<&'static str>,
    user_agent: Option<&'static str>,
}

/// The contract's event JSON; field order is fixed so the bytes are reproducible.
#[derive(Serialize)]
struct WireEvent {
    event_id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    verification_id: String,
    tenant_id: String,
    occurred_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    locale: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
}

impl WireEvent {
    fn new(event_id: String, kind: &'static str, vid: &str, tenant: &str, at: i64) -> Self {
        WireEvent {
            event_id,
            kind,
            verification_id: vid.to_owned(),
            tenant_id: tenant.to_owned(),
            occurred_at: rfc3339(at),
            phone_number: None,
            country: None,
            channel: None,
            service: None,
            ip: None,
            device_id: None,
            user_id: None,
            locale: None,
            user_agent: None,
            provider: None,
            attempt: None,
            cost: None,
            currency: None,
            error_code: None,
        }
    }

    fn with_request(mut self, r: &RequestFields) -> Self {
        self.phone_number = Some(r.phone_number.clone());
        self.country = Some(r.country);
        self.channel = Some(r.channel);
        self.service = Some(r.service);
        self.ip = r.ip.clone();
        self.device_id = r.device_id.clone();
        self.user_id = r.user_id.clone();
        self.locale = r.locale;
        self.user_agent = r.user_agent;
        self
    }
}

/// A broken copy of a valid event, one of the kinds the contract sends to the DLQ.
fn malformed(payload: &[u8], kind: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(payload);
    match kind {
        0 => payload[..payload.len() / 2].to_vec(),
        1 => text
            .replacen(
                "\"type\":\"verification.",
                "\"type\":\"verification.unheard_of_",
                1,
            )
            .into_bytes(),
        2 => text
            .replacen("\"event_id\":", "\"evt_id\":", 1)
            .into_bytes(),
        3 => text
            .replacen("\"occurred_at\":\"", "\"occurred_at\":\"not-a-time ", 1)
            .into_bytes(),
        _ => format!("[{text}]").into_bytes(),
    }
}

/// An address in the ranges hosting providers announce.
fn datacenter_ip(rng: &mut Rng) -> String {
    format!(
        "{}.{}.{}.{}",
        [45, 185, 193, 91][rng.index(4)],
        rng.int(0, 255),
        rng.int(0, 255),
        rng.int(1, 254)
    )
}

/// An address among those legitimate users have.
fn residential_ip(rng: &mut Rng) -> String {
    format!(
        "{}.{}.{}.{}",
        rng.int(100, 199),
        rng.int(0, 255),
        rng.int(0, 255),
        rng.int(1, 254)
    )
}

/// A user's address: one in eight behind a mobile carrier's NAT (a few
/// addresses per country and tenant shared by many), the rest in the
/// country's residential pools.
fn user_ip(country: usize, tenant: usize, user_hash: u64) -> String {
    if user_hash.is_multiple_of(8) {
        format!("{}.20.{}.{}", 150 + country, tenant, 1 + user_hash % 4)
    } else {
        format!(
            "{}.{}.{}.{}",
            100 + 7 * country as u64 + user_hash % 5,
            (user_hash >> 8) % 256,
            (user_hash >> 16) % 256,
            1 + (user_hash >> 24) % 254
        )
    }
}

/// `n` subscriber digits drawn from `x` (the first never 0 or 1).
fn push_digits(digits: &mut String, mut x: u64, n: usize) {
    for i in 0..n {
        let d = if i == 0 { 2 + x % 8 } else { x % 10 };
        digits.push(char::from(b'0' + d as u8));
        x = (x / 10) ^ (x << 7).rotate_left(13);
    }
}

/// The number a user of hash `h` has in `c` under the world's plan.
fn phone_number(c: &world::Country, h: u64, plan: NumberPlan) -> String {
    match plan {
        NumberPlan::Spread => {
            let mut digits = format!("+{}", c.calling_code);
            push_digits(&mut digits, h, c.subscriber_digits);
            digits
        }
        NumberPlan::Blocks { blocks } => {
            let mut digits = number_block(c, h, plan);
            let last = (h / blocks.max(1)) % 10u64.pow(ATTACK_NUMBER_WIDTH as u32);
            digits.push_str(&format!("{last:0ATTACK_NUMBER_WIDTH$}"));
            digits
        }
    }
}

/// The number without its last [`ATTACK_NUMBER_WIDTH`] digits: under a
/// block plan, the block of a user of hash `h`; spread, any prefix.
fn number_block(c: &world::Country, h: u64, plan: NumberPlan) -> String {
    let mut digits = format!("+{}", c.calling_code);
    let x = match plan {
        NumberPlan::Spread => h,
        NumberPlan::Blocks { blocks } => {
            rng::hash64(format!("block/{}/{}", c.code, h % blocks.max(1)).as_bytes())
        }
    };
    push_digits(
        &mut digits,
        x,
        c.subscriber_digits.saturating_sub(ATTACK_NUMBER_WIDTH),
    );
    digits
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cfg: SimConfig) -> (Vec<SimEvent>, Vec<Truth>) {
        let mut sim = Simulator::new(cfg);
        let (mut events, mut truths) = (Vec::new(), Vec::new());
        while let Some(item) = sim.next() {
            match item {
                SimItem::Event(e) => events.push(e),
                SimItem::Truth(t) => truths.push(*t),
            }
        }
        (events, truths)
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let cfg = SimConfig {
            duration_ms: Some(120_000),
            ..Default::default()
        };
        let (a, ta) = run(cfg.clone());
        let (b, tb) = run(cfg.clone());
        assert!(a.len() > 1000, "{} events", a.len());
        assert_eq!(a, b);
        assert_eq!(ta, tb);
        let (c, _) = run(SimConfig { seed: 2, ..cfg });
        assert_ne!(a, c);
    }

    #[test]
    fn arrivals_are_ordered_and_within_the_bound() {
        let cfg = SimConfig {
            duration_ms: Some(300_000),
            ..Default::default()
        };
        let (events, truths) = run(cfg.clone());
        assert!(events.windows(2).all(|w| w[0].arrival <= w[1].arrival));
        let mut out_of_order = 0;
        let mut max_seen = i64::MIN;
        for e in &events {
            let v: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
            let at = DateTime::parse_from_rfc3339(v["occurred_at"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            assert!(e.arrival >= at && e.arrival - at <= cfg.max_arrival_delay_ms);
            if at < max_seen {
                out_of_order += 1;
            }
            max_seen = max_seen.max(at);
        }
        assert!(
            out_of_order > 100,
            "only {out_of_order} out-of-order events"
        );
        let approved = truths.iter().filter(|t| t.outcome == "approved").count();
        assert!(approved > truths.len() / 2 && approved < truths.len());
    }

    #[test]
    fn attacks_of_every_shape_are_rarely_approved() {
        let cfg = SimConfig {
            duration_ms: Some(6 * 3_600_000),
            rate: 5.0,
            fraud_share: 0.05,
            attack_shapes: AttackShape::ALL.to_vec(),
            ..Default::default()
        };
        let (_, truths) = run(cfg);
        let fraud: Vec<_> = truths.iter().filter(|t| t.is_fraud).collect();
        let share = fraud.len() as f64 / truths.len() as f64;
        assert!((0.01..0.15).contains(&share), "fraud share {share}");
        let approved = fraud.iter().filter(|t| t.outcome == "approved").count();
        assert!(
            approved * 50 < fraud.len(),
            "{approved} of {} attack verifications approved",
            fraud.len()
        );
        for shape in AttackShape::ALL {
            assert!(
                fraud
                    .iter()
                    .any(|t| t.attack.as_deref() == Some(shape.name())),
                "no {} attack in three hours",
                shape.name()
            );
        }
        assert!(truths.iter().all(|t| t.is_fraud == t.attack.is_some()));
    }

    #[test]
    fn varied_worlds_differ_by_family_and_seed_and_repeat_for_the_same() {
        let cfg = |family, seed| SimConfig {
            seed,
            duration_ms: Some(20 * 60_000),
            rate: 10.0,
            world: WorldKind::Varied { family },
            attack_shapes: AttackShape::ALL.to_vec(),
            fraud_share: 0.05,
            ..Default::default()
        };
        let providers = |truths: &[Truth]| -> std::collections::BTreeSet<String> {
            truths
                .iter()
                .flat_map(|t| t.p_success.keys().map(|k| k.to_string()))
                .collect()
        };
        let (a, ta) = run(cfg(3, 1));
        let (b, tb) = run(cfg(3, 1));
        assert_eq!(a, b, "same family and seed, same bytes");
        assert_eq!(ta, tb);
        let standard = providers(&run(SimConfig::default()).1);
        let mut seen = Vec::new();
        for (family, seed) in [(3, 1), (3, 2), (4, 1), (5, 9)] {
            let (events, truths) = run(cfg(family, seed));
            assert!(!events.is_empty() && truths.len() > 1_000);
            let names = providers(&truths);
            assert!((2..=9).contains(&names.len()), "{names:?}");
            assert!(names.is_disjoint(&standard), "{names:?}");
            let tenants: std::collections::BTreeSet<&str> =
                truths.iter().map(|t| t.tenant_id.as_str()).collect();
            seen.push((names, tenants.len()));
        }
        assert!(
            seen.windows(2).any(|w| w[0] != w[1]),
            "worlds differ: {seen:?}"
        );
    }

    #[test]
    fn a_block_plan_puts_legitimate_neighbours_in_shared_prefixes() {
        let c = &COUNTRIES[1];
        let plan = NumberPlan::Blocks { blocks: 20 };
        let prefixes: std::collections::BTreeSet<String> = (0..2_000u64)
            .map(|h| {
                let n = phone_number(c, rng::hash64(&h.to_le_bytes()), plan);
                assert_eq!(n.len(), 1 + c.calling_code.len() + c.subscriber_digits);
                n[..n.len() - ATTACK_NUMBER_WIDTH].to_string()
            })
            .collect();
        assert!(prefixes.len() <= 20, "{} prefixes", prefixes.len());
        let spread: std::collections::BTreeSet<String> = (0..2_000u64)
            .map(|h| {
                let n = phone_number(c, rng::hash64(&h.to_le_bytes()), NumberPlan::Spread);
                n[..n.len() - ATTACK_NUMBER_WIDTH].to_string()
            })
            .collect();
        assert!(spread.len() > 1_900, "{} prefixes", spread.len());
    }

    #[test]
    fn a_sweep_walks_its_range_in_order() {
        let cfg = SimConfig {
            duration_ms: Some(3_600_000),
            rate: 5.0,
            fraud_share: 0.05,
            attack_shapes: vec![AttackShape::Sweep],
            ..Default::default()
        };
        let mut sim = Simulator::new(cfg);
        let mut phones: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut fraud = std::collections::HashSet::new();
        let mut requests = Vec::new();
        while let Some(item) = sim.next() {
            match item {
                SimItem::Truth(t) if t.is_fraud => {
                    fraud.insert(t.verification_id);
                }
                SimItem::Event(e) => {
                    let v: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
                    if v["type"] == "verification.requested" {
                        requests.push(v);
                    }
                }
                _ => {}
            }
        }
        for v in requests {
            if fraud.contains(v["verification_id"].as_str().unwrap()) {
                let phone = v["phone_number"].as_str().unwrap();
                let (prefix, last) = phone.split_at(phone.len() - ATTACK_NUMBER_WIDTH);
                phones
                    .entry(prefix.to_owned())
                    .or_default()
                    .push(last.parse().unwrap());
            }
        }
        assert!(!phones.is_empty());
        for (prefix, mut numbers) in phones {
            numbers.sort_unstable();
            let close = numbers.windows(2).filter(|w| w[1] - w[0] <= 2).count();
            assert!(
                close * 10 >= (numbers.len() - 1) * 9,
                "{prefix}: {numbers:?} is not a sweep"
            );
        }
    }
}
