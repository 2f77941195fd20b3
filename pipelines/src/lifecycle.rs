//! One verification's lifecycle: the events seen so far and the rule that decides it.
//!
//! The rule (contract §1): a verification **succeeds** when an `approved` event occurs
//! within the TTL after `requested`; otherwise it **expires** at `requested + TTL`.
//! Its *deadline* is the earliest approval within the TTL, or the expiry instant. The
//! outcome is computed only from events that occurred at or before the deadline, so it
//! depends on the set of events, never on the order in which they arrived.

use crate::Text;
use serde::{Deserialize, Serialize};

use crate::event::{Channel, Event, EventKind};
use crate::outcome::{Outcome, OutcomeKind};
use crate::scoring::ScoreNote;
use crate::time::EventTime;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestInfo {
    pub at: EventTime,
    pub country: Text,
    pub channel: Channel,
    pub service: Text,
    pub phone_number: Text,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendInfo {
    pub at: EventTime,
    pub attempt: u32,
    pub provider: Text,
    pub cost: Option<f64>,
    pub currency: Option<Text>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub at: EventTime,
    pub delivered: bool,
    pub provider: Text,
}

/// A raw input held while its verification's `requested` event is still unknown, so
/// that it can be handed to the late output if that event never comes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldRecord {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub tenant_id: Text,
    pub verification_id: Text,
    pub requested: Option<RequestInfo>,
    /// Earliest event time seen; bounds how long an orphan is kept.
    pub first_event_at: EventTime,
    /// Hashes of the event ids already applied (dedup within the verification).
    pub seen: Vec<u64>,
    pub sends: Vec<SendInfo>,
    pub receipts: Vec<Receipt>,
    pub approvals: Vec<EventTime>,
    pub check_failures: Vec<EventTime>,
    /// Raw inputs kept only until `requested` arrives.
    pub held: Vec<HeldRecord>,
    /// How the models scored the request (when they did).
    pub scored: Option<ScoreNote>,
    /// The success model's raw `p_success` per candidate provider, for the
    /// feedback to calibrate against the first attempt's outcome (not
    /// published: the outcome record carries `scored` only).
    pub success_raw: Vec<(Text, f32)>,
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    New,
    Duplicate,
}

impl Verification {
    /// The route (country, provider) of the attempt that got the code through
    /// when the verification was approved at `at`: the last attempt sent by then.
    pub fn approving_route(&self, at: EventTime) -> Option<(&Text, &Text)> {
        let request = self.requested.as_ref()?;
        let last =
            self.sends.iter().filter(|s| s.at <= at).max_by(|a, b| {
                (a.attempt, a.at, &a.provider).cmp(&(b.attempt, b.at, &b.provider))
            })?;
        Some((&request.country, &last.provider))
    }

    pub fn new(tenant_id: &str, verification_id: &str, first_event_at: EventTime) -> Self {
        Verification {
            tenant_id: tenant_id.into(),
            verification_id: verification_id.into(),
            requested: None,
            first_event_at,
            seen: Vec::new(),
            sends: Vec::new(),
            receipts: Vec::new(),
            approvals: Vec::new(),
            check_failures: Vec::new(),
            held: Vec::new(),
            scored: None,
            success_raw: Vec::new(),
        }
    }

    /// Folds one event in. A second event with the same `event_id` changes nothing.
    pub fn apply(&mut self, event: Event, held: impl FnOnce() -> HeldRecord) -> Applied {
        let id_hash = veriflow_common::hash::fnv1a64(event.event_id.as_bytes());
        if self.seen.contains(&id_hash) {
            return Applied::Duplicate;
        }
        self.seen.push(id_hash);
        self.first_event_at = self.first_event_at.min(event.occurred_at);
        let at = event.occurred_at;
        match event.kind {
            EventKind::Requested(r) => {
                // The first `requested` (by event id) wins; a second distinct one is
                // a producer bug we tolerate by keeping the earlier instant.
                let replace = self.requested.as_ref().is_none_or(|prev| at < prev.at);
                if replace {
                    self.requested = Some(RequestInfo {
                        at,
                        country: r.country,
                        channel: r.channel,
                        service: r.service,
                        phone_number: r.phone_number,
                    });
                }
                self.held = Vec::new();
            }
            EventKind::Sent(s) => self.sends.push(SendInfo {
                at,
                attempt: s.attempt,
                provider: s.provider,
                cost: s.cost,
                currency: s.currency,
            }),
            EventKind::Delivered { provider } => self.receipts.push(Receipt {
                at,
                delivered: true,
                provider,
            }),
            EventKind::Undelivered { provider, .. } => self.receipts.push(Receipt {
                at,
                delivered: false,
                provider,
            }),
            EventKind::Approved => self.approvals.push(at),
            EventKind::CheckFailed => self.check_failures.push(at),
        }
        if self.requested.is_none() {
            self.held.push(held());
        }
        Applied::New
    }

    /// The event-time instant at which this verification is decided.
    pub fn deadline(&self, ttl_ms: i64) -> EventTime {
        match &self.requested {
            Some(r) => {
                let expiry = r.at + ttl_ms;
                self.first_approval(expiry).unwrap_or(expiry)
            }
            None => self.first_event_at + ttl_ms,
        }
    }

    fn first_approval(&self, expiry: EventTime) -> Option<EventTime> {
        self.approvals
            .iter()
            .copied()
            .filter(|&a| a <= expiry)
            .min()
    }

    /// The provider's receipt for `send`: its first at or after the send, by
    /// `deadline`.
    pub fn receipt_for(&self, send: &SendInfo, deadline: EventTime) -> Option<&Receipt> {
        self.receipts
            .iter()
            .filter(|r| r.provider == send.provider && r.at >= send.at && r.at <= deadline)
            .min_by_key(|r| r.at)
    }

    /// The final outcome, or `None` for an orphan (no `requested` seen).
    pub fn outcome(&self, partition: i32, ttl_ms: i64) -> Option<Outcome> {
        let r = self.requested.as_ref()?;
        let deadline = self.deadline(ttl_ms);
        let approved_at = self.first_approval(r.at + ttl_ms);
        let within = |t: EventTime| t <= deadline;

        let mut sends: Vec<&SendInfo> = self.sends.iter().filter(|s| within(s.at)).collect();
        sends.sort_by(|a, b| (a.attempt, a.at, &a.provider).cmp(&(b.attempt, b.at, &b.provider)));
        let currency = sends.iter().find_map(|s| s.currency.clone());
        let mixed = sends
            .iter()
            .any(|s| s.currency.is_some() && s.currency != currency);
        let costs: Vec<f64> = sends.iter().filter_map(|s| s.cost).collect();
        let cost = if costs.is_empty() || mixed {
            None
        } else {
            Some(costs.iter().sum())
        };

        Some(Outcome {
            partition,
            verification_id: self.verification_id.clone(),
            tenant_id: self.tenant_id.clone(),
            outcome: if approved_at.is_some() {
                OutcomeKind::Approved
            } else {
                OutcomeKind::Expired
            },
            requested_at: r.at,
            decided_at: deadline,
            time_to_approve_ms: approved_at.map(|a| (a - r.at).max(0)),
            country: r.country.clone(),
            channel: r.channel,
            service: r.service.clone(),
            providers: sends.iter().map(|s| s.provider.clone()).collect(),
            first_attempt_delivered: sends
                .first()
                .and_then(|s| self.receipt_for(s, deadline))
                .map(|r| r.delivered),
            scored: self.scored.clone(),
            attempts: sends.len() as u32,
            delivered: self
                .receipts
                .iter()
                .filter(|x| x.delivered && within(x.at))
                .count() as u32,
            undelivered: self
                .receipts
                .iter()
                .filter(|x| !x.delivered && within(x.at))
                .count() as u32,
            check_failed: self.check_failures.iter().filter(|&&t| within(t)).count() as u32,
            cost,
            currency: if mixed { None } else { currency },
        })
    }
}
