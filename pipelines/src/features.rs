//! Real-time features of a verification request, computed in event time.
//!
//! A request's features are computed when the partition's watermark passes its
//! `requested_at`: requests are released from a reorder heap in event-time order and
//! interleaved with decided verifications (which feed conversion and approval
//! features) by time. So a feature vector describes exactly the history *before* the
//! request, and is the same for every arrival order within the allowed lateness.
//!
//! All state is keyed within the tenant (tenants never see each other's traffic),
//! bounded (idle keys expire, see [`FeatureState::expire`]) and exact: windows are
//! ring buffers of per-minute or per-hour counts; distinct counts keep the members
//! seen in the window (bounded by the window's traffic), which at this scale is
//! cheaper and more honest than a sketch.

use crate::Text;
use std::borrow::Cow;
use std::collections::VecDeque;

use foldhash::HashMap;
use serde::{Deserialize, Serialize};

use crate::key::verification_key;
use crate::time::{EventTime, MILLIS_PER_MINUTE};

const HOUR: i64 = 60 * MILLIS_PER_MINUTE;
const DAY: i64 = 24 * HOUR;
/// Beta prior on conversion: mean 0.85 with the weight of 20 verifications.
const PRIOR_APPROVED: f64 = 17.0;
const PRIOR_TOTAL: f64 = 20.0;
/// The conversion key that aggregates all of a tenant's countries (never a country
/// code: those are two letters).
const TENANT_WIDE: &str = "*";
/// Requests remembered per prefix for the sequential-number score.
const SEQUENCE_DEPTH: usize = 20;
/// Two numbers this close count as adjacent.
const SEQUENCE_GAP: u64 = 3;

/// Counts in fixed time slots over a sliding span (a ring of `slots` buckets).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Index (time / slot width) of the newest slot, if any.
    head: Option<i64>,
    counts: Vec<u32>,
}

impl Window {
    fn add(&mut self, slot: i64, slots: usize, n: u32) {
        if self.counts.len() != slots {
            self.counts = vec![0; slots];
        }
        let head = self.head.unwrap_or(slot);
        if slot > head {
            let clear = (slot - head).min(slots as i64);
            for s in (slot - clear + 1)..=slot {
                self.counts[s.rem_euclid(slots as i64) as usize] = 0;
            }
            self.head = Some(slot);
        } else if self.head.is_none() {
            self.head = Some(slot);
        }
        if slot > self.head.unwrap_or(slot) - slots as i64 {
            let i = slot.rem_euclid(slots as i64) as usize;
            self.counts[i] = self.counts[i].saturating_add(n);
        }
    }

    /// Sum over the `span` slots ending at `slot` (inclusive).
    fn sum(&self, slot: i64, span: i64) -> u32 {
        let Some(head) = self.head else { return 0 };
        let len = self.counts.len() as i64;
        let lo = (slot - span + 1).max(head - len + 1);
        let hi = slot.min(head);
        (lo..=hi)
            .map(|s| self.counts[s.rem_euclid(len) as usize])
            .sum()
    }
}

/// Event counts over the last hour (minute slots) and day (hour slots).
///
/// Most keys (a phone, a legitimate prefix) see a handful of events a day: they keep
/// the timestamps themselves. A key past [`DENSE_AFTER`] events in a day switches
/// to ring buffers of slot counts. Both forms count by the same slots, so the answer
/// never depends on the form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Rates {
    Sparse(Vec<EventTime>),
    Dense(Box<DenseRates>),
}

const DENSE_AFTER: usize = 256;

impl Default for Rates {
    fn default() -> Self {
        Rates::Sparse(Vec::new())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct DenseRates {
    minutes: Window,
    hours: Window,
}

fn minute(t: EventTime) -> i64 {
    t.div_euclid(MILLIS_PER_MINUTE)
}

fn hour(t: EventTime) -> i64 {
    t.div_euclid(HOUR)
}

impl Rates {
    fn add(&mut self, t: EventTime) {
        match self {
            Rates::Sparse(times) => {
                // Keep what the day window can still count (24 hour slots).
                let keep_from = times.partition_point(|&x| hour(x) <= hour(t) - 24);
                times.drain(..keep_from);
                times.push(t);
                if times.len() > DENSE_AFTER {
                    let mut dense = DenseRates::default();
                    for &x in times.iter() {
                        dense.minutes.add(minute(x), 60, 1);
                        dense.hours.add(hour(x), 24, 1);
                    }
                    *self = Rates::Dense(Box::new(dense));
                }
            }
            Rates::Dense(d) => {
                d.minutes.add(minute(t), 60, 1);
                d.hours.add(hour(t), 24, 1);
            }
        }
    }

    /// Events in the `minutes` minute slots ending with `t`'s (up to 60).
    fn in_minutes(&self, t: EventTime, minutes: i64) -> u32 {
        match self {
            Rates::Sparse(times) => {
                let (lo, hi) = (minute(t) - minutes + 1, minute(t));
                times
                    .iter()
                    .filter(|&&x| (lo..=hi).contains(&minute(x)))
                    .count() as u32
            }
            Rates::Dense(d) => d.minutes.sum(minute(t), minutes),
        }
    }

    /// Events in the 24 hour slots ending with `t`'s.
    fn in_day(&self, t: EventTime) -> u32 {
        match self {
            Rates::Sparse(times) => {
                let (lo, hi) = (hour(t) - 23, hour(t));
                times
                    .iter()
                    .filter(|&&x| (lo..=hi).contains(&hour(x)))
                    .count() as u32
            }
            Rates::Dense(d) => d.hours.sum(hour(t), 24),
        }
    }
}

/// Members (by 64-bit hash) with their last sighting, for distinct counts over a
/// window. Most keys have one or two members: a short vector; past
/// [`MANY_MEMBERS`] it becomes a hash map (an attacked prefix sees thousands).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Distinct {
    Few(Vec<(u64, EventTime)>),
    Many(HashMap<u64, EventTime>),
}

const MANY_MEMBERS: usize = 32;

impl Default for Distinct {
    fn default() -> Self {
        Distinct::Few(Vec::new())
    }
}

impl Distinct {
    fn count_since(&self, since: EventTime) -> u32 {
        match self {
            Distinct::Few(v) => v.iter().filter(|(_, t)| *t >= since).count() as u32,
            Distinct::Many(m) => m.values().filter(|&&t| t >= since).count() as u32,
        }
    }

    fn add(&mut self, member: &str, t: EventTime, keep: i64) {
        let h = xxhash_rust::xxh3::xxh3_64(member.as_bytes());
        match self {
            Distinct::Few(v) => {
                match v.iter_mut().find(|(m, _)| *m == h) {
                    Some(entry) => entry.1 = t,
                    None => v.push((h, t)),
                }
                if v.len() > MANY_MEMBERS {
                    v.retain(|(_, seen)| *seen >= t - keep);
                    if v.len() > MANY_MEMBERS {
                        *self = Distinct::Many(v.drain(..).collect());
                    }
                }
            }
            Distinct::Many(m) => {
                m.insert(h, t);
                if m.len() > 4 * MANY_MEMBERS && m.len().is_power_of_two() {
                    m.retain(|_, seen| *seen >= t - keep);
                }
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct PhoneState {
    attempts: Rates,
    approvals: u32,
    last_seen: EventTime,
}

/// A prefix's usual level: exponentially weighted mean and variance of its hourly
/// request counts, silent hours included.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Level {
    hour: i64,
    in_hour: u32,
    mean: f64,
    var: f64,
}

/// Weight of one hour in the usual level (a day's memory).
const LEVEL_ALPHA: f64 = 1.0 / 24.0;

impl Level {
    fn fold(&mut self, count: f64) {
        let delta = count - self.mean;
        self.mean += LEVEL_ALPHA * delta;
        self.var = (1.0 - LEVEL_ALPHA) * (self.var + LEVEL_ALPHA * delta * delta);
    }

    /// Closes the hours before `h` (silent ones as zeros), then counts one request.
    fn add(&mut self, h: i64) {
        if self.in_hour > 0 && h > self.hour {
            self.fold(f64::from(self.in_hour));
            // After a week of silence the level has decayed to nothing anyway.
            for _ in 0..(h - self.hour - 1).clamp(0, 24 * 7) {
                self.fold(0.0);
            }
        }
        if h > self.hour || self.in_hour == 0 {
            self.hour = h;
            self.in_hour = 0;
        }
        self.in_hour += 1;
    }

    /// How unusual `count` (requests over the last hour) is for this prefix.
    fn zscore(&self, count: u32) -> f64 {
        (f64::from(count) - self.mean) / (self.var + 1.0).sqrt()
    }
}

/// A shorter prefix (minus 2 or 3 digits): rates and level only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct CountState {
    requests: Rates,
    level: Level,
    last_seen: EventTime,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct PrefixState {
    requests: Rates,
    level: Level,
    new_numbers: Rates,
    numbers: Distinct,
    recent: VecDeque<u64>,
    last_seen: EventTime,
}

/// An IP address or a device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ActorState {
    requests: Rates,
    numbers: Distinct,
    countries: Distinct,
    last_seen: EventTime,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ConversionState {
    requests: u64,
    decided: Rates,
    approved: Rates,
    last_seen: EventTime,
}

/// What the feature stage needs of a `verification.requested`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FeatureRequest {
    pub tenant_id: Text,
    pub verification_id: Text,
    pub event_id: Text,
    pub at: EventTime,
    pub phone_number: Text,
    pub country: Text,
    pub ip: Option<Text>,
    pub ip_country: Option<Text>,
    pub device_id: Option<Text>,
}

/// The feature vector of one request. Field names are public (the features topic).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Features {
    pub phone_attempts_10m: u32,
    pub phone_attempts_24h: u32,
    pub phone_lifetime_approvals: u32,
    pub phone_first_seen: bool,
    pub prefix_requests_1m: u32,
    pub prefix_requests_10m: u32,
    pub prefix_requests_1h: u32,
    pub prefix_distinct_numbers_1h: u32,
    pub prefix_new_number_share_1h: f64,
    pub prefix_sequential_score: f64,
    /// Requests to the prefix over the last hour against its usual hourly level.
    pub prefix_requests_zscore: f64,
    /// The same for the number minus its last 3, and last 2, digits.
    pub prefix3_requests_1m: u32,
    pub prefix3_requests_10m: u32,
    pub prefix3_requests_1h: u32,
    pub prefix3_requests_zscore: f64,
    pub prefix2_requests_1m: u32,
    pub prefix2_requests_10m: u32,
    pub prefix2_requests_1h: u32,
    pub prefix2_requests_zscore: f64,
    pub ip_requests_1m: Option<u32>,
    pub ip_requests_1h: Option<u32>,
    pub ip_distinct_numbers_1m: Option<u32>,
    pub ip_distinct_numbers_1h: Option<u32>,
    pub ip_distinct_countries_24h: Option<u32>,
    /// The IP's country differs from the phone's; `null` unless upstream sends
    /// `ip_country`.
    pub ip_country_mismatch: Option<bool>,
    pub device_requests_1m: Option<u32>,
    pub device_requests_1h: Option<u32>,
    pub device_distinct_numbers_1m: Option<u32>,
    pub device_distinct_numbers_1h: Option<u32>,
    pub device_distinct_countries_24h: Option<u32>,
    pub tenant_country_conversion_1h: f64,
    pub tenant_country_conversion_24h: f64,
    /// The tenant's own 24 h conversion (all countries) minus this country's last
    /// hour: positive when this destination converts worse than the tenant usually
    /// does (the SMS-pumping signature).
    pub tenant_country_conversion_drop: f64,
    pub tenant_country_first_time: bool,
    pub local_hour: Option<u8>,
}

/// The feature record as emitted: identity plus the vector.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRecord {
    pub partition: i32,
    pub request: FeatureRequest,
    pub features: Features,
    /// The partition's statistics of every provider in the request's country
    /// as of the request (every send and receipt before it counted, none
    /// after), when the pipeline is asked for them
    /// ([`crate::PipelineConfig::request_routes`], or a scorer is plugged in);
    /// empty otherwise. Not part of the published record: the scorer and
    /// training replays read them, so both see the same statistics.
    pub routes: Vec<(crate::Text, crate::routes::RouteSnapshot)>,
    /// What the partition learned from decided outcomes, as of the request
    /// (the request's country's calibration, its tenant's thresholds); asked
    /// for like `routes`, and like them not published.
    pub feedback: crate::feedback::Feedback,
}

#[derive(Serialize)]
struct FeatureJson<'a> {
    features_id: String,
    verification_id: &'a str,
    tenant_id: &'a str,
    event_id: &'a str,
    requested_at: String,
    country: &'a str,
    schema_version: u32,
    features: &'a Features,
}

/// Bump when a feature is added, removed or redefined (models record it).
pub const FEATURE_SCHEMA_VERSION: u32 = 3;

impl FeatureRecord {
    /// Deterministic: one per accepted `verification.requested` event.
    pub fn features_id(&self) -> String {
        let r = &self.request;
        format!("{}:{}:{}", r.tenant_id, r.verification_id, r.event_id)
    }

    pub fn to_json_bytes(&self) -> Vec<u8> {
        let r = &self.request;
        let json = FeatureJson {
            features_id: self.features_id(),
            verification_id: &r.verification_id,
            tenant_id: &r.tenant_id,
            event_id: &r.event_id,
            requested_at: crate::time::format_rfc3339(r.at),
            country: &r.country,
            schema_version: FEATURE_SCHEMA_VERSION,
            features: &self.features,
        };
        serde_json::to_vec(&json).unwrap_or_default()
    }
}

/// All feature state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
/// Keys are 128-bit hashes of (tenant, entity), as for verifications.
pub struct FeatureState {
    phones: HashMap<u128, PhoneState>,
    prefixes: HashMap<u128, PrefixState>,
    /// Keyed by (tenant, prefix minus 3 digits) and (tenant, prefix minus 2 digits).
    short_prefixes: HashMap<u128, CountState>,
    ips: HashMap<u128, ActorState>,
    devices: HashMap<u128, ActorState>,
    conversion: HashMap<u128, ConversionState>,
    /// Event hour of the last expiry pass.
    expired_through: i64,
}

/// The phone number minus its last 4 digits: where SMS-pumping ranges show up.
pub fn phone_prefix(phone: &str) -> &str {
    phone_minus(phone, 4)
}

/// The phone number minus its last `digits` digits (never less than `+` and one).
pub fn phone_minus(phone: &str, digits: usize) -> &str {
    &phone[..phone.len().saturating_sub(digits).max(2).min(phone.len())]
}

/// A key's state, or an empty one (read-only paths never insert).
fn read<T: Clone + Default>(map: &HashMap<u128, T>, key: u128) -> Cow<'_, T> {
    map.get(&key)
        .map_or_else(|| Cow::Owned(T::default()), Cow::Borrowed)
}

/// The key of a shorter prefix level; '#' keeps the levels apart in one map.
fn short_prefix_key(phone: &str, digits: usize) -> String {
    format!("{}#{digits}", phone_minus(phone, digits))
}

fn digits(phone: &str) -> u64 {
    phone.bytes().filter(u8::is_ascii_digit).fold(0u64, |n, b| {
        n.wrapping_mul(10).wrapping_add(u64::from(b - b'0'))
    })
}

impl FeatureState {
    /// Computes the features of `r` from the history before it, then records it.
    pub fn on_request(&mut self, r: &FeatureRequest) -> Features {
        let features = self.peek(r);
        self.record(r, features.phone_first_seen);
        self.expire(r.at);
        features
    }

    /// The features `r` would get now, without recording it: what the
    /// synchronous route and score calls read. The stream's [`Self::on_request`]
    /// is this plus [`Self::record`], so the two cannot drift apart.
    pub fn peek(&self, r: &FeatureRequest) -> Features {
        let t = r.at;
        let tenant = &r.tenant_id;
        let key = |s: &str| verification_key(tenant, s);

        let phone_first_seen = !self.phones.contains_key(&key(&r.phone_number));
        let phone = read(&self.phones, key(&r.phone_number));

        let prefix = read(&self.prefixes, key(phone_prefix(&r.phone_number)));
        let prefix_requests_1h = prefix.requests.in_minutes(t, 60);

        let short = |digits: usize| {
            let s = read(
                &self.short_prefixes,
                verification_key(tenant, &short_prefix_key(&r.phone_number, digits)),
            );
            let in_1h = s.requests.in_minutes(t, 60);
            (
                s.requests.in_minutes(t, 1),
                s.requests.in_minutes(t, 10),
                in_1h,
                s.level.zscore(in_1h),
            )
        };
        let prefix3 = short(3);
        let prefix2 = short(2);

        let actor = |map: &HashMap<u128, ActorState>, id: &Option<Text>| {
            let a = read(map, verification_key(tenant, id.as_ref()?));
            Some((
                a.requests.in_minutes(t, 1),
                a.requests.in_minutes(t, 60),
                a.numbers.count_since(t - HOUR),
                a.countries.count_since(t - DAY),
                a.numbers.count_since(t - MILLIS_PER_MINUTE),
            ))
        };
        let ip = actor(&self.ips, &r.ip);
        let device = actor(&self.devices, &r.device_id);

        let conv = read(&self.conversion, key(&r.country));
        let rate = |approved: u32, decided: u32| {
            (f64::from(approved) + PRIOR_APPROVED) / (f64::from(decided) + PRIOR_TOTAL)
        };
        let tenant_country_conversion_1h = rate(
            conv.approved.in_minutes(t, 60),
            conv.decided.in_minutes(t, 60),
        );
        // The tenant's baseline: its conversion over all countries, last 24 h.
        let baseline = self
            .conversion
            .get(&key(TENANT_WIDE))
            .map_or(PRIOR_APPROVED / PRIOR_TOTAL, |all| {
                rate(all.approved.in_day(t), all.decided.in_day(t))
            });

        Features {
            phone_attempts_10m: phone.attempts.in_minutes(t, 10),
            phone_attempts_24h: phone.attempts.in_day(t),
            phone_lifetime_approvals: phone.approvals,
            phone_first_seen,
            prefix_requests_1m: prefix.requests.in_minutes(t, 1),
            prefix_requests_10m: prefix.requests.in_minutes(t, 10),
            prefix_requests_1h,
            prefix_distinct_numbers_1h: prefix.numbers.count_since(t - HOUR),
            prefix_new_number_share_1h: if prefix_requests_1h == 0 {
                0.0
            } else {
                f64::from(prefix.new_numbers.in_minutes(t, 60)) / f64::from(prefix_requests_1h)
            },
            prefix_sequential_score: sequential_score(&prefix.recent),
            prefix_requests_zscore: prefix.level.zscore(prefix_requests_1h),
            prefix3_requests_1m: prefix3.0,
            prefix3_requests_10m: prefix3.1,
            prefix3_requests_1h: prefix3.2,
            prefix3_requests_zscore: prefix3.3,
            prefix2_requests_1m: prefix2.0,
            prefix2_requests_10m: prefix2.1,
            prefix2_requests_1h: prefix2.2,
            prefix2_requests_zscore: prefix2.3,
            ip_requests_1m: ip.map(|x| x.0),
            ip_requests_1h: ip.map(|x| x.1),
            ip_distinct_numbers_1m: ip.map(|x| x.4),
            ip_distinct_numbers_1h: ip.map(|x| x.2),
            ip_distinct_countries_24h: ip.map(|x| x.3),
            ip_country_mismatch: r.ip_country.as_ref().map(|c| *c != r.country),
            device_requests_1m: device.map(|x| x.0),
            device_requests_1h: device.map(|x| x.1),
            device_distinct_numbers_1m: device.map(|x| x.4),
            device_distinct_numbers_1h: device.map(|x| x.2),
            device_distinct_countries_24h: device.map(|x| x.3),
            tenant_country_conversion_1h,
            tenant_country_conversion_24h: rate(conv.approved.in_day(t), conv.decided.in_day(t)),
            tenant_country_conversion_drop: baseline - tenant_country_conversion_1h,
            tenant_country_first_time: conv.requests == 0,
            local_hour: local_hour(&r.country, t),
        }
    }

    /// Whether this state holds any history [`Self::peek`] would read for `r`:
    /// how the partition holding a tenant is found.
    pub fn knows(&self, r: &FeatureRequest) -> bool {
        let key = |s: &str| verification_key(&r.tenant_id, s);
        let by = |id: &Option<Text>| id.as_ref().map(|id| key(id));
        self.phones.contains_key(&key(&r.phone_number))
            || self
                .prefixes
                .contains_key(&key(phone_prefix(&r.phone_number)))
            || self.conversion.contains_key(&key(&r.country))
            || self.conversion.contains_key(&key(TENANT_WIDE))
            || by(&r.ip).is_some_and(|k| self.ips.contains_key(&k))
            || by(&r.device_id).is_some_and(|k| self.devices.contains_key(&k))
    }

    /// Adds `r` to the history [`Self::peek`] read.
    fn record(&mut self, r: &FeatureRequest, phone_first_seen: bool) {
        let t = r.at;
        let tenant = &r.tenant_id;
        let key = |s: &str| verification_key(tenant, s);

        let phone = self.phones.entry(key(&r.phone_number)).or_default();
        phone.attempts.add(t);
        phone.last_seen = t;

        let prefix = self
            .prefixes
            .entry(key(phone_prefix(&r.phone_number)))
            .or_default();
        prefix.requests.add(t);
        prefix.level.add(hour(t));
        if phone_first_seen {
            prefix.new_numbers.add(t);
        }
        prefix.numbers.add(&r.phone_number, t, HOUR);
        prefix.recent.push_back(digits(&r.phone_number));
        if prefix.recent.len() > SEQUENCE_DEPTH {
            prefix.recent.pop_front();
        }
        prefix.last_seen = t;

        for digits in [3, 2] {
            let s = self
                .short_prefixes
                .entry(verification_key(
                    tenant,
                    &short_prefix_key(&r.phone_number, digits),
                ))
                .or_default();
            s.requests.add(t);
            s.level.add(hour(t));
            s.last_seen = t;
        }

        for (map, id) in [(&mut self.ips, &r.ip), (&mut self.devices, &r.device_id)] {
            if let Some(id) = id {
                let a = map.entry(verification_key(tenant, id)).or_default();
                a.requests.add(t);
                a.numbers.add(&r.phone_number, t, HOUR);
                a.countries.add(&r.country, t, DAY);
                a.last_seen = t;
            }
        }

        let conv = self.conversion.entry(key(&r.country)).or_default();
        conv.requests += 1;
        conv.last_seen = t;
    }

    /// A verification was decided at `at`: conversion and approval history.
    pub fn on_decision(
        &mut self,
        tenant: &str,
        country: &str,
        phone: &str,
        approved: bool,
        at: EventTime,
    ) {
        let all = self
            .conversion
            .entry(verification_key(tenant, TENANT_WIDE))
            .or_default();
        all.decided.add(at);
        if approved {
            all.approved.add(at);
        }
        all.last_seen = all.last_seen.max(at);
        let conv = self
            .conversion
            .entry(verification_key(tenant, country))
            .or_default();
        conv.decided.add(at);
        if approved {
            conv.approved.add(at);
            let p = self
                .phones
                .entry(verification_key(tenant, phone))
                .or_default();
            p.approvals += 1;
            p.last_seen = p.last_seen.max(at);
        }
        conv.last_seen = conv.last_seen.max(at);
    }

    /// Forgets keys idle for longer than anything they feed (once per event hour).
    fn expire(&mut self, t: EventTime) {
        let hour = t.div_euclid(HOUR);
        if hour <= self.expired_through {
            return;
        }
        self.expired_through = hour;
        self.prefixes.retain(|_, s| s.last_seen >= t - DAY);
        self.short_prefixes.retain(|_, s| s.last_seen >= t - DAY);
        self.ips.retain(|_, s| s.last_seen >= t - DAY);
        self.devices.retain(|_, s| s.last_seen >= t - DAY);
        // Phones carry lifetime approvals; keep them for 30 idle days.
        self.phones.retain(|_, s| s.last_seen >= t - 30 * DAY);
        self.conversion.retain(|_, s| s.last_seen >= t - 30 * DAY);
    }

    /// Keys held, for metrics and the state-size benchmark.
    pub fn keys(&self) -> usize {
        self.phones.len()
            + self.prefixes.len()
            + self.short_prefixes.len()
            + self.ips.len()
            + self.devices.len()
            + self.conversion.len()
    }
}

/// Share of the recent numbers under a prefix that have a neighbour (within
/// [`SEQUENCE_GAP`]) among them: near 1 for a sweep through a number range.
fn sequential_score(recent: &VecDeque<u64>) -> f64 {
    if recent.len() < 2 {
        return 0.0;
    }
    let mut sorted: Vec<u64> = recent.iter().copied().collect();
    sorted.sort_unstable();
    let adjacent = (0..sorted.len())
        .filter(|&i| {
            let near = |j: usize| sorted[i].abs_diff(sorted[j]) <= SEQUENCE_GAP;
            (i > 0 && near(i - 1)) || (i + 1 < sorted.len() && near(i + 1))
        })
        .count();
    adjacent as f64 / sorted.len() as f64
}

/// Standard-time UTC offsets (hours) of common destinations; DST is ignored, so
/// the value can be off by one hour in summer. `None` for countries not listed.
fn local_hour(country: &str, t: EventTime) -> Option<u8> {
    const OFFSETS: &[(&str, i64)] = &[
        ("AE", 4),
        ("AR", -3),
        ("AU", 10),
        ("BD", 6),
        ("BR", -3),
        ("CA", -5),
        ("CL", -4),
        ("CN", 8),
        ("CO", -5),
        ("DE", 1),
        ("EG", 2),
        ("ES", 1),
        ("FR", 1),
        ("GB", 0),
        ("GN", 0),
        ("ID", 7),
        ("IN", 5),
        ("IT", 1),
        ("JP", 9),
        ("KE", 3),
        ("KG", 6),
        ("KR", 9),
        ("LV", 2),
        ("MA", 1),
        ("MX", -6),
        ("MY", 8),
        ("NG", 1),
        ("NL", 1),
        ("PE", -5),
        ("PH", 8),
        ("PK", 5),
        ("PL", 1),
        ("PT", 0),
        ("RU", 3),
        ("SA", 3),
        ("SE", 1),
        ("TH", 7),
        ("TR", 3),
        ("UA", 2),
        ("US", -5),
        ("UZ", 5),
        ("VN", 7),
        ("ZA", 2),
    ];
    let offset = OFFSETS.iter().find(|(c, _)| *c == country)?.1;
    Some((t + offset * HOUR).rem_euclid(DAY).div_euclid(HOUR) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: EventTime = 1_767_571_200_000; // 2026-01-05T00:00:00Z, a Monday
    const S: i64 = 1000;

    fn req(
        vid: &str,
        at: EventTime,
        phone: &str,
        country: &str,
        ip: Option<&str>,
        device: Option<&str>,
    ) -> FeatureRequest {
        FeatureRequest {
            tenant_id: "t1".into(),
            verification_id: vid.into(),
            event_id: format!("{vid}-e1").into(),
            at,
            phone_number: phone.into(),
            country: country.into(),
            ip: ip.map(Text::from),
            ip_country: None,
            device_id: device.map(Text::from),
        }
    }

    /// A pumping sweep: sequential numbers under one prefix from two IPs.
    #[test]
    fn a_scripted_sweep_gives_the_expected_features() {
        let mut f = FeatureState::default();
        let ips = ["45.1.1.1", "45.1.1.2"];
        let mut last = None;
        for i in 0..8u32 {
            let phone = format!("+37129100{:03}", 100 + i);
            let r = req(
                &format!("v{i}"),
                T0 + i64::from(i) * 5 * S,
                &phone,
                "LV",
                Some(ips[i as usize % 2]),
                None,
            );
            last = Some(f.on_request(&r));
        }
        // The 8th request (at T0+35 s) sees the 7 before it.
        let x = last.unwrap();
        assert_eq!(x.prefix_requests_1m, 7);
        assert_eq!(x.prefix_requests_10m, 7);
        assert_eq!(x.prefix_distinct_numbers_1h, 7);
        assert_eq!(x.prefix_new_number_share_1h, 1.0, "every number was new");
        assert_eq!(x.prefix_sequential_score, 1.0, "a perfect sweep");
        assert_eq!(
            x.ip_requests_1m,
            Some(3),
            "requests 2, 4, 6 came from the second IP"
        );
        assert_eq!(x.ip_distinct_numbers_1h, Some(3));
        assert_eq!(x.ip_distinct_countries_24h, Some(1));
        assert_eq!(x.ip_distinct_numbers_1m, Some(3));
        assert_eq!(x.device_requests_1m, None, "no device id");
        assert!(x.phone_first_seen);
        assert_eq!(x.phone_attempts_24h, 0);
        assert_eq!(x.local_hour, Some(2), "Latvia is UTC+2 in winter");
        // Shorter prefixes see the same sweep; a brand-new prefix has no usual level,
        // so its z-score is the raw count.
        assert_eq!((x.prefix3_requests_1m, x.prefix2_requests_1h), (7, 7));
        assert_eq!(x.prefix_requests_zscore, 7.0);
        assert_eq!(x.ip_country_mismatch, None, "no ip_country sent");
        assert!(!x.tenant_country_first_time);
        // Prior only: (0 + 17) / (0 + 20).
        assert_eq!(x.tenant_country_conversion_1h, 0.85);
    }

    #[test]
    fn windows_forget_the_past_and_conversion_follows_decisions() {
        let mut f = FeatureState::default();
        let phone = "+5511999990000";
        let first = f.on_request(&req("a", T0, phone, "BR", Some("1.2.3.4"), Some("d1")));
        assert!(first.phone_first_seen && first.tenant_country_first_time);
        f.on_decision("t1", "BR", phone, true, T0 + 30 * S);
        for i in 0..4 {
            f.on_decision("t1", "BR", &format!("+55119999{i:05}"), false, T0 + 40 * S);
        }
        // 11 minutes later: outside 10 m, inside 1 h.
        let x = f.on_request(&req(
            "b",
            T0 + 11 * 60 * S,
            phone,
            "BR",
            Some("1.2.3.4"),
            Some("d1"),
        ));
        assert!(!x.phone_first_seen);
        assert_eq!(x.phone_attempts_10m, 0);
        assert_eq!(x.phone_attempts_24h, 1);
        assert_eq!(x.phone_lifetime_approvals, 1);
        assert_eq!(x.device_requests_1h, Some(1));
        assert_eq!(x.device_requests_1m, Some(0));
        // 1 approved of 5 decided, with the Beta(17, 3) prior: 18 / 25.
        assert!((x.tenant_country_conversion_1h - 18.0 / 25.0).abs() < 1e-12);
        // BR is all this tenant decided, so its baseline is the same: no drop.
        assert!(x.tenant_country_conversion_drop.abs() < 1e-12);
        assert_eq!(
            (
                x.device_distinct_numbers_1m,
                x.device_distinct_countries_24h
            ),
            (Some(0), Some(1))
        );
        // Two hours later the hourly window is empty again, the daily one is not.
        let y = f.on_request(&req("c", T0 + 2 * 3600 * S, phone, "BR", None, None));
        assert_eq!(y.tenant_country_conversion_1h, 0.85);
        assert!((y.tenant_country_conversion_24h - 18.0 / 25.0).abs() < 1e-12);
        assert_eq!(y.prefix_requests_1h, 0);
        assert_eq!(y.phone_attempts_24h, 2);
        assert_eq!(y.ip_requests_1h, None);
    }

    #[test]
    fn idle_keys_expire_but_approvals_are_kept_for_a_month() {
        let mut f = FeatureState::default();
        f.on_request(&req("a", T0, "+5511999990000", "BR", Some("1.2.3.4"), None));
        f.on_decision("t1", "BR", "+5511999990000", true, T0 + 30 * S);
        let before = f.keys();
        f.on_request(&req("b", T0 + 2 * DAY, "+4915112345678", "DE", None, None));
        assert!(f.keys() < before + 3, "the idle prefix and IP were dropped");
        let x = f.on_request(&req("c", T0 + 3 * DAY, "+5511999990000", "BR", None, None));
        assert_eq!(x.phone_lifetime_approvals, 1);
    }

    #[test]
    fn sparse_and_dense_rates_count_alike() {
        let mut sparse_only = Vec::new();
        let mut rates = Rates::default();
        let mut t = T0;
        for i in 0..600 {
            t += (i % 7) * 3 * S + 20 * S;
            rates.add(t);
            sparse_only.push(t);
            if i == 255 {
                assert!(matches!(rates, Rates::Sparse(_)));
            }
        }
        assert!(
            matches!(rates, Rates::Dense(_)),
            "promoted past the threshold"
        );
        let reference = Rates::Sparse(sparse_only);
        for probe in [t, t + 30 * S, t + 20 * 60 * S, t + 5 * 3600 * S] {
            for m in [1, 10, 60] {
                assert_eq!(
                    rates.in_minutes(probe, m),
                    reference.in_minutes(probe, m),
                    "{m} min at {probe}"
                );
            }
            assert_eq!(rates.in_day(probe), reference.in_day(probe));
        }
    }

    #[test]
    fn zscore_measures_a_prefix_against_its_usual_hourly_level() {
        let mut f = FeatureState::default();
        // A day of 10 requests an hour to one prefix, from 10 different numbers.
        let mut zs = Vec::new();
        for h in 0..30i64 {
            for i in 0..10 {
                let r = req(
                    "v",
                    T0 + h * 3600 * S + i * 60 * S,
                    &format!("+5511999900{i:02}"),
                    "BR",
                    None,
                    None,
                );
                zs.push(f.on_request(&r).prefix_requests_zscore);
            }
        }
        // Independently: the level after 29 closed hours of 10 is an EWMA of 10s.
        let mean = 10.0 * (1.0 - (1.0 - 1.0 / 24.0f64).powi(29));
        let usual = f.on_request(&req(
            "v",
            T0 + 30 * 3600 * S + 59 * 60 * S,
            "+551199990000",
            "BR",
            None,
            None,
        ));
        assert!(
            mean > 7.0 && usual.prefix_requests_zscore < 1.5,
            "z {} at the usual rate",
            usual.prefix_requests_zscore
        );
        // Forty extra requests in the same hour: far above the usual level.
        let mut last = usual;
        for i in 0..40 {
            let t = T0 + 30 * 3600 * S + 59 * 60 * S + (i + 1) * 100;
            last = f.on_request(&req(
                "v",
                t,
                &format!("+5511999900{:02}", i % 10),
                "BR",
                None,
                None,
            ));
        }
        assert!(
            last.prefix_requests_zscore > 3.0,
            "z {}",
            last.prefix_requests_zscore
        );
    }

    #[test]
    fn ip_country_mismatch_when_upstream_knows_the_ip_country() {
        let mut f = FeatureState::default();
        let mut r = req("v", T0, "+5511999990000", "BR", Some("1.2.3.4"), None);
        r.ip_country = Some("NG".into());
        assert_eq!(f.on_request(&r).ip_country_mismatch, Some(true));
        r.ip_country = Some("BR".into());
        assert_eq!(f.on_request(&r).ip_country_mismatch, Some(false));
    }

    #[test]
    fn sequential_score_distinguishes_sweeps_from_random_numbers() {
        let sweep: VecDeque<u64> = (0..10).map(|i| 37129100100 + i).collect();
        assert_eq!(sequential_score(&sweep), 1.0);
        let random: VecDeque<u64> = [
            5511999990000u64,
            5511988881234,
            5521977770001,
            5511912345678,
        ]
        .into();
        assert_eq!(sequential_score(&random), 0.0);
    }
}

#[cfg(test)]
mod drop_tests {
    use super::*;

    /// A destination converting far worse than the tenant's other traffic.
    #[test]
    fn conversion_drop_against_the_tenant_baseline() {
        let mut f = FeatureState::default();
        let t0 = 1_767_571_200_000;
        for i in 0..60 {
            f.on_decision(
                "t1",
                "BR",
                &format!("+55119{i:08}"),
                i % 10 != 0,
                t0 + i * 1000,
            );
        }
        for i in 0..20 {
            f.on_decision(
                "t1",
                "UZ",
                &format!("+99890{i:07}"),
                false,
                t0 + 60_000 + i * 1000,
            );
        }
        let r = FeatureRequest {
            tenant_id: "t1".into(),
            verification_id: "v".into(),
            event_id: "e".into(),
            at: t0 + 120_000,
            phone_number: "+998901234567".into(),
            country: "UZ".into(),
            ip: None,
            ip_country: None,
            device_id: None,
        };
        let x = f.on_request(&r);
        // Independently: tenant-wide 54 of 80 approved, UZ 0 of 20, Beta(17, 3) prior.
        let baseline = (54.0 + 17.0) / (80.0 + 20.0);
        let uz = 17.0 / (20.0 + 20.0);
        assert!((x.tenant_country_conversion_drop - (baseline - uz)).abs() < 1e-12);
        assert!(x.tenant_country_conversion_drop > 0.25);
    }
}
