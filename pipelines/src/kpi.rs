//! KPI facts per request-time window: what the KPI SQL runs over.
//!
//! A verification belongs to the window of its `requested` event (a cohort): its
//! attempts, receipts, cost and outcome count there, so a window's conversion rate
//! is "of the requests in this minute, how many were approved", exact once all of
//! them are decided. The provider of a verification is the one its first attempt
//! went to (the routing decision), `none` while nothing was sent.
//!
//! Emission is driven by the watermark: a window is first emitted when the
//! watermark passes its end (every request in it has arrived), again one window
//! later (most approvals and receipts of its requests are in by then; alerts are
//! evaluated at that instant too), and a last time, marked final, at end + TTL,
//! when every verification in it is decided. Undecided verifications are read as
//! of the watermark (only events before it count), decided ones as they were
//! decided. The final emission is deterministic: the same events in any arrival
//! order within the allowed lateness, or across a restore, give the same final
//! batch; provisional ones depend on when the watermark moved, and are overwritten
//! downstream by the later ones (same series and window start), so nothing is
//! counted twice.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::Text;
use crate::alerts::{Alert, AlertRule, AlertState, KeyStats, ScopeKey};
use crate::event::Channel;
use crate::forecast::{Forecast, Forecaster, HOUR_MS};
use crate::lifecycle::Verification;
use crate::outcome::{Outcome, OutcomeKind};
use crate::scoring::ScoreNote;
use crate::time::EventTime;

/// Provider tag of a verification nothing was sent for (yet).
pub const NO_PROVIDER: &str = "none";

/// One verification, as the KPI SQL sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiFact {
    pub tenant: Text,
    pub country: Text,
    pub channel: Channel,
    /// First attempt's provider, or [`NO_PROVIDER`].
    pub provider: Text,
    pub requested_at: EventTime,
    pub sent: u32,
    pub delivered: u32,
    pub undelivered: u32,
    pub cost: Option<f64>,
    /// `None` while undecided as of the emission.
    pub outcome: Option<OutcomeKind>,
    pub time_to_approve_ms: Option<i64>,
    /// Delivery receipts (time, delivered), for alerts evaluated as of an instant.
    pub receipts: Vec<(EventTime, bool)>,
    /// How the models scored the request (A/B variant, fraud score and decision).
    pub scored: Option<ScoreNote>,
}

impl KpiFact {
    fn from_decision(v: &Verification, o: &Outcome) -> KpiFact {
        KpiFact {
            tenant: o.tenant_id.clone(),
            country: o.country.clone(),
            channel: o.channel,
            provider: o
                .providers
                .first()
                .cloned()
                .unwrap_or_else(|| NO_PROVIDER.into()),
            requested_at: o.requested_at,
            sent: o.attempts,
            delivered: o.delivered,
            undelivered: o.undelivered,
            cost: o.cost,
            outcome: Some(o.outcome),
            time_to_approve_ms: o.time_to_approve_ms,
            receipts: sorted_receipts(v, |at| at <= o.decided_at),
            scored: o.scored.clone(),
        }
    }

    /// Approved, delivered and undelivered as of `t` (for alerts).
    fn counts_at(&self, t: EventTime) -> (bool, u32, u32) {
        let approved = self.outcome == Some(OutcomeKind::Approved)
            && self
                .time_to_approve_ms
                .is_some_and(|tta| self.requested_at + tta < t);
        let (d, u) =
            self.receipts
                .iter()
                .filter(|(at, _)| *at < t)
                .fold(
                    (0, 0),
                    |(d, u), (_, ok)| if *ok { (d + 1, u) } else { (d, u + 1) },
                );
        (approved, d, u)
    }

    /// An undecided verification, counting only events before `as_of`.
    fn as_of(v: &Verification, as_of: EventTime) -> Option<KpiFact> {
        let r = v.requested.as_ref()?;
        let mut sends: Vec<_> = v.sends.iter().filter(|s| s.at < as_of).collect();
        sends.sort_by(|a, b| (a.attempt, a.at, &a.provider).cmp(&(b.attempt, b.at, &b.provider)));
        let costs: Vec<f64> = sends.iter().filter_map(|s| s.cost).collect();
        let receipts = sorted_receipts(v, |at| at < as_of);
        let delivered = receipts.iter().filter(|(_, ok)| *ok).count() as u32;
        let undelivered = receipts.len() as u32 - delivered;
        Some(KpiFact {
            tenant: v.tenant_id.clone(),
            country: r.country.clone(),
            channel: r.channel,
            provider: sends
                .first()
                .map(|s| s.provider.clone())
                .unwrap_or_else(|| NO_PROVIDER.into()),
            requested_at: r.at,
            sent: sends.len() as u32,
            delivered,
            undelivered,
            cost: (!costs.is_empty()).then(|| costs.iter().sum()),
            outcome: None,
            time_to_approve_ms: None,
            receipts,
            scored: v.scored.clone(),
        })
    }
}

/// One emission of one window.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiWindowBatch {
    pub partition: i32,
    pub window_start: EventTime,
    pub window_end: EventTime,
    /// The watermark the undecided facts were read at.
    pub as_of: EventTime,
    /// Every verification in the window is decided; it will not be emitted again.
    pub is_final: bool,
    pub facts: Vec<KpiFact>,
    /// For a hopping window, its (size, every) in ms; `None` for the tumbling ones.
    pub hop: Option<(i64, i64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Window {
    /// Members in request order; `Some` once decided (frozen).
    members: Vec<(u128, Option<KpiFact>)>,
    next_emit: EventTime,
    /// Alert rules have looked at this window (one window after its end).
    evaluated: bool,
    /// Its requests were added to the hourly counts (at its first emission).
    counted: bool,
}

/// What [`KpiWindows::due`] produced.
#[derive(Debug, Default)]
pub struct Due {
    pub batches: Vec<KpiWindowBatch>,
    pub alerts: Vec<Alert>,
    pub forecasts: Vec<Forecast>,
}

/// The open KPI windows of one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiWindows {
    window_ms: i64,
    windows: BTreeMap<EventTime, Window>,
    /// Verification → its window start, until it is decided.
    member_of: BTreeMap<u128, EventTime>,
    alerts: AlertState,
    forecast: Forecaster,
    /// Final facts of recent windows, kept for the hopping windows that span them.
    retained: BTreeMap<EventTime, Vec<KpiFact>>,
    /// Per hopping window spec, the end of the next one to emit.
    next_hop: Vec<EventTime>,
}

impl KpiWindows {
    pub fn new(window_ms: i64) -> KpiWindows {
        KpiWindows {
            window_ms: window_ms.max(1),
            windows: BTreeMap::new(),
            member_of: BTreeMap::new(),
            alerts: AlertState::default(),
            forecast: Forecaster::default(),
            retained: BTreeMap::new(),
            next_hop: Vec::new(),
        }
    }

    fn start_of(&self, t: EventTime) -> EventTime {
        t.div_euclid(self.window_ms) * self.window_ms
    }

    /// A request passed the watermark: it joins its window.
    pub fn on_request(&mut self, key: u128, requested_at: EventTime) {
        if self.member_of.contains_key(&key) {
            return;
        }
        let start = self.start_of(requested_at);
        let end = start + self.window_ms;
        let w = self.windows.entry(start).or_insert_with(|| Window {
            members: Vec::new(),
            next_emit: end,
            evaluated: false,
            counted: false,
        });
        w.members.push((key, None));
        self.member_of.insert(key, start);
    }

    /// A verification was decided: its fact is frozen.
    pub fn on_decided(&mut self, key: u128, verification: &Verification, outcome: &Outcome) {
        let Some(start) = self.member_of.remove(&key) else {
            return;
        };
        if let Some(w) = self.windows.get_mut(&start)
            && let Some(slot) = w.members.iter_mut().find(|(k, _)| *k == key)
        {
            slot.1 = Some(KpiFact::from_decision(verification, outcome));
        }
    }

    /// Windows due at `watermark`, with their facts, and the alerts their
    /// evaluation fired; final windows are forgotten.
    #[allow(clippy::too_many_arguments)]
    pub fn due(
        &mut self,
        partition: i32,
        watermark: EventTime,
        ttl_ms: i64,
        rules: &[AlertRule],
        hops: &[(i64, i64)],
        open: &HashMap<u128, Verification, impl std::hash::BuildHasher>,
    ) -> Due {
        let mut out = Vec::new();
        let mut alerts = Vec::new();
        let mut finished = Vec::new();
        for (&start, w) in self.windows.iter_mut() {
            if w.next_emit > watermark {
                // Windows are visited in start order; later ones are due later.
                break;
            }
            let end = start + self.window_ms;
            if !w.counted {
                // Every request of the window is known once the watermark passed
                // its end: exact hourly counts for the forecasts.
                w.counted = true;
                let mut counts: BTreeMap<(Text, Text), u64> = BTreeMap::new();
                for (key, fact) in &w.members {
                    let who = match fact {
                        Some(f) => Some((f.tenant.clone(), f.country.clone())),
                        None => open.get(key).and_then(|v| {
                            v.requested
                                .as_ref()
                                .map(|r| (v.tenant_id.clone(), r.country.clone()))
                        }),
                    };
                    if let Some(who) = who {
                        *counts.entry(who).or_default() += 1;
                    }
                }
                self.forecast.add(start, &counts);
            }
            let evaluate_at = end + self.window_ms;
            if !w.evaluated && watermark >= evaluate_at {
                w.evaluated = true;
                if !rules.is_empty() {
                    let stats = stats_at(&w.members, open, evaluate_at);
                    let windows_per_hour = HOUR_MS as f64 / self.window_ms as f64;
                    let forecast = &self.forecast;
                    let expected = |key: &ScopeKey| {
                        forecast
                            .expected_per_hour(&(key.0.clone(), key.1.clone()))
                            .map(|per_hour| per_hour / windows_per_hour)
                    };
                    alerts.extend(self.alerts.evaluate(
                        rules,
                        partition,
                        start,
                        evaluate_at,
                        &stats,
                        &expected,
                    ));
                }
            }
            let is_final = (w.evaluated || rules.is_empty())
                && (watermark >= end + ttl_ms || w.members.iter().all(|(_, fact)| fact.is_some()));
            let facts: Vec<KpiFact> = w
                .members
                .iter()
                .filter_map(|(key, fact)| match fact {
                    Some(f) => Some(f.clone()),
                    None => open.get(key).and_then(|v| KpiFact::as_of(v, watermark)),
                })
                .collect();
            // Three emissions: at the close, one window later (most approvals
            // and receipts in), and final once every decision is possible.
            w.next_emit = if watermark < evaluate_at {
                evaluate_at
            } else {
                (end + ttl_ms).max(evaluate_at + 1)
            };
            if is_final {
                finished.push(start);
            }
            out.push(KpiWindowBatch {
                partition,
                window_start: start,
                window_end: end,
                // A final window holds only decided facts: as of the last
                // possible decision, whatever the watermark was.
                as_of: if is_final { end + ttl_ms } else { watermark },
                is_final,
                // Kept for the hopping windows only when there are any.
                facts: if is_final && !hops.is_empty() {
                    self.retained.insert(start, facts.clone());
                    facts
                } else {
                    facts
                },
                hop: None,
            });
        }
        for start in finished {
            if let Some(w) = self.windows.remove(&start) {
                for (key, _) in w.members {
                    self.member_of.remove(&key);
                }
            }
        }
        out.extend(self.hopping(partition, watermark, ttl_ms, hops));
        let forecasts = self.forecast.advance(partition, watermark);
        Due {
            batches: out,
            alerts,
            forecasts,
        }
    }
}

impl KpiWindows {
    /// Hopping windows (size, every) whose every tumbling window is final: one
    /// batch each over the retained facts of the windows inside it.
    fn hopping(
        &mut self,
        partition: i32,
        watermark: EventTime,
        ttl_ms: i64,
        hops: &[(i64, i64)],
    ) -> Vec<KpiWindowBatch> {
        let mut out = Vec::new();
        let (Some(&first), Some(&last)) = (
            self.retained.keys().next(),
            self.retained.keys().next_back(),
        ) else {
            return out;
        };
        if self.next_hop.len() != hops.len() {
            // The first hopping window ends at the first boundary after the data.
            self.next_hop = hops
                .iter()
                .map(|&(_, every)| (first.div_euclid(every) + 1) * every)
                .collect();
        }
        for (i, &(size, every)) in hops.iter().enumerate() {
            loop {
                let end = self.next_hop[i];
                // Complete once every window ending by `end` is final; and not past
                // the data (a drained stream's watermark is the end of time).
                if end.saturating_add(ttl_ms) > watermark || end - size > last {
                    break;
                }
                let facts: Vec<KpiFact> = self
                    .retained
                    .range(end - size..end)
                    .flat_map(|(_, f)| f.iter().cloned())
                    .collect();
                if !facts.is_empty() {
                    out.push(KpiWindowBatch {
                        partition,
                        window_start: end - size,
                        window_end: end,
                        as_of: end + ttl_ms,
                        is_final: true,
                        facts,
                        hop: Some((size, every)),
                    });
                }
                self.next_hop[i] = end + every;
            }
        }
        // Forget what no future hopping window needs.
        let keep_from = hops
            .iter()
            .zip(&self.next_hop)
            .map(|(&(size, _), &next)| next - size)
            .min()
            .unwrap_or(EventTime::MAX);
        self.retained = self.retained.split_off(&keep_from);
        out
    }
}

/// Per tenant × country × provider, what the window's requests show as of `t`.
fn stats_at(
    members: &[(u128, Option<KpiFact>)],
    open: &HashMap<u128, Verification, impl std::hash::BuildHasher>,
    t: EventTime,
) -> BTreeMap<ScopeKey, KeyStats> {
    let mut stats: BTreeMap<ScopeKey, KeyStats> = BTreeMap::new();
    for (key, fact) in members {
        let live;
        let (fact, (approved, delivered, undelivered)) = match fact {
            Some(f) => (f, f.counts_at(t)),
            None => {
                let Some(f) = open.get(key).and_then(|v| KpiFact::as_of(v, t)) else {
                    continue;
                };
                live = f;
                (&live, (false, live.delivered, live.undelivered))
            }
        };
        let s = stats
            .entry((
                fact.tenant.clone(),
                fact.country.clone(),
                fact.provider.clone(),
            ))
            .or_default();
        s.requests += 1;
        s.approved += u32::from(approved);
        s.delivered += delivered;
        s.undelivered += undelivered;
    }
    stats
}

/// Receipts in time order (arrival order must not show).
fn sorted_receipts(v: &Verification, keep: impl Fn(EventTime) -> bool) -> Vec<(EventTime, bool)> {
    let mut r: Vec<(EventTime, bool)> = v
        .receipts
        .iter()
        .filter(|x| keep(x.at))
        .map(|x| (x.at, x.delivered))
        .collect();
    r.sort_unstable();
    r
}
