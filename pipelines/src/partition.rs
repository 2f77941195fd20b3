//! The operator for one input partition: watermark, dedup, lifecycle join, timers.
//!
//! Producers key events by `tenant_id`, so every event of a verification lands in one
//! partition, and a partition can be processed on its own. Results then depend only
//! on that partition's event sequence, not on how partitions are spread over threads
//! or instances.
//!
//! Event time: the partition's watermark is the largest event time seen minus the
//! allowed lateness. An event older than the watermark is *late* and goes to the late
//! output. A verification is decided once the watermark passes its deadline (see
//! [`crate::lifecycle`]); because nothing at or before the deadline can still arrive
//! without being late, the decision never depends on arrival order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};

use crate::lifecycle::{Applied, HeldRecord, Verification};
use crate::outcome::Outcome;
use crate::reject::{RejectReason, Rejected, Rejection};
use crate::time::{EventTime, format_rfc3339};
use crate::validate::{ValidationLimits, parse_event};

/// Settings of the streaming core. See `[pipeline]` in `veriflow.example.toml`.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// A verification not approved this long after `requested` has expired.
    pub ttl_ms: i64,
    /// How far behind the newest event of a partition an event may arrive.
    pub allowed_lateness_ms: i64,
    /// How long after its deadline a decided verification is remembered, so that its
    /// stragglers (a late delivery receipt) are recognised instead of becoming orphans.
    pub retention_after_decision_ms: i64,
    pub limits: ValidationLimits,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            ttl_ms: 10 * 60 * 1000,
            allowed_lateness_ms: 2 * 60 * 1000,
            retention_after_decision_ms: 10 * 60 * 1000,
            limits: ValidationLimits::default(),
        }
    }
}

/// One input record as the source hands it over.
#[derive(Debug, Clone, Copy)]
pub struct InputRecord<'a> {
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// Everything the operator emits.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Outcome(Outcome),
    Rejected(Rejected),
}

/// Counters for the summary and metrics. Not part of the checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionStats {
    pub received: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
    pub late: u64,
    pub orphaned: u64,
    /// Events for verifications already decided (receipts after approval, ...).
    pub after_decision: u64,
    pub outcomes: u64,
}

type VerificationKey = (String, String); // (tenant_id, verification_id)

pub struct PartitionPipeline {
    partition: i32,
    /// The next input offset to process; earlier offsets are already in the state.
    next_offset: i64,
    max_event_time: Option<EventTime>,
    open: HashMap<VerificationKey, Verification>,
    /// Deadlines, lazily invalidated: an entry is live only if it equals the
    /// verification's current deadline.
    timers: BinaryHeap<Reverse<(EventTime, VerificationKey)>>,
    decided: HashMap<VerificationKey, EventTime>,
    decided_expiry: BinaryHeap<Reverse<(EventTime, VerificationKey)>>,
    stats: PartitionStats,
}

impl PartitionPipeline {
    pub fn new(partition: i32) -> Self {
        PartitionPipeline {
            partition,
            next_offset: 0,
            max_event_time: None,
            open: HashMap::new(),
            timers: BinaryHeap::new(),
            decided: HashMap::new(),
            decided_expiry: BinaryHeap::new(),
            stats: PartitionStats::default(),
        }
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn stats(&self) -> &PartitionStats {
        &self.stats
    }

    /// Verifications still waiting for their decision.
    pub fn in_flight(&self) -> usize {
        self.open.len()
    }

    /// Largest event time minus lateness; `None` before the first event.
    pub fn watermark(&self, cfg: &PipelineConfig) -> Option<EventTime> {
        self.max_event_time.map(|t| t - cfg.allowed_lateness_ms)
    }

    /// Processes one record. Records at offsets already reflected in the state (a
    /// replay after restore) are skipped. Call [`Self::fire_timers`] after a batch.
    pub fn process(
        &mut self,
        cfg: &PipelineConfig,
        record: InputRecord<'_>,
        now: EventTime,
        out: &mut Vec<Output>,
    ) {
        if record.offset < self.next_offset {
            return;
        }
        self.next_offset = record.offset + 1;
        self.stats.received += 1;

        let event = match parse_event(record.payload, &cfg.limits, now) {
            Ok(event) => event,
            Err(rejection) => {
                self.stats.dead_lettered += 1;
                out.push(Output::Rejected(self.rejected(rejection, record)));
                return;
            }
        };
        if let Some(wm) = self.watermark(cfg)
            && event.occurred_at < wm
        {
            self.stats.late += 1;
            let detail = format!(
                "occurred_at {} is older than the partition watermark {}",
                format_rfc3339(event.occurred_at),
                format_rfc3339(wm)
            );
            out.push(Output::Rejected(self.rejected(
                Rejection::field(RejectReason::Late, "occurred_at", detail),
                record,
            )));
            return;
        }
        self.max_event_time = Some(
            self.max_event_time
                .map_or(event.occurred_at, |m| m.max(event.occurred_at)),
        );

        let key = (event.tenant_id.clone(), event.verification_id.clone());
        if self.decided.contains_key(&key) {
            self.stats.after_decision += 1;
            return;
        }
        let first_at = event.occurred_at;
        let verification = self
            .open
            .entry(key.clone())
            .or_insert_with(|| Verification::new(&key.0, first_at));
        let before = verification.deadline(cfg.ttl_ms);
        let applied = verification.apply(event, || HeldRecord {
            offset: record.offset,
            key: record.key.map(<[u8]>::to_vec),
            payload: record.payload.to_vec(),
        });
        match applied {
            Applied::Duplicate => self.stats.duplicates += 1,
            Applied::New => {
                self.stats.accepted += 1;
                let after = verification.deadline(cfg.ttl_ms);
                if after != before || verification.seen.len() == 1 {
                    self.timers.push(Reverse((after, key)));
                }
            }
        }
    }

    /// Decides every verification whose deadline the watermark has passed, in
    /// (deadline, tenant, verification) order, and forgets expired tombstones.
    pub fn fire_timers(&mut self, cfg: &PipelineConfig, out: &mut Vec<Output>) {
        if let Some(wm) = self.watermark(cfg) {
            self.fire_until(cfg, wm, out);
        }
    }

    /// End of a bounded input: the watermark jumps to +∞ and everything is decided.
    pub fn drain(&mut self, cfg: &PipelineConfig, out: &mut Vec<Output>) {
        self.fire_until(cfg, EventTime::MAX, out);
    }

    fn fire_until(&mut self, cfg: &PipelineConfig, watermark: EventTime, out: &mut Vec<Output>) {
        while let Some(Reverse((deadline, _))) = self.timers.peek() {
            if *deadline >= watermark {
                break;
            }
            let Some(Reverse((deadline, key))) = self.timers.pop() else {
                break;
            };
            let live = self
                .open
                .get(&key)
                .is_some_and(|v| v.deadline(cfg.ttl_ms) == deadline);
            if !live {
                continue;
            }
            let Some(verification) = self.open.remove(&key) else {
                continue;
            };
            match verification.outcome(&key.1, cfg.ttl_ms) {
                Some(outcome) => {
                    self.stats.outcomes += 1;
                    out.push(Output::Outcome(outcome));
                }
                None => {
                    for held in verification.held {
                        self.stats.orphaned += 1;
                        let detail =
                            format!("no verification.requested for `{}` within the TTL", key.1);
                        out.push(Output::Rejected(Rejected {
                            rejection: Rejection::field(
                                RejectReason::Orphan,
                                "verification_id",
                                detail,
                            ),
                            partition: self.partition,
                            offset: held.offset,
                            key: held.key,
                            payload: held.payload,
                        }));
                    }
                }
            }
            let forget_at = deadline.saturating_add(cfg.retention_after_decision_ms);
            self.decided.insert(key.clone(), forget_at);
            self.decided_expiry.push(Reverse((forget_at, key)));
        }
        while let Some(Reverse((forget_at, _))) = self.decided_expiry.peek() {
            if *forget_at >= watermark {
                break;
            }
            if let Some(Reverse((_, key))) = self.decided_expiry.pop() {
                self.decided.remove(&key);
            }
        }
    }

    fn rejected(&self, rejection: Rejection, record: InputRecord<'_>) -> Rejected {
        Rejected {
            rejection,
            partition: self.partition,
            offset: record.offset,
            key: record.key.map(<[u8]>::to_vec),
            payload: record.payload.to_vec(),
        }
    }

    /// The state to checkpoint. Sorted, so equal states give equal bytes.
    pub fn snapshot(&self) -> PartitionState {
        let mut open: Vec<_> = self
            .open
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        open.sort_by(|a, b| a.0.cmp(&b.0));
        let mut decided: Vec<_> = self.decided.iter().map(|(k, v)| (k.clone(), *v)).collect();
        decided.sort();
        PartitionState {
            partition: self.partition,
            next_offset: self.next_offset,
            max_event_time: self.max_event_time,
            open,
            decided,
        }
    }

    /// Rebuilds the operator from a checkpoint; timers are derived, not stored.
    pub fn restore(cfg: &PipelineConfig, state: PartitionState) -> Self {
        let mut p = PartitionPipeline::new(state.partition);
        p.next_offset = state.next_offset;
        p.max_event_time = state.max_event_time;
        for (key, v) in state.open {
            p.timers
                .push(Reverse((v.deadline(cfg.ttl_ms), key.clone())));
            p.open.insert(key, v);
        }
        for (key, forget_at) in state.decided {
            p.decided_expiry.push(Reverse((forget_at, key.clone())));
            p.decided.insert(key, forget_at);
        }
        p
    }
}

/// The checkpointed state of one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionState {
    pub partition: i32,
    pub next_offset: i64,
    pub max_event_time: Option<EventTime>,
    pub open: Vec<(VerificationKey, Verification)>,
    pub decided: Vec<(VerificationKey, EventTime)>,
}
