//! The webhook fan-out: reads what the pipeline wrote (outcomes, alerts,
//! flagged requests) back from the broker and publishes it to tenants'
//! webhooks. Each record is read through the type that wrote it.
//!
//! Why from the topics rather than from the processing loop: the topics are the
//! durable record of what happened, a consumer group of its own spreads the
//! fan-out over instances by partition, and a slow database never stalls
//! processing. Nothing is lost or doubled across crashes: the read position of
//! each partition is written in the same database transaction as the messages
//! it produced, a restart resumes from there (minus `kafka.resume_rewind`, for
//! brokers that skip to the next batch), and re-publishing a record queues
//! nothing new because message ids derive from the record's own ids.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Context, Result};
use serde::Deserialize;
use serde_json::Value;
use veriflow_api::store::FanOutProgress;
use veriflow_api::webhooks::{Event, Webhooks};
use veriflow_common::scoring::FraudDecision;
use veriflow_connectors::records::AlertRecord;
use veriflow_connectors::stream::{Broker, Message, PartitionListener, Source, SourceEvent};
use veriflow_pipelines::outcome::OutcomeRecord;

use crate::scoring::verdict::ScoredRecord;
use crate::topics::{OutputTopic, TopicsConfig};

/// Records published per database transaction at most.
const BATCH: usize = 500;
/// A partial batch waits at most this long.
const LINGER: Duration = Duration::from_millis(100);

/// What a pipeline output record becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `verifications.outcomes` → `verification.approved` / `.expired`.
    Outcome,
    /// `veriflow.alerts` → `kpi.alert` / `route.degraded`.
    Alert,
    /// `verifications.scored` → `fraud.flagged` (decision `review` or `block`).
    Scored,
}

/// The fan-out threads (one per topic).
pub struct FanOut {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Kind {
    /// The output topics the fan-out reads, and what each becomes.
    fn of(topic: OutputTopic) -> Option<Kind> {
        match topic {
            OutputTopic::Outcomes => Some(Kind::Outcome),
            OutputTopic::Alerts => Some(Kind::Alert),
            OutputTopic::Scored => Some(Kind::Scored),
            _ => None,
        }
    }
}

impl FanOut {
    /// One consumer group per topic (`<group>-webhooks-<topic>`), so the
    /// fan-out spreads over instances by partition like the engine does.
    pub fn start<B: Broker>(
        broker: &B,
        group: &str,
        topics: &TopicsConfig,
        rewind: i64,
        webhooks: Webhooks,
        runtime: tokio::runtime::Handle,
    ) -> Result<FanOut> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut names = Vec::new();
        for (topic, kind) in OutputTopic::ALL
            .into_iter()
            .filter_map(|t| Some((topics.name(t).to_owned(), Kind::of(t)?)))
        {
            let consumer = format!("{group}-webhooks-{topic}");
            let worker = Worker {
                consumer: consumer.clone(),
                topic: topic.clone(),
                kind,
                webhooks: webhooks.clone(),
                runtime: runtime.clone(),
                rewind: rewind.max(0),
            };
            let listener = Arc::new(Positions {
                worker: worker.clone(),
            });
            let source = broker
                .subscribe(&consumer, &topic, listener)
                .with_context(|| format!("subscribing the webhook fan-out to {topic}"))?;
            names.push(topic.clone());
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("fanout-{topic}"))
                    .spawn(move || worker.run(source, &stop))
                    .context("starting a webhook fan-out thread")?,
            );
        }
        tracing::info!(topics = ?names, "webhook fan-out started");
        Ok(FanOut { stop, threads })
    }

    /// Publishes what was read, then stops.
    pub fn stop_and_join(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

#[derive(Clone)]
struct Worker {
    consumer: String,
    topic: String,
    kind: Kind,
    webhooks: Webhooks,
    runtime: tokio::runtime::Handle,
    rewind: i64,
}

/// Positions newly assigned partitions where the database says this consumer
/// left off (Kafka's committed offsets are only a fallback).
struct Positions {
    worker: Worker,
}

impl PartitionListener for Positions {
    fn assigned(&self, partitions: &[i32]) -> Vec<(i32, i64)> {
        let w = &self.worker;
        let stored = match w
            .runtime
            .block_on(w.webhooks.fanout_offsets(&w.consumer, &w.topic))
        {
            Ok(s) => s.into_iter().collect::<HashMap<i32, i64>>(),
            Err(e) => {
                tracing::warn!(error = %e, topic = %w.topic, "reading fan-out positions failed; using committed offsets");
                return Vec::new();
            }
        };
        partitions
            .iter()
            .filter_map(|p| stored.get(p).map(|o| (*p, (o - w.rewind).max(0))))
            .collect()
    }

    fn revoked(&self, _partitions: &[i32]) -> Vec<(i32, i64)> {
        // Positions are in the database, written with each batch.
        Vec::new()
    }
}

impl Worker {
    fn run<S: Source>(self, source: S, stop: &AtomicBool) {
        let mut events: Vec<Event> = Vec::with_capacity(BATCH);
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let mut oldest: Option<Instant> = None;
        let mut skipped = 0u64;
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if !stopping && events.len() < BATCH {
                match source.poll(Duration::from_millis(50)) {
                    Ok(SourceEvent::Record(record)) => {
                        next.insert(record.partition(), record.offset() + 1);
                        match to_event(self.kind, record.payload()) {
                            Some(event) => events.push(event),
                            // An allowed scored request is simply not an event.
                            None if self.kind == Kind::Scored => {}
                            None => skipped += 1,
                        }
                        oldest.get_or_insert_with(Instant::now);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, topic = %self.topic, "fan-out consume error")
                    }
                }
            }
            let due =
                events.len() >= BATCH || oldest.is_some_and(|t| t.elapsed() >= LINGER) || stopping;
            if due && !next.is_empty() {
                if let Err(e) = self.publish(&events, &next, stop) {
                    tracing::error!(error = %e, topic = %self.topic, "webhook fan-out stopped");
                    return;
                }
                if skipped > 0 {
                    tracing::warn!(skipped, topic = %self.topic, "records that are not pipeline output were skipped");
                    skipped = 0;
                }
                let offsets: Vec<(i32, i64)> = next.iter().map(|(p, o)| (*p, *o)).collect();
                if let Err(e) = source.commit(&offsets) {
                    tracing::debug!(error = %e, "committing fan-out offsets failed (positions are in the database)");
                }
                events.clear();
                next.clear();
                oldest = None;
            }
            if stopping {
                break;
            }
        }
        source.close();
    }

    /// Publishes a batch with its read positions, retrying while the database
    /// is unreachable (nothing is read meanwhile).
    fn publish(
        &self,
        events: &[Event],
        next: &BTreeMap<i32, i64>,
        stop: &AtomicBool,
    ) -> Result<()> {
        let progress: Vec<FanOutProgress> = next
            .iter()
            .map(|(partition, offset)| FanOutProgress {
                consumer: self.consumer.clone(),
                topic: self.topic.clone(),
                partition: *partition,
                next_offset: *offset,
            })
            .collect();
        let mut backoff = Duration::from_millis(200);
        loop {
            match self
                .runtime
                .block_on(self.webhooks.publish_with_progress(events, &progress))
            {
                Ok(_) => return Ok(()),
                Err(e) if !stop.load(Ordering::Relaxed) => {
                    tracing::warn!(error = %e, "publishing to webhooks failed; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e).context("publishing to webhooks"),
            }
        }
    }
}

/// A pipeline output record as a webhook event; `None` for anything else (and
/// for scored requests that were allowed). The record is read through the
/// type that wrote it; `data` is the record as JSON.
fn to_event(kind: Kind, payload: &[u8]) -> Option<Event> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    match kind {
        Kind::Outcome => {
            let o = OutcomeRecord::deserialize(&value).ok()?;
            Some(Event {
                id: o.outcome_id.into_owned(),
                tenant_id: o.tenant_id.into_owned(),
                event_type: format!("verification.{}", o.outcome.as_str()),
                timestamp: o.decided_at,
                data: value,
            })
        }
        Kind::Scored => {
            let s = ScoredRecord::deserialize(&value).ok()?;
            if s.verdict.fraud_decision == FraudDecision::Allow {
                return None;
            }
            Some(Event {
                id: format!("fraud.flagged/{}", s.scored_id),
                tenant_id: s.tenant_id.into_owned(),
                event_type: "fraud.flagged".into(),
                timestamp: s.requested_at,
                data: value,
            })
        }
        Kind::Alert => {
            let a = AlertRecord::deserialize(&value).ok()?;
            Some(Event {
                id: a.data.alert_id.into_owned(),
                tenant_id: a.data.tenant.into_owned(),
                event_type: a.event_type.into_owned(),
                timestamp: a.timestamp,
                data: value.get("data")?.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use veriflow_common::scoring::{FraudThresholds, ModelName, ModelVersions, Verdict};
    use veriflow_connectors::records::AlertData;
    use veriflow_pipelines::event::Channel;
    use veriflow_pipelines::features::Features;
    use veriflow_pipelines::outcome::OutcomeKind;

    use super::*;

    fn outcome() -> Vec<u8> {
        let o = OutcomeRecord {
            outcome_id: "acme:v1".into(),
            verification_id: "v1".into(),
            tenant_id: "acme".into(),
            outcome: OutcomeKind::Approved,
            requested_at: "2026-01-01T00:00:00.000Z".into(),
            decided_at: "2026-01-01T00:00:20.000Z".into(),
            time_to_approve_ms: Some(20_000),
            country: "BR".into(),
            channel: Channel::Sms,
            service: "login".into(),
            providers: Cow::Owned(vec!["sinch".into()]),
            attempts: 1,
            failed_attempts: 0,
            delivered: 1,
            undelivered: 0,
            check_failed: 0,
            cost: Some(0.01),
            currency: Some("USD".into()),
            scores: None,
        };
        serde_json::to_vec(&o).unwrap()
    }

    fn scored(decision: FraudDecision) -> Vec<u8> {
        let verdict = Verdict {
            fraud_score: 0.97,
            fraud_decision: decision,
            fraud_reasons: vec!["ip_requests_10m".into()],
            fraud_thresholds: FraudThresholds {
                review: 0.5,
                block: 0.9,
            },
            routes: Vec::new(),
            choice: None,
            model: ModelVersions {
                fraud: ModelName {
                    name: "m-fraud".into(),
                    version: "1".into(),
                },
                success: ModelName {
                    name: "m-success".into(),
                    version: "1".into(),
                },
                feature_schema: "s".into(),
            },
        };
        let features = Features::default();
        let r = ScoredRecord {
            scored_id: "acme:v1:e1".into(),
            verification_id: "v1".into(),
            tenant_id: "acme".into(),
            event_id: "e1".into(),
            requested_at: "2026-01-01T00:00:00.000Z".into(),
            country: "GN".into(),
            features: Cow::Borrowed(&features),
            variant: "champion".into(),
            verdict: Cow::Borrowed(&verdict),
            shadow: None,
        };
        serde_json::to_vec(&r).unwrap()
    }

    #[test]
    fn pipeline_records_become_events_through_their_writers_types() {
        let e = to_event(Kind::Outcome, &outcome()).unwrap();
        assert_eq!(
            (e.id.as_str(), e.tenant_id.as_str(), e.event_type.as_str()),
            ("acme:v1", "acme", "verification.approved")
        );
        assert_eq!(e.data["country"], "BR");
        let alert = AlertRecord {
            data: AlertData {
                alert_id: "a1".into(),
                baseline: Some(0.9),
                country: "BR".into(),
                message: "m".into(),
                metric: "delivery_rate".into(),
                provider: "sinch".into(),
                rule: "route_degraded".into(),
                severity: "warning".into(),
                tenant: "*".into(),
                threshold: 0.5,
                value: 0.1,
                volume: 20,
                window_start: "2026-01-01T00:00:00.000Z".into(),
            },
            timestamp: "2026-01-01T00:01:00.000Z".into(),
            event_type: "route.degraded".into(),
        };
        let e = to_event(Kind::Alert, &serde_json::to_vec(&alert).unwrap()).unwrap();
        assert_eq!(
            (e.id.as_str(), e.tenant_id.as_str(), e.event_type.as_str()),
            ("a1", "*", "route.degraded")
        );
        assert_eq!(e.data["provider"], "sinch");
        let e = to_event(Kind::Scored, &scored(FraudDecision::Block)).unwrap();
        assert_eq!(e.event_type, "fraud.flagged");
        assert_eq!(e.data["fraud_score"], 0.97, "the record's own number");
        assert!(to_event(Kind::Scored, &scored(FraudDecision::Allow)).is_none());
        assert!(to_event(Kind::Outcome, b"not json").is_none());
        assert!(to_event(Kind::Alert, br#"{"type":"x"}"#).is_none());
    }

    /// The API's event-type catalogue describes what the stream really sends:
    /// every property its schema requires is in the records the writers make.
    #[test]
    fn the_event_type_catalogue_matches_the_records_written() {
        use veriflow_api::webhooks::catalog::{catalogue, has_required};
        let schema = |name: &str| {
            catalogue()
                .into_iter()
                .find(|e| e.name == name)
                .map(|e| e.schema)
                .unwrap()
        };
        let outcome = to_event(Kind::Outcome, &outcome()).unwrap();
        has_required(&schema("verification.approved"), &outcome.data).unwrap();
        let scored = to_event(Kind::Scored, &scored(FraudDecision::Review)).unwrap();
        has_required(&schema("fraud.flagged"), &scored.data).unwrap();
        let alert = AlertRecord {
            data: AlertData {
                alert_id: "a".into(),
                baseline: None,
                country: "BR".into(),
                message: "m".into(),
                metric: "requests".into(),
                provider: "".into(),
                rule: "volume_spike".into(),
                severity: "warning".into(),
                tenant: "acme".into(),
                threshold: 4.0,
                value: 40.0,
                volume: 40,
                window_start: "2026-01-05T10:00:00.000Z".into(),
            },
            timestamp: "2026-01-05T10:02:00.000Z".into(),
            event_type: "kpi.alert".into(),
        };
        let alert = to_event(Kind::Alert, &serde_json::to_vec(&alert).unwrap()).unwrap();
        has_required(&schema("kpi.alert"), &alert.data).unwrap();
    }
}
