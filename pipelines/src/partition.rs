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

use std::sync::{Arc, PoisonError, RwLock};

use foldhash::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::Text;
use crate::alerts::Alert;
use crate::config::PipelineConfig;
use crate::event::EventKind;
use crate::features::{FeatureRecord, FeatureRequest, FeatureState};
use crate::feedback::{Decided, Feedback, FeedbackState, SharedFeedback, learned_at};
use crate::forecast::Forecast;
use crate::key::verification_key;
use crate::kpi::{KpiWindowBatch, KpiWindows};
use crate::lifecycle::{Applied, HeldRecord, Verification};
use crate::live::{SharedFeatures, SharedPartition};
use crate::outcome::Outcome;
use crate::reject::{RejectReason, Rejected, Rejection};
use crate::routes::{RouteEvent, RouteSnapshot, RouteStats, SharedRoutes};
use crate::scoring::{ScoredRequest, ScorerHandle};
use crate::time::{EventTime, format_rfc3339};
use crate::time_queue::TimeQueue;
use crate::validate::parse_event;

/// One input record as the source hands it over.
#[derive(Debug, Clone, Copy)]
pub struct InputRecord<'a> {
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// Everything the operator emits.
// Features is the most common variant (one per request, beside its
// outcome): boxing it to shrink the rest would allocate once per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Outcome(Outcome),
    Rejected(Rejected),
    Features(FeatureRecord),
    /// A request's verdict, when a scorer is configured (before its features).
    Scored(ScoredRequest),
    /// A KPI window's facts (idempotent downstream: never suppressed).
    Kpi(KpiWindowBatch),
    /// An alert rule fired.
    Alert(Alert),
    /// Demand forecasts made as an hour completed (idempotent downstream).
    Forecast(Forecast),
}

/// The identity of an output: the same input always yields the same ids, so an
/// output written before a crash is recognised when the replay produces it again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OutputId {
    /// `outcome_id` (tenant and verification).
    Outcome(String),
    /// The source offset of a dead-lettered or late record (at most one per input).
    Rejected(i64),
    /// `features_id` (tenant, verification and request event).
    Features(String),
    /// A KPI emission: window start and the watermark it was read at.
    Kpi(EventTime, EventTime),
    /// `alert_id` (rule, key, window).
    Alert(String),
    /// Tenant, country and the instant the forecast was made.
    Forecast(String, String, EventTime),
    /// The scored record of a request: its `features_id`.
    Scored(String),
}

impl Output {
    pub fn id(&self) -> OutputId {
        match self {
            Output::Outcome(o) => OutputId::Outcome(o.outcome_id()),
            Output::Rejected(r) => OutputId::Rejected(r.offset),
            Output::Features(f) => OutputId::Features(f.features_id()),
            Output::Scored(s) => OutputId::Scored(s.scored_id.clone()),
            Output::Kpi(k) => OutputId::Kpi(k.window_start, k.as_of),
            Output::Alert(a) => OutputId::Alert(a.alert_id()),
            Output::Forecast(f) => {
                OutputId::Forecast(f.tenant.to_string(), f.country.to_string(), f.made_at)
            }
        }
    }
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
    /// Outputs not emitted again because a crashed run had already written them.
    pub suppressed: u64,
    /// Offsets the source jumped over between two records.
    pub skipped_offsets: u64,
    /// Feature vectors computed (one per accepted request).
    pub featurized: u64,
}

/// See [`verification_key`].
type VerificationKey = u128;

pub struct PartitionPipeline {
    partition: i32,
    /// The next input offset to process; earlier offsets are already in the state.
    next_offset: i64,
    max_event_time: Option<EventTime>,
    /// `max_event_time` as of the last record (idle advance starts from here).
    event_time_at_last_record: Option<EventTime>,
    open: HashMap<VerificationKey, Verification>,
    /// Deadlines, lazily invalidated: an entry is live only if it equals the
    /// verification's current deadline.
    timers: TimeQueue<VerificationKey>,
    decided: HashMap<VerificationKey, EventTime>,
    decided_expiry: TimeQueue<VerificationKey>,
    /// Where the outputs stood at the last checkpoint (see [`SinkPosition`]).
    sink_positions: Vec<SinkPosition>,
    /// Outputs written by a crashed run that the replay has not reached yet.
    already_written: HashSet<OutputId>,
    /// Accepted requests waiting for the watermark, in event-time order.
    feature_queue: TimeQueue<(VerificationKey, FeatureRequest)>,
    /// Sends and receipts waiting for the watermark before they count in the
    /// route statistics.
    route_queue: TimeQueue<(VerificationKey, RouteEvent)>,
    /// Shared with [`crate::LiveFeatures`] readers; only this pipeline writes it.
    features: SharedFeatures,
    /// Shared with [`crate::LiveFeatures`] readers; only this pipeline writes it.
    routes: SharedRoutes,
    /// Shared with [`crate::LiveFeatures`] readers; only this pipeline writes it.
    feedback: SharedFeedback,
    kpi: Option<KpiWindows>,
    stats: PartitionStats,
}

/// The end of one output partition at checkpoint time. After a crash, outputs past
/// these positions may already hold what the replay is about to emit again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl PartitionPipeline {
    pub fn new(partition: i32) -> Self {
        PartitionPipeline {
            partition,
            next_offset: 0,
            max_event_time: None,
            event_time_at_last_record: None,
            open: HashMap::default(),
            timers: TimeQueue::default(),
            decided: HashMap::default(),
            decided_expiry: TimeQueue::default(),
            sink_positions: Vec::new(),
            already_written: HashSet::default(),
            feature_queue: TimeQueue::default(),
            route_queue: TimeQueue::default(),
            features: SharedFeatures::default(),
            routes: SharedRoutes::default(),
            feedback: SharedFeedback::default(),
            kpi: None,
            stats: PartitionStats::default(),
        }
    }

    /// This partition's feature state, route statistics and feedback, for
    /// readers on other threads.
    pub fn shared(&self) -> SharedPartition {
        SharedPartition {
            features: self.features.clone(),
            routes: self.routes.clone(),
            feedback: self.feedback.clone(),
        }
    }

    fn routes_mut(&self) -> std::sync::RwLockWriteGuard<'_, RouteStats> {
        self.routes.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn features_mut(&self) -> std::sync::RwLockWriteGuard<'_, FeatureState> {
        self.features
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn stats(&self) -> &PartitionStats {
        &self.stats
    }

    pub fn sink_positions(&self) -> &[SinkPosition] {
        &self.sink_positions
    }

    pub fn set_sink_positions(&mut self, positions: Vec<SinkPosition>) {
        self.sink_positions = positions;
    }

    /// Requests waiting for the watermark before their features are computed.
    pub fn features_pending(&self) -> usize {
        self.feature_queue.len()
    }

    /// Decided verifications still remembered for their stragglers.
    pub fn decided_remembered(&self) -> usize {
        self.decided.len()
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
        if self.next_offset > 0 && record.offset > self.next_offset {
            // The source skipped offsets: transaction markers or compaction on Kafka,
            // or a broker that lost them. Counted so it is never silent.
            self.stats.skipped_offsets += (record.offset - self.next_offset) as u64;
            tracing::debug!(
                partition = self.partition,
                from = self.next_offset,
                to = record.offset,
                "offset gap"
            );
        }
        self.next_offset = record.offset + 1;
        self.stats.received += 1;

        let event = match parse_event(record.payload, &cfg.limits, now) {
            Ok(event) => event,
            Err(rejection) => {
                self.stats.dead_lettered += 1;
                let rejected = self.rejected(rejection, record);
                self.emit(out, Output::Rejected(rejected));
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
            let rejected = self.rejected(
                Rejection::field(RejectReason::Late, "occurred_at", detail),
                record,
            );
            self.emit(out, Output::Rejected(rejected));
            return;
        }
        self.max_event_time = Some(
            self.max_event_time
                .map_or(event.occurred_at, |m| m.max(event.occurred_at)),
        );
        self.event_time_at_last_record = self.max_event_time;

        let key = verification_key(&event.tenant_id, &event.verification_id);
        if self.decided.contains_key(&key) {
            self.stats.after_decision += 1;
            return;
        }
        let first_at = event.occurred_at;
        let verification = self.open.entry(key).or_insert_with(|| {
            Verification::new(&event.tenant_id, &event.verification_id, first_at)
        });
        let before = verification.deadline(cfg.ttl_ms);
        let request = match &event.kind {
            EventKind::Requested(r) => Some(FeatureRequest {
                tenant_id: event.tenant_id.clone(),
                verification_id: event.verification_id.clone(),
                event_id: event.event_id.clone(),
                at: event.occurred_at,
                phone_number: r.phone_number.clone(),
                country: r.country.clone(),
                ip: r.ip.map(|ip| Text::from(ip.to_string())),
                ip_country: r.ip_country.clone(),
                device_id: r.device_id.clone(),
            }),
            _ => None,
        };
        let route_event = RouteEvent::of(&event.kind);
        let occurred_at = event.occurred_at;
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
                    self.timers.push(after, key);
                }
                if let Some(request) = request {
                    self.feature_queue.push(request.at, (key, request));
                }
                if let Some(e) = route_event {
                    self.route_queue.push(occurred_at, (key, e));
                }
            }
        }
    }

    /// Decides every verification whose deadline the watermark has passed, in
    /// (deadline, key) order, and forgets expired tombstones.
    pub fn fire_timers(&mut self, cfg: &PipelineConfig, out: &mut Vec<Output>) {
        if let Some(wm) = self.watermark(cfg) {
            self.fire_until(cfg, wm, out);
        }
    }

    /// The partition has been silent at its head for `idle_for_ms` of wall-clock
    /// time: move its event time on to the later of (last record + silence) and the
    /// wall clock `now`, so that open verifications are still decided — promptly for
    /// a finished historical stream, at wall-clock pace for live traffic. Only called
    /// when caught up, never while a backlog is being read.
    pub fn advance_idle(
        &mut self,
        cfg: &PipelineConfig,
        idle_for_ms: i64,
        now: EventTime,
        out: &mut Vec<Output>,
    ) {
        let Some(base) = self.event_time_at_last_record else {
            return;
        };
        let advanced = base.saturating_add(idle_for_ms).max(now);
        if self.max_event_time.is_none_or(|m| advanced > m) {
            self.max_event_time = Some(advanced);
            self.fire_timers(cfg, out);
        }
    }

    /// End of a bounded input: the watermark jumps to +∞ and everything is decided.
    pub fn drain(&mut self, cfg: &PipelineConfig, out: &mut Vec<Output>) {
        self.fire_until(cfg, EventTime::MAX, out);
    }

    /// Releases, in event-time order, every request, send, receipt and decision
    /// the watermark has passed. At equal times requests go first (a request's
    /// features see only what happened strictly before it), then sends and
    /// receipts, then decisions (which count what happened up to them).
    fn fire_until(&mut self, cfg: &PipelineConfig, watermark: EventTime, out: &mut Vec<Output>) {
        if self.kpi.is_none()
            && let Some(window_ms) = cfg.kpi_window_ms
        {
            self.kpi = Some(KpiWindows::new(window_ms));
        }
        loop {
            let request = self.feature_queue.peek_time().filter(|t| *t < watermark);
            let route = self.route_queue.peek_time().filter(|t| *t < watermark);
            let decision = self.timers.peek_time().filter(|d| *d < watermark);
            // The earliest of the three; ties in that order.
            let next = [(request, 0), (route, 1), (decision, 2)]
                .into_iter()
                .filter_map(|(t, kind)| Some((t?, kind)))
                .min();
            match next {
                None => break,
                Some((_, 0)) => self.featurize_next(cfg, out),
                Some((_, 1)) => self.count_route_event(),
                Some(_) => self.decide_next(cfg, out),
            }
        }
        while self
            .decided_expiry
            .peek_time()
            .is_some_and(|forget_at| forget_at < watermark)
        {
            if let Some((_, key)) = self.decided_expiry.pop() {
                self.decided.remove(&key);
            }
        }
        if let Some(kpi) = &mut self.kpi {
            let due = kpi.due(
                self.partition,
                watermark,
                cfg.ttl_ms,
                &cfg.alert_rules,
                &cfg.kpi_hops,
                &self.open,
            );
            out.extend(due.batches.into_iter().map(Output::Kpi));
            out.extend(due.forecasts.into_iter().map(Output::Forecast));
            for alert in due.alerts {
                self.emit(out, Output::Alert(alert));
            }
        }
    }

    fn featurize_next(&mut self, cfg: &PipelineConfig, out: &mut Vec<Output>) {
        let Some((requested_at, (key, request))) = self.feature_queue.pop() else {
            return;
        };
        if let Some(kpi) = &mut self.kpi {
            kpi.on_request(key, requested_at);
        }
        let features = self.features_mut().on_request(&request);
        self.stats.featurized += 1;
        // The request's country's routes as the watermark left them: every
        // send and receipt before the request, none after — a function of the
        // partition's events, whatever the pace they arrive at.
        // Likewise the feedback: outcomes the watermark decided before it.
        let (routes, feedback) = if cfg.scorer.is_some() || cfg.request_routes {
            let routes = self
                .routes
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .country(&request.country);
            let mut feedback = self
                .feedback
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            feedback.advance(requested_at);
            let feedback = feedback.for_request(&request.tenant_id, &request.country);
            (routes, feedback)
        } else {
            (Vec::new(), Feedback::default())
        };
        let record = FeatureRecord {
            partition: self.partition,
            request,
            features,
            routes,
            feedback,
        };
        // Scored first: a crash between the two writes re-sends the missing one
        // (each has its own id), never loses the score.
        if let Some(ScorerHandle(scorer)) = &cfg.scorer
            && let Some(scored) = scorer.score(&record)
        {
            if let Some(v) = self.open.get_mut(&key) {
                v.scored = Some(scored.note);
                v.success_raw = scored.success_raw;
            }
            let scored = ScoredRequest {
                partition: self.partition,
                tenant_id: record.request.tenant_id.clone(),
                scored_id: record.features_id(),
                record: scored.record,
            };
            self.emit(out, Output::Scored(scored));
        }
        self.emit(out, Output::Features(record));
    }

    /// Counts the next send or receipt in its route's statistics. One whose
    /// verification was decided before it (a receipt after the approval) or
    /// never had a request (an orphan) does not count.
    fn count_route_event(&mut self) {
        let Some((at, (key, event))) = self.route_queue.pop() else {
            return;
        };
        let Some(v) = self.open.get(&key) else { return };
        let Some(request) = &v.requested else { return };
        match event {
            RouteEvent::Sent { provider } => {
                self.routes_mut().on_sent(&request.country, &provider, at)
            }
            RouteEvent::Receipt {
                provider,
                delivered,
            } => {
                let sent_at = v
                    .sends
                    .iter()
                    .filter(|s| s.provider == provider && s.at <= at)
                    .map(|s| s.at)
                    .max();
                let latency = sent_at.map(|s| at - s);
                self.routes_mut()
                    .on_receipt(&request.country, &provider, at, delivered, latency);
            }
        }
    }

    fn decide_next(&mut self, cfg: &PipelineConfig, out: &mut Vec<Output>) {
        let Some((deadline, key)) = self.timers.pop() else {
            return;
        };
        let live = self
            .open
            .get(&key)
            .is_some_and(|v| v.deadline(cfg.ttl_ms) == deadline);
        if !live {
            return;
        }
        let Some(verification) = self.open.remove(&key) else {
            return;
        };
        match verification.outcome(self.partition, cfg.ttl_ms) {
            Some(outcome) => {
                self.stats.outcomes += 1;
                let approved = outcome.outcome == crate::OutcomeKind::Approved;
                if approved
                    && let Some((country, provider)) = verification.approving_route(deadline)
                {
                    self.routes_mut().on_approved(country, provider, deadline);
                }
                if let (Some(note), Some(r)) = (&verification.scored, &verification.requested) {
                    // The first attempt's provider decides what its raw
                    // probability is judged against (a retry's success
                    // belongs to the retry's route).
                    let first = outcome.providers.first().and_then(|p| {
                        verification
                            .success_raw
                            .iter()
                            .find(|(q, _)| q == p)
                            .map(|(_, raw)| (*raw, approved && outcome.attempts == 1))
                    });
                    self.feedback
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .on_decided(
                            Decided {
                                tenant: &verification.tenant_id,
                                country: &r.country,
                                first_attempt: first,
                                fraud_score: note.fraud_score,
                                approved,
                            },
                            learned_at(r.at, deadline, cfg.ttl_ms),
                        );
                }
                if let Some(kpi) = &mut self.kpi {
                    kpi.on_decided(key, &verification, &outcome);
                }
                if let Some(r) = &verification.requested {
                    self.features_mut().on_decision(
                        &verification.tenant_id,
                        &r.country,
                        &r.phone_number,
                        approved,
                        deadline,
                    );
                }
                self.emit(out, Output::Outcome(outcome));
            }
            None => {
                for held in verification.held {
                    self.stats.orphaned += 1;
                    let detail = format!(
                        "no verification.requested for `{}` within the TTL",
                        verification.verification_id
                    );
                    let rejected = Rejected {
                        rejection: Rejection::field(
                            RejectReason::Orphan,
                            "verification_id",
                            detail,
                        ),
                        partition: self.partition,
                        offset: held.offset,
                        key: held.key,
                        payload: held.payload,
                    };
                    self.emit(out, Output::Rejected(rejected));
                }
            }
        }
        let forget_at = deadline.saturating_add(cfg.retention_after_decision_ms);
        self.decided.insert(key, forget_at);
        self.decided_expiry.push(forget_at, key);
    }

    /// Every output leaves through here: one a crashed run already wrote is dropped.
    fn emit(&mut self, out: &mut Vec<Output>, output: Output) {
        if !self.already_written.is_empty() && self.already_written.remove(&output.id()) {
            self.stats.suppressed += 1;
            return;
        }
        out.push(output);
    }

    /// Feeds the next payload of an in-process replay (a file, the simulator):
    /// offsets count from 0, there is no key and no wall clock, and timers fire
    /// every `fire_every` records as a source's batches would make them.
    pub fn replay_next(
        &mut self,
        cfg: &PipelineConfig,
        payload: &[u8],
        fire_every: i64,
        out: &mut Vec<Output>,
    ) {
        let offset = self.next_offset.max(0);
        self.process(
            cfg,
            InputRecord {
                offset,
                key: None,
                payload,
            },
            0,
            out,
        );
        if (offset + 1) % fire_every.max(1) == 0 {
            self.fire_timers(cfg, out);
        }
    }

    /// Route statistics changed since the last call (to publish).
    pub fn take_route_updates(&mut self) -> Vec<((Text, Text), RouteSnapshot)> {
        self.routes_mut().take_changed()
    }

    /// Outputs found in the output topics past this partition's checkpoint: the
    /// replay will produce them again and must not emit them twice.
    pub fn mark_already_written(&mut self, ids: impl IntoIterator<Item = OutputId>) {
        self.already_written.extend(ids);
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
        let mut open: Vec<_> = self.open.iter().map(|(k, v)| (*k, v.clone())).collect();
        open.sort_by_key(|(k, _)| *k);
        let mut decided: Vec<_> = self.decided.iter().map(|(k, v)| (*k, *v)).collect();
        decided.sort();
        PartitionState {
            partition: self.partition,
            next_offset: self.next_offset,
            max_event_time: self.max_event_time,
            open,
            decided,
            sink_positions: self.sink_positions.clone(),
            already_written: {
                let mut ids: Vec<_> = self.already_written.iter().cloned().collect();
                ids.sort();
                ids
            },
            feature_queue: queued(&self.feature_queue),
            route_queue: queued(&self.route_queue),
            features: self
                .features
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            routes: self
                .routes
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            feedback: self
                .feedback
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            kpi: self.kpi.clone(),
        }
    }

    /// Rebuilds the operator from a checkpoint; timers are derived, not stored.
    pub fn restore(cfg: &PipelineConfig, state: PartitionState) -> Self {
        let mut p = PartitionPipeline::new(state.partition);
        p.next_offset = state.next_offset;
        p.max_event_time = state.max_event_time;
        p.event_time_at_last_record = state.max_event_time;
        p.sink_positions = state.sink_positions;
        p.already_written = state.already_written.into_iter().collect();
        p.feature_queue = state
            .feature_queue
            .into_iter()
            .map(|(t, k, x)| (t, (k, x)))
            .collect();
        p.route_queue = state
            .route_queue
            .into_iter()
            .map(|(t, k, x)| (t, (k, x)))
            .collect();
        p.features = Arc::new(RwLock::new(state.features));
        p.routes = Arc::new(RwLock::new(state.routes));
        p.feedback = Arc::new(RwLock::new(state.feedback));
        p.kpi = state.kpi;
        for (key, v) in state.open {
            p.timers.push(v.deadline(cfg.ttl_ms), key);
            p.open.insert(key, v);
        }
        for (key, forget_at) in state.decided {
            p.decided_expiry.push(forget_at, key);
            p.decided.insert(key, forget_at);
        }
        p
    }
}

/// A queue's items in release order, as the checkpoint stores them.
fn queued<T: Ord + Clone>(
    q: &TimeQueue<(VerificationKey, T)>,
) -> Vec<(EventTime, VerificationKey, T)> {
    q.sorted()
        .into_iter()
        .map(|(t, (k, x))| (t, *k, x.clone()))
        .collect()
}

/// The checkpointed state of one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionState {
    pub partition: i32,
    pub next_offset: i64,
    pub max_event_time: Option<EventTime>,
    pub open: Vec<(VerificationKey, Verification)>,
    pub decided: Vec<(VerificationKey, EventTime)>,
    pub sink_positions: Vec<SinkPosition>,
    pub already_written: Vec<OutputId>,
    pub feature_queue: Vec<(EventTime, VerificationKey, FeatureRequest)>,
    pub route_queue: Vec<(EventTime, VerificationKey, RouteEvent)>,
    pub features: FeatureState,
    pub routes: RouteStats,
    pub feedback: FeedbackState,
    pub kpi: Option<KpiWindows>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OutcomeKind;
    use crate::validate::ValidationLimits;

    fn cfg() -> PipelineConfig {
        PipelineConfig {
            limits: ValidationLimits {
                max_future_skew_ms: None,
                ..Default::default()
            },
            ..PipelineConfig::default()
        }
    }

    /// Minutes after 2026-01-05T00:00:00Z, as RFC 3339.
    fn at(minutes: f64) -> String {
        format_rfc3339(1_767_571_200_000 + (minutes * 60_000.0) as i64)
    }

    fn ev(id: &str, ty: &str, vid: &str, minutes: f64) -> Vec<u8> {
        let mut e = serde_json::json!({
            "event_id": id, "type": format!("verification.{ty}"), "verification_id": vid,
            "tenant_id": "t1", "occurred_at": at(minutes),
        });
        match ty {
            "requested" => {
                e["phone_number"] = "+5511999990000".into();
                e["country"] = "BR".into();
                e["channel"] = "sms".into();
                e["service"] = "login".into();
            }
            "sent" => {
                e["provider"] = "sinch".into();
                e["attempt"] = 1.into();
                e["cost"] = 0.01.into();
                e["currency"] = "USD".into();
            }
            "delivered" => e["provider"] = "sinch".into(),
            _ => {}
        }
        serde_json::to_vec(&e).unwrap()
    }

    struct Harness {
        cfg: PipelineConfig,
        p: PartitionPipeline,
        offset: i64,
        out: Vec<Output>,
    }

    impl Harness {
        fn new() -> Self {
            Harness {
                cfg: cfg(),
                p: PartitionPipeline::new(0),
                offset: 0,
                out: Vec::new(),
            }
        }
        fn feed(&mut self, payload: Vec<u8>) -> &mut Self {
            let record = InputRecord {
                offset: self.offset,
                key: Some(b"t1"),
                payload: &payload,
            };
            self.p.process(&self.cfg, record, 0, &mut self.out);
            self.offset += 1;
            self.p.fire_timers(&self.cfg, &mut self.out);
            self
        }
        fn outcomes(&self) -> Vec<&Outcome> {
            self.out
                .iter()
                .filter_map(|o| {
                    if let Output::Outcome(o) = o {
                        Some(o)
                    } else {
                        None
                    }
                })
                .collect()
        }
        fn rejected(&self, reason: RejectReason) -> Vec<&Rejected> {
            self.out
                .iter()
                .filter_map(|o| {
                    if let Output::Rejected(r) = o {
                        Some(r)
                    } else {
                        None
                    }
                })
                .filter(|r| r.rejection.reason == reason)
                .collect()
        }
    }

    #[test]
    fn approval_decides_once_the_watermark_passes_it() {
        let mut h = Harness::new();
        h.feed(ev("1", "requested", "v1", 0.0))
            .feed(ev("2", "sent", "v1", 0.01))
            .feed(ev("3", "approved", "v1", 0.5));
        assert!(
            h.outcomes().is_empty(),
            "not before the watermark passes the approval"
        );
        h.feed(ev("x", "requested", "v2", 2.6)); // watermark = 0.6 min
        let o = h.outcomes();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].outcome, OutcomeKind::Approved);
        assert_eq!(o[0].time_to_approve_ms, Some(30_000));
        assert_eq!(o[0].providers, vec!["sinch"]);
        assert_eq!(o[0].cost, Some(0.01));
    }

    #[test]
    fn approval_after_the_ttl_is_an_expiry() {
        let mut h = Harness::new();
        h.feed(ev("1", "requested", "v1", 0.0))
            .feed(ev("2", "sent", "v1", 0.01))
            .feed(ev("3", "approved", "v1", 10.5));
        h.p.drain(&h.cfg, &mut h.out);
        let o = h.outcomes();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].outcome, OutcomeKind::Expired);
        assert_eq!(o[0].time_to_approve_ms, None);
        assert_eq!(o[0].decided_at - o[0].requested_at, 600_000);
        assert_eq!(o[0].failed_attempts(), 1);
    }

    #[test]
    fn late_events_go_to_the_late_output_and_change_nothing() {
        let mut h = Harness::new();
        h.feed(ev("1", "requested", "v1", 0.0))
            .feed(ev("2", "requested", "v2", 5.0));
        // Watermark is 3.0 min: an approval of v1 at 1.0 min is late.
        h.feed(ev("3", "approved", "v1", 1.0));
        let late = h.rejected(RejectReason::Late);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].offset, 2);
        assert_eq!(late[0].payload, ev("3", "approved", "v1", 1.0));
        h.p.drain(&h.cfg, &mut h.out);
        assert!(
            h.outcomes()
                .iter()
                .all(|o| o.outcome == OutcomeKind::Expired)
        );
        assert_eq!(h.p.stats().late, 1);
    }

    #[test]
    fn events_without_a_request_become_orphans_with_their_bytes() {
        let mut h = Harness::new();
        h.feed(ev("1", "sent", "ghost", 0.0))
            .feed(ev("2", "delivered", "ghost", 0.1));
        h.feed(ev("3", "requested", "v9", 13.0)); // watermark 11 > 0 + TTL
        let orphans = h.rejected(RejectReason::Orphan);
        assert_eq!(orphans.len(), 2);
        assert_eq!(orphans[0].payload, ev("1", "sent", "ghost", 0.0));
        assert!(h.outcomes().is_empty());
    }

    #[test]
    fn a_request_arriving_after_its_other_events_is_joined() {
        let mut h = Harness::new();
        h.feed(ev("2", "sent", "v1", 0.01))
            .feed(ev("3", "approved", "v1", 0.4))
            .feed(ev("1", "requested", "v1", 0.0));
        h.p.drain(&h.cfg, &mut h.out);
        let o = h.outcomes();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].outcome, OutcomeKind::Approved);
        assert!(h.rejected(RejectReason::Orphan).is_empty());
    }

    #[test]
    fn stragglers_and_duplicates_after_the_decision_are_absorbed() {
        let mut h = Harness::new();
        h.feed(ev("1", "requested", "v1", 0.0))
            .feed(ev("2", "sent", "v1", 0.01))
            .feed(ev("3", "approved", "v1", 0.3));
        h.feed(ev("x", "requested", "v2", 3.0)); // decides v1
        assert_eq!(h.outcomes().len(), 1);
        h.feed(ev("4", "delivered", "v1", 1.5))
            .feed(ev("3", "approved", "v1", 1.5));
        h.p.drain(&h.cfg, &mut h.out);
        let v1: Vec<_> = h
            .outcomes()
            .into_iter()
            .filter(|o| o.verification_id == "v1")
            .collect();
        assert_eq!(v1.len(), 1, "one outcome per verification");
        assert_eq!(h.p.stats().after_decision, 2);
        assert!(h.rejected(RejectReason::Orphan).is_empty());
    }

    #[test]
    fn an_idle_partition_still_expires_its_verifications() {
        let mut h = Harness::new();
        h.feed(ev("1", "requested", "v1", 0.0))
            .feed(ev("2", "sent", "v1", 0.01));
        h.p.advance_idle(&h.cfg, 5 * 60_000, 0, &mut h.out);
        assert!(
            h.outcomes().is_empty(),
            "not before TTL + lateness have passed"
        );
        h.p.advance_idle(&h.cfg, 12 * 60_000 + 1_000, 0, &mut h.out);
        let o = h.outcomes();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].outcome, OutcomeKind::Expired);
        // Idle time is measured from the last record, not accumulated.
        h.p.advance_idle(&h.cfg, 1_000, 0, &mut h.out);
        assert_eq!(
            h.p.watermark(&h.cfg),
            Some(1_767_571_200_600 + 12 * 60_000 + 1_000 - 120_000)
        );
    }

    #[test]
    fn an_idle_historical_stream_is_decided_at_once() {
        let mut h = Harness::new();
        h.feed(ev("1", "requested", "v1", 0.0))
            .feed(ev("2", "approved", "v1", 0.5));
        h.feed(ev("3", "requested", "v2", 1.0));
        assert!(h.outcomes().is_empty());
        // The wall clock is months ahead of these events: one idle tick decides both.
        let now = 1_767_571_200_000 + 200 * 24 * 3_600_000;
        h.p.advance_idle(&h.cfg, 30_000, now, &mut h.out);
        let o = h.outcomes();
        assert_eq!(o.len(), 2);
        assert_eq!(o[0].outcome, OutcomeKind::Approved);
        assert_eq!(o[1].outcome, OutcomeKind::Expired);
    }

    #[test]
    fn duplicates_are_applied_once_and_replayed_offsets_skipped() {
        let mut h = Harness::new();
        h.feed(ev("1", "requested", "v1", 0.0))
            .feed(ev("2", "sent", "v1", 0.01))
            .feed(ev("2", "sent", "v1", 0.01));
        assert_eq!(h.p.stats().duplicates, 1);
        // A record at an offset already processed (redelivery after restore) is ignored.
        let payload = ev("9", "sent", "v1", 0.02);
        h.p.process(
            &h.cfg,
            InputRecord {
                offset: 1,
                key: None,
                payload: &payload,
            },
            0,
            &mut h.out,
        );
        h.p.drain(&h.cfg, &mut h.out);
        assert_eq!(h.outcomes()[0].attempts, 1);
    }
    #[test]
    fn route_statistics_count_a_receipt_when_the_watermark_passes_it_not_at_the_decision() {
        let mut h = Harness::new();
        let mut undelivered: serde_json::Value =
            serde_json::from_slice(&ev("3", "undelivered", "v1", 0.2)).unwrap();
        undelivered["provider"] = "sinch".into();
        h.feed(ev("1", "requested", "v1", 0.0))
            .feed(ev("2", "sent", "v1", 0.01))
            .feed(serde_json::to_vec(&undelivered).unwrap())
            .feed(ev("x", "requested", "v2", 2.5)); // watermark 0.5 min
        assert!(h.outcomes().is_empty(), "v1 expires only at 10 min");
        let updates = h.p.take_route_updates();
        assert_eq!(updates.len(), 1, "{updates:?}");
        let ((country, provider), snapshot) = &updates[0];
        assert_eq!((country.as_str(), provider.as_str()), ("BR", "sinch"));
        assert_eq!(snapshot.total.sent, 1.0);
        assert_eq!(snapshot.total.undelivered, 1.0);
        assert_eq!(snapshot.total.delivered, 0.0);
        // Nothing counts twice when the verification is decided.
        h.p.drain(&h.cfg, &mut h.out);
        assert_eq!(h.outcomes().len(), 2);
        assert!(h.p.take_route_updates().is_empty());
        assert_eq!(h.outcomes()[0].first_attempt_delivered, Some(false));
    }

    #[test]
    fn an_approval_counts_for_the_attempt_that_got_the_code_through() {
        let mut h = Harness::new();
        h.feed(ev("1", "requested", "v1", 0.0))
            .feed(ev("2", "sent", "v1", 0.01))
            .feed(ev("3", "delivered", "v1", 0.05))
            .feed(ev("4", "approved", "v1", 0.5))
            .feed(ev("x", "requested", "v2", 2.6));
        let updates = h.p.take_route_updates();
        let total = updates[0].1.total;
        assert_eq!(
            (total.sent, total.delivered, total.approved),
            (1.0, 1.0, 1.0)
        );
        assert_eq!(total.mean_latency_ms(), Some(2_400.0));
        assert_eq!(h.outcomes()[0].first_attempt_delivered, Some(true));
    }
}
