//! `veriflow run`: Kafka in, Kafka out, with checkpoints.
//!
//! Order of effects, which is what makes a restart safe:
//! 1. records are processed; outputs are queued to the producer as they appear;
//! 2. at each checkpoint the producer is flushed (every output acknowledged), then
//!    each changed partition's state is saved with its next offset;
//! 3. only then are those offsets committed to the consumer group.
//!
//! A crash anywhere resumes from the newest checkpoint: inputs after it are replayed,
//! and outputs emitted after it are emitted again with the same ids (at-least-once
//! with deterministic ids; see ARCHITECTURE.md for what a consumer sees).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use veriflow_connectors::kafka::{
    KafkaSink, KafkaSource, PartitionListener, SourceEvent, TopicSpec, ensure_topics, records,
};
use veriflow_pipelines::checkpoint::CheckpointStore;
use veriflow_pipelines::time::now_millis;
use veriflow_pipelines::{Engine, InputRecord, Output};

use crate::config::{Config, TopicsSection};
use crate::summary::{Gauges, Summary};

pub struct RunOptions {
    /// Stop at the end of the input: decide everything still open, commit, exit.
    pub until_end: bool,
}

/// Records processed between timer firings.
const BATCH: usize = 4096;
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_EVERY: Duration = Duration::from_secs(5);

struct Inner {
    engine: Engine,
    sink: Arc<KafkaSink>,
    topics: TopicsSection,
    out: Vec<Output>,
    summary: Summary,
    /// An error raised inside a rebalance callback, surfaced by the main loop.
    error: Option<anyhow::Error>,
}

struct Shared(Mutex<Inner>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock already aborts the run; keep the data.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    /// Sends queued outputs to the producer.
    fn emit(&mut self) -> anyhow::Result<()> {
        for output in self.out.drain(..) {
            self.summary.observe(&output);
            match &output {
                Output::Outcome(o) => records::send_outcome(&self.sink, &self.topics.outcomes, o)?,
                Output::Rejected(r) => {
                    let topic = if r.rejection.reason.is_dead_letter() {
                        &self.topics.dlq
                    } else {
                        &self.topics.late
                    };
                    records::send_rejected(&self.sink, topic, &self.topics.input, r)?;
                }
            }
        }
        Ok(())
    }

    fn end_batch(&mut self) -> anyhow::Result<()> {
        self.engine.fire_timers(&mut self.out);
        self.emit()
    }

    /// Makes outputs durable, then saves state. Returns the offsets now safe to commit.
    fn checkpoint(&mut self, only: Option<&[i32]>) -> anyhow::Result<Vec<(i32, i64)>> {
        self.end_batch()?;
        self.sink
            .flush(FLUSH_TIMEOUT)
            .context("flushing outputs before a checkpoint")?;
        let report = self.engine.checkpoint(only)?;
        if report.written > 0 {
            tracing::debug!(
                partitions = report.written,
                bytes = report.bytes,
                millis = report.duration.as_millis() as u64,
                "checkpoint"
            );
        }
        Ok(report.offsets)
    }

    fn gauges(&self) -> Gauges {
        let stats = self.engine.stats();
        Gauges {
            received: stats.received,
            in_flight: self.engine.in_flight() as u64,
            duplicates: stats.duplicates,
        }
    }
}

impl PartitionListener for Shared {
    fn assigned(&self, partitions: &[i32]) {
        let mut inner = self.lock();
        for &p in partitions {
            match inner.engine.assign(p) {
                Ok(Some(offset)) => tracing::info!(
                    partition = p,
                    offset,
                    "partition assigned; state restored from checkpoint"
                ),
                Ok(None) => tracing::info!(
                    partition = p,
                    "partition assigned; no checkpoint, starting from the committed offset with empty state"
                ),
                Err(e) => {
                    inner
                        .error
                        .get_or_insert(anyhow!(e).context(format!("restoring partition {p}")));
                }
            }
        }
    }

    fn revoked(&self, partitions: &[i32]) -> Vec<(i32, i64)> {
        let mut inner = self.lock();
        match inner.checkpoint(Some(partitions)) {
            Ok(offsets) => {
                for &p in partitions {
                    inner.engine.revoke(p);
                }
                tracing::info!(?partitions, "partitions revoked after a checkpoint");
                offsets
            }
            Err(e) => {
                inner
                    .error
                    .get_or_insert(e.context("checkpointing revoked partitions"));
                Vec::new()
            }
        }
    }
}

pub fn run(config: &Config, options: RunOptions, shutdown: Arc<AtomicBool>) -> anyhow::Result<()> {
    let kafka = config.kafka();
    let topics = config.topics.clone();
    if topics.create_missing {
        let spec = |name: &str| TopicSpec {
            name: name.to_owned(),
            partitions: topics.partitions,
            compacted: false,
        };
        ensure_topics(
            &kafka,
            &[
                spec(&topics.input),
                spec(&topics.outcomes),
                spec(&topics.dlq),
                spec(&topics.late),
            ],
        )
        .with_context(|| format!("creating topics on {}", kafka.brokers))?;
    }
    let sink = Arc::new(KafkaSink::new(&kafka)?);
    let store = CheckpointStore::new(
        config.checkpoint.dir.join(&kafka.group_id),
        config.checkpoint.keep,
    );
    let engine = Engine::new(config.pipeline()?, topics.input.clone(), Some(store));
    let shared = Arc::new(Shared(Mutex::new(Inner {
        engine,
        sink,
        topics: topics.clone(),
        out: Vec::with_capacity(BATCH),
        summary: Summary::default(),
        error: None,
    })));
    let source = KafkaSource::subscribe(&kafka, &topics.input, shared.clone())?;
    tracing::info!(brokers = %kafka.brokers, group = %kafka.group_id, topic = %topics.input, "consuming");

    let interval = Duration::from_millis(config.checkpoint_interval_ms()? as u64);
    let mut last_checkpoint = Instant::now();
    let mut last_log = Instant::now();
    let mut at_end: BTreeSet<i32> = BTreeSet::new();
    let mut batch = 0usize;

    let result = (|| -> anyhow::Result<()> {
        loop {
            if shutdown.load(Ordering::Relaxed) {
                tracing::info!("shutting down: checkpointing and committing");
                return Ok(());
            }
            let event = source.poll(Duration::from_millis(100))?;
            let mut inner = shared.lock();
            if let Some(e) = inner.error.take() {
                return Err(e);
            }
            let idle = match event {
                SourceEvent::Record(r) => {
                    let partition = r.partition();
                    at_end.remove(&partition);
                    let record = InputRecord {
                        offset: r.offset(),
                        key: r.key(),
                        payload: r.payload(),
                    };
                    let inner = &mut *inner;
                    inner
                        .engine
                        .process(partition, record, now_millis(), &mut inner.out);
                    batch += 1;
                    if batch >= BATCH {
                        inner.end_batch()?;
                        batch = 0;
                    }
                    false
                }
                SourceEvent::EndOfPartition(p) => {
                    at_end.insert(p);
                    true
                }
                SourceEvent::Idle => true,
            };
            if idle {
                inner.end_batch()?;
                batch = 0;
            }
            if last_checkpoint.elapsed() >= interval {
                let offsets = inner.checkpoint(None)?;
                drop(inner);
                source.commit(&offsets)?;
                last_checkpoint = Instant::now();
                inner = shared.lock();
            }
            if last_log.elapsed() >= LOG_EVERY {
                let gauges = inner.gauges();
                let rate = inner.summary.tick_rate(gauges.received);
                tracing::info!("{}", inner.summary.line(gauges, rate));
                last_log = Instant::now();
            }
            if options.until_end && idle {
                let assigned: Vec<i32> = inner.engine.partitions().collect();
                if !assigned.is_empty() && assigned.iter().all(|p| at_end.contains(p)) {
                    tracing::info!("end of input: deciding every open verification");
                    let inner = &mut *inner;
                    inner.engine.drain(&mut inner.out);
                    return Ok(());
                }
            }
        }
    })();

    // On success and on error alike, make what was done durable before leaving.
    let finish = (|| -> anyhow::Result<()> {
        let offsets = shared.lock().checkpoint(None)?;
        source.commit(&offsets)?;
        Ok(())
    })();
    let mut inner = shared.lock();
    let gauges = inner.gauges();
    let rate = inner.summary.tick_rate(gauges.received);
    tracing::info!("final: {}", inner.summary.line(gauges, rate));
    drop(inner);
    source.close();
    result.and(finish)
}
