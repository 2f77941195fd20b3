//! Delivery statistics per destination country × provider (route).
//!
//! Fed in event time as the partition's watermark passes each event, so a
//! partition's statistics are as deterministic as its outcomes and never wait
//! for a verification to be decided: a send counts when it happened, a receipt
//! (delivered or undelivered, with its latency) when the provider reported it,
//! an approval when the code was entered (for the attempt that got it through).
//! Counting at the decision instead would hold back failures — an undelivered
//! message's verification is decided only when it expires, ten minutes later —
//! and make every recent rate look better than it is.
//!
//! Rates decay exponentially in event time with three half-lives (5 min, 1 h, 24 h),
//! so a provider's recent behaviour dominates without hard window edges; lifetime
//! totals are kept beside them. One partition's numbers are published to a
//! compacted topic; summing every partition's latest snapshot gives the global view
//! ([`RouteSnapshot::merge`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Text;
use crate::time::{EventTime, MILLIS_PER_MINUTE};

/// Half-lives of the decayed counters, with their names on the wire.
pub const HALF_LIVES: [(&str, i64); 3] = [
    ("5m", 5 * MILLIS_PER_MINUTE),
    ("1h", 60 * MILLIS_PER_MINUTE),
    ("24h", 24 * 60 * MILLIS_PER_MINUTE),
];

/// Counts for one route, either decayed (as of `at`) or lifetime totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub sent: f64,
    pub delivered: f64,
    pub undelivered: f64,
    pub approved: f64,
    pub latency_ms_sum: f64,
    pub latency_n: f64,
}

impl Counts {
    fn scaled(self, k: f64) -> Counts {
        Counts {
            sent: self.sent * k,
            delivered: self.delivered * k,
            undelivered: self.undelivered * k,
            approved: self.approved * k,
            latency_ms_sum: self.latency_ms_sum * k,
            latency_n: self.latency_n * k,
        }
    }

    fn plus(self, o: Counts) -> Counts {
        Counts {
            sent: self.sent + o.sent,
            delivered: self.delivered + o.delivered,
            undelivered: self.undelivered + o.undelivered,
            approved: self.approved + o.approved,
            latency_ms_sum: self.latency_ms_sum + o.latency_ms_sum,
            latency_n: self.latency_n + o.latency_n,
        }
    }

    /// Delivered among attempts with a receipt; `None` without receipts.
    pub fn delivery_rate(&self) -> Option<f64> {
        let receipts = self.delivered + self.undelivered;
        (receipts > 0.0).then(|| self.delivered / receipts)
    }

    /// Approved per attempt; `None` without attempts.
    pub fn conversion_rate(&self) -> Option<f64> {
        (self.sent > 0.0).then(|| self.approved / self.sent)
    }

    pub fn mean_latency_ms(&self) -> Option<f64> {
        (self.latency_n > 0.0).then(|| self.latency_ms_sum / self.latency_n)
    }
}

/// One route's statistics as of event time `at`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteSnapshot {
    pub at: EventTime,
    /// Decayed counts, one per entry of [`HALF_LIVES`].
    pub decayed: [Counts; 3],
    pub total: Counts,
}

impl RouteSnapshot {
    /// The decayed counts brought forward to `t` (no change if `t` is earlier).
    pub fn decayed_to(&self, t: EventTime) -> [Counts; 3] {
        let dt = (t - self.at).max(0) as f64;
        let mut out = self.decayed;
        for (i, (_, half_life)) in HALF_LIVES.iter().enumerate() {
            out[i] = self.decayed[i].scaled(0.5f64.powf(dt / *half_life as f64));
        }
        out
    }

    fn add(&mut self, t: EventTime, c: Counts) {
        if t > self.at {
            self.decayed = self.decayed_to(t);
            self.at = t;
        }
        for d in &mut self.decayed {
            *d = d.plus(c);
        }
        self.total = self.total.plus(c);
    }

    /// Sums snapshots (of several partitions) as of the latest of their times.
    pub fn merge<'a>(parts: impl IntoIterator<Item = &'a RouteSnapshot>) -> RouteSnapshot {
        let parts: Vec<&RouteSnapshot> = parts.into_iter().collect();
        let at = parts.iter().map(|p| p.at).max().unwrap_or_default();
        let mut merged = RouteSnapshot {
            at,
            ..Default::default()
        };
        for p in parts {
            for (sum, part) in merged.decayed.iter_mut().zip(p.decayed_to(at)) {
                *sum = sum.plus(part);
            }
            merged.total = merged.total.plus(p.total);
        }
        merged
    }
}

/// A send or a receipt waiting for the watermark before it counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RouteEvent {
    Sent { provider: Text },
    Receipt { provider: Text, delivered: bool },
}

impl RouteEvent {
    pub fn of(kind: &crate::event::EventKind) -> Option<RouteEvent> {
        use crate::event::EventKind;
        match kind {
            EventKind::Sent(s) => Some(RouteEvent::Sent {
                provider: s.provider.clone(),
            }),
            EventKind::Delivered { provider } => Some(RouteEvent::Receipt {
                provider: provider.clone(),
                delivered: true,
            }),
            EventKind::Undelivered { provider, .. } => Some(RouteEvent::Receipt {
                provider: provider.clone(),
                delivered: false,
            }),
            _ => None,
        }
    }
}

/// One partition's route statistics, shared with readers on other threads
/// (the synchronous route calls); only its pipeline writes them.
pub type SharedRoutes = std::sync::Arc<std::sync::RwLock<RouteStats>>;

/// A partition's routes, keyed `(country, provider)`, with the set changed since the
/// last publication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteStats {
    routes: BTreeMap<(Text, Text), RouteSnapshot>,
    changed: Vec<(Text, Text)>,
}

impl RouteStats {
    /// Counts `c` for the route (`country`, `provider`) at event time `at`.
    fn record(&mut self, country: &Text, provider: &Text, at: EventTime, c: Counts) {
        let key = (country.clone(), provider.clone());
        self.routes.entry(key.clone()).or_default().add(at, c);
        if !self.changed.contains(&key) {
            self.changed.push(key);
        }
    }

    /// An attempt was sent.
    pub fn on_sent(&mut self, country: &Text, provider: &Text, at: EventTime) {
        let c = Counts {
            sent: 1.0,
            ..Counts::default()
        };
        self.record(country, provider, at, c);
    }

    /// The provider's receipt for an attempt; `latency_ms` when it was delivered
    /// and its send is known.
    pub fn on_receipt(
        &mut self,
        country: &Text,
        provider: &Text,
        at: EventTime,
        delivered: bool,
        latency_ms: Option<i64>,
    ) {
        let mut c = Counts::default();
        if delivered {
            c.delivered = 1.0;
            if let Some(ms) = latency_ms {
                c.latency_ms_sum = ms as f64;
                c.latency_n = 1.0;
            }
        } else {
            c.undelivered = 1.0;
        }
        self.record(country, provider, at, c);
    }

    /// A verification was approved at `at` through `provider` (its last
    /// attempt, [`crate::lifecycle::Verification::approving_route`]).
    pub fn on_approved(&mut self, country: &Text, provider: &Text, at: EventTime) {
        let c = Counts {
            approved: 1.0,
            ..Counts::default()
        };
        self.record(country, provider, at, c);
    }

    /// Every provider's statistics in `country`, by provider name.
    pub fn country(&self, country: &str) -> Vec<(Text, RouteSnapshot)> {
        let from = (Text::from(country), Text::default());
        self.routes
            .range(from..)
            .take_while(|((c, _), _)| c.as_str() == country)
            .map(|((_, provider), s)| (provider.clone(), s.clone()))
            .collect()
    }

    /// Routes changed since the last call, with their snapshots.
    pub fn take_changed(&mut self) -> Vec<((Text, Text), RouteSnapshot)> {
        let mut keys = std::mem::take(&mut self.changed);
        keys.sort();
        keys.into_iter()
            .filter_map(|k| self.routes.get(&k).map(|s| (k.clone(), s.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_halves_per_half_life_and_merge_aligns_times() {
        let mut a = RouteSnapshot::default();
        a.add(
            0,
            Counts {
                sent: 8.0,
                delivered: 8.0,
                ..Default::default()
            },
        );
        let later = a.decayed_to(5 * MILLIS_PER_MINUTE);
        assert!((later[0].sent - 4.0).abs() < 1e-9, "5 min half-life");
        assert!((later[1].sent - 8.0 * 0.5f64.powf(5.0 / 60.0)).abs() < 1e-9);
        let mut b = RouteSnapshot::default();
        b.add(
            5 * MILLIS_PER_MINUTE,
            Counts {
                sent: 2.0,
                undelivered: 2.0,
                ..Default::default()
            },
        );
        let m = RouteSnapshot::merge([&a, &b]);
        assert_eq!(m.at, 5 * MILLIS_PER_MINUTE);
        assert!((m.decayed[0].sent - 6.0).abs() < 1e-9);
        assert_eq!(m.total.sent, 10.0);
        assert_eq!(m.total.delivery_rate(), Some(0.8));
    }
}
