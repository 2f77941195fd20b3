//! The `verifications.outcomes` record (contract §2): one per verification, when final.

use std::borrow::Cow;

use crate::Text;
use serde::{Deserialize, Serialize};

use crate::event::Channel;
use crate::scoring::ScoreNote;
use crate::time::{EventTime, format_rfc3339};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeKind {
    Approved,
    Expired,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Approved => "approved",
            OutcomeKind::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The input partition whose operator decided it (its identity on replay).
    pub partition: i32,
    pub verification_id: Text,
    pub tenant_id: Text,
    pub outcome: OutcomeKind,
    pub requested_at: EventTime,
    /// Approval instant, or `requested_at + TTL` for an expiry.
    pub decided_at: EventTime,
    pub time_to_approve_ms: Option<i64>,
    pub country: Text,
    pub channel: Channel,
    pub service: Text,
    /// Providers tried, in attempt order (a provider tried twice appears twice).
    pub providers: Vec<Text>,
    pub attempts: u32,
    /// The first attempt's receipt: delivered, undelivered, or none by the
    /// decision (what the delivery model learns from; not on the wire).
    pub first_attempt_delivered: Option<bool>,
    pub delivered: u32,
    pub undelivered: u32,
    pub check_failed: u32,
    /// Sum of `sent.cost`; `None` when no cost was reported or currencies differ.
    pub cost: Option<f64>,
    pub currency: Option<Text>,
    /// How the models scored the request, when they did.
    pub scored: Option<ScoreNote>,
}

/// A `verifications.outcomes` record as written and read: the wire form.
/// Field names are part of the public contract. Writers borrow from an
/// [`Outcome`]; readers (the webhook fan-out) get owned values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord<'a> {
    /// Deterministic id: a replayed outcome carries the same id.
    #[serde(borrow)]
    pub outcome_id: Cow<'a, str>,
    #[serde(borrow)]
    pub verification_id: Cow<'a, str>,
    #[serde(borrow)]
    pub tenant_id: Cow<'a, str>,
    pub outcome: OutcomeKind,
    pub requested_at: String,
    pub decided_at: String,
    pub time_to_approve_ms: Option<i64>,
    #[serde(borrow)]
    pub country: Cow<'a, str>,
    pub channel: Channel,
    #[serde(borrow)]
    pub service: Cow<'a, str>,
    pub providers: Cow<'a, [Text]>,
    pub attempts: u32,
    pub failed_attempts: u32,
    pub delivered: u32,
    pub undelivered: u32,
    pub check_failed: u32,
    pub cost: Option<f64>,
    #[serde(borrow)]
    pub currency: Option<Cow<'a, str>>,
    /// The scores the verification was given at request time (`variant`,
    /// `fraud_score`, `fraud_decision`); `null` when no models are deployed.
    pub scores: Option<Cow<'a, ScoreNote>>,
}

impl Outcome {
    /// A failed attempt is a `sent` event of a verification that did not succeed
    /// (contract §1).
    pub fn failed_attempts(&self) -> u32 {
        match self.outcome {
            OutcomeKind::Approved => 0,
            OutcomeKind::Expired => self.attempts,
        }
    }

    pub fn outcome_id(&self) -> String {
        format!("{}:{}", self.tenant_id, self.verification_id)
    }

    /// The record as written to `verifications.outcomes`.
    pub fn record(&self) -> OutcomeRecord<'_> {
        OutcomeRecord {
            outcome_id: Cow::Owned(self.outcome_id()),
            verification_id: Cow::Borrowed(&self.verification_id),
            tenant_id: Cow::Borrowed(&self.tenant_id),
            outcome: self.outcome,
            requested_at: format_rfc3339(self.requested_at),
            decided_at: format_rfc3339(self.decided_at),
            time_to_approve_ms: self.time_to_approve_ms,
            country: Cow::Borrowed(&self.country),
            channel: self.channel,
            service: Cow::Borrowed(&self.service),
            providers: Cow::Borrowed(&self.providers),
            attempts: self.attempts,
            failed_attempts: self.failed_attempts(),
            delivered: self.delivered,
            undelivered: self.undelivered,
            check_failed: self.check_failed,
            cost: self.cost,
            currency: self.currency.as_deref().map(Cow::Borrowed),
            scores: self.scored.as_ref().map(Cow::Borrowed),
        }
    }

    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serializing plain structs of strings and numbers cannot fail.
        serde_json::to_vec(&self.record()).unwrap_or_default()
    }
}
