//! `veriflow run`'s webhook fan-out: reads what the pipeline wrote (outcomes,
//! alerts) back from Kafka and publishes it to tenants' webhooks.
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

use anyhow::Context;
use serde_json::Value;
use veriflow_api::store::FanOutProgress;
use veriflow_api::webhooks::{Event, Webhooks};
use veriflow_connectors::kafka::{KafkaConfig, KafkaSource, PartitionListener, SourceEvent};

use crate::config::Config;

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

impl FanOut {
    pub fn start(
        config: &Config,
        webhooks: Webhooks,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<FanOut> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (topic, kind) in [
            (config.topics.outcomes.clone(), Kind::Outcome),
            (config.topics.alerts.clone(), Kind::Alert),
            (config.topics.scored.clone(), Kind::Scored),
        ] {
            let consumer = format!("{}-webhooks-{topic}", config.kafka.group_id);
            let kafka = KafkaConfig {
                group_id: consumer.clone(),
                ..config.kafka()
            };
            let worker = Worker {
                consumer,
                topic: topic.clone(),
                kind,
                webhooks: webhooks.clone(),
                runtime: runtime.clone(),
                rewind: config.kafka.resume_rewind.max(0),
            };
            let listener = Arc::new(Positions {
                worker: worker.clone(),
            });
            let source = KafkaSource::subscribe(&kafka, &topic, listener)
                .with_context(|| format!("subscribing the webhook fan-out to {topic}"))?;
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("fanout-{topic}"))
                    .spawn(move || worker.run(source, &stop))
                    .context("starting a webhook fan-out thread")?,
            );
        }
        tracing::info!(
            topics = ?[&config.topics.outcomes, &config.topics.alerts, &config.topics.scored],
            "webhook fan-out started"
        );
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
    fn run(self, source: KafkaSource, stop: &AtomicBool) {
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
    ) -> anyhow::Result<()> {
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
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A pipeline output record as a webhook event; `None` for anything else (and
/// for scored requests that were allowed).
fn to_event(kind: Kind, payload: &[u8]) -> Option<Event> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    match kind {
        Kind::Outcome => {
            let outcome = value.get("outcome")?.as_str()?;
            Some(Event {
                id: value.get("outcome_id")?.as_str()?.to_string(),
                tenant_id: value.get("tenant_id")?.as_str()?.to_string(),
                event_type: format!("verification.{outcome}"),
                timestamp: value.get("decided_at")?.as_str()?.to_string(),
                data: value,
            })
        }
        Kind::Scored => {
            let decision = value.get("fraud_decision")?.as_str()?;
            if decision == "allow" {
                return None;
            }
            Some(Event {
                id: format!("fraud.flagged/{}", value.get("scored_id")?.as_str()?),
                tenant_id: value.get("tenant_id")?.as_str()?.to_string(),
                event_type: "fraud.flagged".into(),
                timestamp: value.get("requested_at")?.as_str()?.to_string(),
                data: value,
            })
        }
        Kind::Alert => {
            let data = value.get("data")?;
            Some(Event {
                id: data.get("alert_id")?.as_str()?.to_string(),
                tenant_id: data.get("tenant")?.as_str()?.to_string(),
                event_type: value.get("type")?.as_str()?.to_string(),
                timestamp: value.get("timestamp")?.as_str()?.to_string(),
                data: data.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_records_become_events() {
        let outcome = br#"{"outcome_id":"o1","verification_id":"v1","tenant_id":"acme","outcome":"approved","decided_at":"2026-01-01T00:00:00.000Z","country":"BR"}"#;
        let e = to_event(Kind::Outcome, outcome).unwrap();
        assert_eq!(
            (e.id.as_str(), e.tenant_id.as_str(), e.event_type.as_str()),
            ("o1", "acme", "verification.approved")
        );
        assert_eq!(e.data["country"], "BR");
        let alert = br#"{"type":"route.degraded","timestamp":"2026-01-01T00:01:00.000Z","data":{"alert_id":"a1","tenant":"*","rule":"route_degraded"}}"#;
        let e = to_event(Kind::Alert, alert).unwrap();
        assert_eq!(
            (e.id.as_str(), e.tenant_id.as_str(), e.event_type.as_str()),
            ("a1", "*", "route.degraded")
        );
        let scored = br#"{"scored_id":"acme:v1:e1","tenant_id":"acme","requested_at":"2026-01-01T00:00:00.000Z","fraud_score":0.97,"fraud_decision":"block","country":"GN"}"#;
        let e = to_event(Kind::Scored, scored).unwrap();
        assert_eq!(e.event_type, "fraud.flagged");
        assert_eq!(e.data["fraud_score"], 0.97);
        let allowed = br#"{"scored_id":"acme:v2:e2","tenant_id":"acme","requested_at":"2026-01-01T00:00:00.000Z","fraud_decision":"allow"}"#;
        assert!(to_event(Kind::Scored, allowed).is_none());
        assert!(to_event(Kind::Outcome, b"not json").is_none());
        assert!(to_event(Kind::Alert, br#"{"type":"x"}"#).is_none());
    }
}
