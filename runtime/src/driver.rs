//! The one loop that drives an [`Engine`] from a [`Source`]: `veriflow run`
//! over Kafka, the demo, forecast evaluation, training replays and the bench
//! all go through it.
//!
//! Order of effects, which is what makes a restart safe:
//! 1. records are processed; outputs are written (topics) and observed
//!    (stages) as they appear; timers fire after every batch;
//! 2. at each checkpoint the sink is flushed (every output acknowledged) and
//!    every stage confirms what it observed is durable (KPI points in
//!    InfluxDB), then each changed partition's state is saved with its next
//!    offset and where the output topics ended;
//! 3. only then are those offsets committed to the source.
//!
//! A crash anywhere resumes from the newest checkpoint, and inputs after it are
//! replayed. Outputs the crashed run already wrote are not written again: on
//! restore the output records past the checkpoint's positions are read back and
//! their ids (in headers) suppressed from the replay. See ARCHITECTURE.md for the
//! precise guarantee.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use veriflow_connectors::records::{self, RouteStatsRecord};
use veriflow_connectors::stream::{
    Message, OutputLog, PartitionListener, RecordSink, Source, SourceEvent,
};
use veriflow_pipelines::time::now_millis;
use veriflow_pipelines::{CheckpointReport, Engine, InputRecord, Output, OutputId, SinkPosition};

use crate::error::{Context, Result, RuntimeError};
use crate::topics::{OutputTopic, TopicsConfig};

/// Records processed between timer firings, unless configured.
pub const BATCH: usize = 4096;
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
const TICK_EVERY: Duration = Duration::from_secs(1);
/// Twice the consumer's 6 s session timeout: long enough for a normal join.
const REJOIN_AFTER: Duration = Duration::from_secs(12);
/// While input is paused for back-pressure, poll (one record) this often.
const PAUSED_POLL_EVERY: Duration = Duration::from_secs(5);
/// How long a checkpoint waits for a stage to make its outputs durable.
const STAGE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Something that watches the outputs besides the topics: KPIs, metrics, the
/// summary, a training set. Runs on the driver's thread, under its lock.
pub trait Stage: Send {
    /// Every output, in emission order (suppressed replays excluded).
    fn observe(&mut self, _output: &Output) {}
    /// After each batch: timers fired, its outputs written and observed.
    fn after_batch(&mut self, _engine: &mut Engine) {}
    /// Before a checkpoint: true once everything observed so far is durable
    /// (waiting at most `timeout`); false defers the checkpoint.
    fn durable(&mut self, _timeout: Duration) -> bool {
        true
    }
    /// Before the last checkpoint: wait until everything observed is durable,
    /// however long it takes.
    fn drain(&mut self) {}
    /// About once a second: publish gauges, render.
    fn tick(&mut self, _engine: &Engine) {}
    /// A checkpoint was written.
    fn checkpointed(&mut self, _report: &CheckpointReport) {}
    /// Once the driver is done (after the last checkpoint).
    fn finish(&mut self, _engine: &Engine) {}
}

/// Lock-free back-pressure, checked on every record: `Some(queued)` while
/// input must wait for a stage to catch up.
pub trait Pressure: Send + Sync {
    fn pressing(&self) -> Option<usize>;
}

impl Pressure for veriflow_connectors::influx::Backlog {
    fn pressing(&self) -> Option<usize> {
        veriflow_connectors::influx::Backlog::pressing(self)
    }
}

/// Where outputs are written: the sink, the topics, and the log to read
/// positions and tails from.
#[derive(Clone)]
pub struct Outputs {
    pub sink: Arc<dyn RecordSink>,
    pub log: Arc<dyn OutputLog>,
    pub topics: TopicsConfig,
}

impl Outputs {
    fn write(&self, output: &Output) -> Result<()> {
        let Some(topic) = OutputTopic::of(output) else {
            return Ok(());
        };
        let (sink, name, input) = (&*self.sink, self.topics.name(topic), &self.topics.input);
        match output {
            Output::Outcome(o) => records::send_outcome(sink, name, input, o),
            Output::Rejected(r) => records::send_rejected(sink, name, input, r),
            Output::Features(f) => records::send_features(sink, name, input, f),
            Output::Scored(s) => records::send_scored(sink, name, input, s),
            Output::Alert(a) => records::send_alert(sink, name, input, a),
            Output::Kpi(_) | Output::Forecast(_) => Ok(()),
        }
        .with_context(|| format!("writing to {name}"))
    }

    /// The current end of every exactly-once output partition.
    fn positions(&self) -> Result<Vec<SinkPosition>> {
        let mut positions = Vec::new();
        for topic in self.topics.exactly_once() {
            let ends = self
                .log
                .high_watermarks(topic)
                .context("reading output positions")?;
            for (partition, offset) in ends {
                positions.push(SinkPosition {
                    topic: topic.to_owned(),
                    partition,
                    offset,
                });
            }
        }
        Ok(positions)
    }
}

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Records processed between timer firings.
    pub batch: usize,
    pub checkpoint_interval: Duration,
    /// Silence after which a caught-up partition's event time follows the wall
    /// clock (`[pipeline] idle_timeout`); `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Stop at the end of the input: decide everything still open, commit, return.
    pub until_end: bool,
    /// On restore, start this many records before the checkpoint's offset.
    pub resume_rewind: i64,
    /// The input topic's partitions (`until_end` waits to own them all).
    pub input_partitions: BTreeSet<i32>,
    /// The wall clock as the pipeline's `now` (the future-skew guard);
    /// in-process replays pass 0.
    pub wall_clock: bool,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            batch: BATCH,
            checkpoint_interval: Duration::from_secs(10),
            idle_timeout: None,
            until_end: true,
            resume_rewind: 0,
            input_partitions: BTreeSet::new(),
            wall_clock: false,
        }
    }
}

struct Inner {
    engine: Engine,
    outputs: Option<Outputs>,
    stages: Vec<Box<dyn Stage>>,
    out: Vec<Output>,
    /// An error raised inside a rebalance callback, surfaced by the loop.
    error: Option<RuntimeError>,
    /// Counts assignments and revocations, so the loop notices them.
    rebalances: u64,
    /// Partitions assigned since the loop last looked (their ends are to be
    /// reached afresh).
    arrived: BTreeSet<i32>,
    resume_rewind: i64,
}

/// The engine and what hangs off it, shared with the source's rebalance
/// callbacks (which run inside `poll`, on the driver's thread).
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
    /// Writes and observes queued outputs.
    fn emit(&mut self) -> Result<()> {
        let mut out = std::mem::take(&mut self.out);
        let result = (|| {
            for output in &out {
                for stage in &mut self.stages {
                    stage.observe(output);
                }
                if let Some(outputs) = &self.outputs {
                    outputs.write(output)?;
                }
            }
            Ok(())
        })();
        out.clear();
        // Keep the buffer's capacity for the next batch.
        self.out = out;
        result
    }

    fn end_batch(&mut self) -> Result<()> {
        self.engine.fire_timers(&mut self.out);
        self.emit()?;
        for stage in &mut self.stages {
            stage.after_batch(&mut self.engine);
        }
        Ok(())
    }

    /// Makes outputs durable, then saves state. Returns the offsets now safe to commit.
    fn checkpoint(&mut self, only: Option<&[i32]>) -> Result<Vec<(i32, i64)>> {
        self.end_batch()?;
        let positions = match &self.outputs {
            Some(outputs) => {
                // Route statistics travel with the checkpoint: published before
                // the flush, so the state saved below never claims more than the
                // topic holds.
                let topic = outputs.topics.name(OutputTopic::RouteStats);
                for (partition, (country, provider), snapshot) in self.engine.take_route_updates() {
                    let record = RouteStatsRecord::new(
                        &outputs.topics.input,
                        partition,
                        &country,
                        &provider,
                        &snapshot,
                    );
                    records::send_route_stats(&*outputs.sink, topic, &record)
                        .context("publishing route statistics")?;
                }
                outputs
                    .sink
                    .flush(FLUSH_TIMEOUT)
                    .context("flushing outputs before a checkpoint")?;
                Some(outputs.clone())
            }
            None => None,
        };
        // What stages emitted before this checkpoint must be durable before the
        // checkpoint says so; if not, the checkpoint waits for the next turn (a
        // restart then replays from the previous one and re-emits: idempotent).
        for stage in &mut self.stages {
            if !stage.durable(STAGE_FLUSH_TIMEOUT) {
                return Ok(Vec::new());
            }
        }
        let positions = match positions {
            Some(outputs) => outputs.positions()?,
            None => Vec::new(),
        };
        let report = self
            .engine
            .checkpoint(only, &positions)
            .context("writing a checkpoint")?;
        if report.written > 0 {
            for stage in &mut self.stages {
                stage.checkpointed(&report);
            }
            tracing::debug!(
                partitions = report.written,
                bytes = report.bytes,
                millis = report.duration.as_millis() as u64,
                "checkpoint"
            );
        }
        Ok(report.offsets)
    }

    /// After restoring `restored` partitions: read the outputs written since their
    /// checkpoints and remember the ones that came from them.
    fn learn_written_outputs(&mut self, restored: &[(i32, Vec<SinkPosition>)]) -> Result<()> {
        let Some(outputs) = &self.outputs else {
            return Ok(());
        };
        let mut from: HashMap<(String, i32), i64> = HashMap::new();
        for (_, positions) in restored {
            for p in positions {
                let entry = from
                    .entry((p.topic.clone(), p.partition))
                    .or_insert(p.offset);
                *entry = (*entry).min(p.offset);
            }
        }
        let from: Vec<(String, i32, i64)> = from.into_iter().map(|((t, p), o)| (t, p, o)).collect();
        let tail = outputs
            .log
            .read_tail(&from)
            .context("reading back outputs written after the last checkpoint")?;
        let mut written: HashMap<i32, Vec<OutputId>> = HashMap::new();
        for record in &tail {
            let header = |k: &str| record.header(k).map(str::to_owned);
            let Some((partition, id)) = records::output_identity(&outputs.topics.input, header)
            else {
                continue;
            };
            // Only what was written after *that partition's* checkpoint.
            let after_checkpoint = restored.iter().any(|(p, positions)| {
                *p == partition
                    && positions
                        .iter()
                        .find(|s| s.topic == record.topic && s.partition == record.partition)
                        .is_none_or(|s| record.offset >= s.offset)
            });
            if after_checkpoint {
                written.entry(partition).or_default().push(id);
            }
        }
        let found: usize = written.values().map(Vec::len).sum();
        for (partition, ids) in written {
            self.engine.mark_already_written(partition, ids);
        }
        if found > 0 {
            tracing::info!(
                outputs = found,
                "outputs written after the last checkpoint will not be written again"
            );
        }
        Ok(())
    }

    /// Before the last checkpoint: every stage's outputs durable, however long.
    fn drain_stages(&mut self) {
        if let Err(e) = self.end_batch() {
            tracing::warn!(error = %e, "emitting the last outputs failed");
        }
        for stage in &mut self.stages {
            stage.drain();
        }
    }
}

impl PartitionListener for Shared {
    fn assigned(&self, partitions: &[i32]) -> Vec<(i32, i64)> {
        let mut inner = self.lock();
        inner.rebalances += 1;
        inner.arrived.extend(partitions.iter().copied());
        let mut restored = Vec::new();
        let mut starts = Vec::new();
        let mut fresh = Vec::new();
        for &p in partitions {
            match inner.engine.assign(p) {
                Ok(Some(r)) => {
                    tracing::info!(
                        partition = p,
                        offset = r.next_offset,
                        "partition assigned; state restored from checkpoint"
                    );
                    restored.push((p, r.sink_positions));
                    if r.next_offset > 0 {
                        starts.push((p, (r.next_offset - inner.resume_rewind).max(0)));
                    }
                }
                Ok(None) => {
                    tracing::info!(
                        partition = p,
                        "partition assigned; no checkpoint, starting from the committed offset with empty state"
                    );
                    fresh.push(p);
                }
                Err(e) => {
                    inner.error.get_or_insert(RuntimeError::Failed {
                        what: format!("restoring partition {p}"),
                        source: Box::new(e),
                    });
                }
            }
        }
        // Checkpoint fresh partitions at once: their output positions are then known
        // should this instance crash before its first regular checkpoint.
        if !fresh.is_empty()
            && let Err(e) = inner.checkpoint(Some(&fresh))
        {
            inner
                .error
                .get_or_insert(e.context("writing the first checkpoint of new partitions"));
        }
        if !restored.is_empty()
            && let Err(e) = inner.learn_written_outputs(&restored)
        {
            inner.error.get_or_insert(e);
        }
        starts
    }

    fn revoked(&self, partitions: &[i32]) -> Vec<(i32, i64)> {
        let mut inner = self.lock();
        inner.rebalances += 1;
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

/// The engine, where its outputs go, and the stages watching them.
pub struct Driver {
    shared: Arc<Shared>,
    options: DriverOptions,
    pressure: Option<Arc<dyn Pressure>>,
}

impl Driver {
    pub fn new(
        engine: Engine,
        outputs: Option<Outputs>,
        stages: Vec<Box<dyn Stage>>,
        options: DriverOptions,
    ) -> Driver {
        let resume_rewind = options.resume_rewind.max(0);
        Driver {
            shared: Arc::new(Shared(Mutex::new(Inner {
                engine,
                outputs,
                stages,
                out: Vec::with_capacity(options.batch),
                error: None,
                rebalances: 0,
                arrived: BTreeSet::new(),
                resume_rewind,
            }))),
            options,
            pressure: None,
        }
    }

    /// Input waits while `pressure` says so.
    pub fn with_pressure(mut self, pressure: Arc<dyn Pressure>) -> Driver {
        self.pressure = Some(pressure);
        self
    }

    /// What the source must tell about partitions coming and going.
    pub fn listener(&self) -> Arc<dyn PartitionListener> {
        self.shared.clone()
    }

    /// Runs until `shutdown` is set (or, with `until_end`, the input is read
    /// and decided), then makes what was done durable: the last checkpoint,
    /// the last commit. On error too, as far as it can.
    pub fn run<S: Source>(self, source: S, shutdown: &AtomicBool) -> Result<()> {
        let result = self.run_loop(&source, shutdown);
        // On success and on error alike, make what was done durable before leaving.
        let finish = (|| -> Result<()> {
            self.shared.lock().drain_stages();
            let offsets = self.shared.lock().checkpoint(None)?;
            source.commit(&offsets).context("committing offsets")?;
            Ok(())
        })();
        source.close();
        let mut inner = self.shared.lock();
        let inner = &mut *inner;
        for stage in &mut inner.stages {
            stage.finish(&inner.engine);
        }
        result.and(finish)
    }

    fn run_loop<S: Source>(&self, source: &S, shutdown: &AtomicBool) -> Result<()> {
        let o = &self.options;
        let shared = &self.shared;
        let mut last_checkpoint = Instant::now();
        let mut last_tick = Instant::now();
        let mut at_end: BTreeSet<i32> = BTreeSet::new();
        let mut batch = 0usize;
        let mut rebalances_seen = 0u64;
        let mut empty_since: Option<Instant> = None;
        let mut rejoin_after = REJOIN_AFTER;
        let mut last_record: HashMap<i32, Instant> = HashMap::new();
        let mut paused_since: Option<Instant> = None;
        loop {
            if shutdown.load(Ordering::Relaxed) {
                tracing::info!("shutting down: checkpointing and committing");
                return Ok(());
            }
            // Back-pressure: while a stage is behind by a full buffer, stop taking
            // input. The group membership lives on (heartbeats run on the
            // client's own thread); one poll every few seconds serves rebalances
            // and keeps max.poll.interval.ms satisfied, at the cost of one record
            // each. (Pausing the partitions instead stalls fetching on tansu 0.6.0.)
            if let Some(queued) = self.pressure.as_ref().and_then(|p| p.pressing()) {
                if paused_since.is_none() {
                    tracing::warn!(
                        queued,
                        "a sink is behind by a full buffer (influx.buffer_points): input paused"
                    );
                }
                let since = *paused_since.get_or_insert_with(Instant::now);
                if since.elapsed() < PAUSED_POLL_EVERY {
                    std::thread::sleep(Duration::from_millis(100));
                    if last_tick.elapsed() >= TICK_EVERY {
                        let mut inner = shared.lock();
                        let inner = &mut *inner;
                        for stage in &mut inner.stages {
                            stage.tick(&inner.engine);
                        }
                        last_tick = Instant::now();
                    }
                    continue;
                }
                paused_since = Some(Instant::now());
            } else if paused_since.take().is_some() {
                tracing::info!("the sink caught up: input resumed");
            }
            let event = source
                .poll(Duration::from_millis(100))
                .context("polling the input")?;
            let mut inner = shared.lock();
            if let Some(e) = inner.error.take() {
                return Err(e);
            }
            let idle = match event {
                SourceEvent::Record(r) => {
                    let partition = r.partition();
                    at_end.remove(&partition);
                    if o.idle_timeout.is_some() {
                        last_record.insert(partition, Instant::now());
                    }
                    let record = InputRecord {
                        offset: r.offset(),
                        key: r.key(),
                        payload: r.payload(),
                    };
                    let now = if o.wall_clock { now_millis() } else { 0 };
                    let inner = &mut *inner;
                    inner.engine.process(partition, record, now, &mut inner.out);
                    batch += 1;
                    if batch >= o.batch {
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
            if inner.rebalances != rebalances_seen {
                // A partition that arrived (or came back) must reach its end
                // afresh; one held throughout keeps its place (its end is not
                // reported again).
                rebalances_seen = inner.rebalances;
                let arrived = std::mem::take(&mut inner.arrived);
                let held: BTreeSet<i32> = inner.engine.partitions().collect();
                at_end.retain(|p| held.contains(p) && !arrived.contains(p));
                // Silence is counted from when a partition arrived here at the earliest.
                for p in inner.engine.partitions() {
                    last_record.entry(p).or_insert_with(Instant::now);
                }
            }
            if idle && o.until_end {
                // Only when this instance owns the whole topic: while a crashed
                // predecessor is still in the group, it may hold some partitions.
                let assigned: BTreeSet<i32> = inner.engine.partitions().collect();
                if assigned == o.input_partitions && assigned.iter().all(|p| at_end.contains(p)) {
                    tracing::info!("end of input: deciding every open verification");
                    let inner = &mut *inner;
                    inner.engine.drain(&mut inner.out);
                    return Ok(());
                }
            }
            if idle {
                if let Some(idle_timeout) = o.idle_timeout {
                    let inner = &mut *inner;
                    for &p in &at_end {
                        let silent = last_record.get(&p).map(Instant::elapsed);
                        if let Some(silent) = silent.filter(|s| *s >= idle_timeout) {
                            let idle_ms = silent.as_millis() as i64;
                            inner
                                .engine
                                .advance_idle(p, idle_ms, now_millis(), &mut inner.out);
                        }
                    }
                }
                inner.end_batch()?;
                batch = 0;
            }
            if last_checkpoint.elapsed() >= o.checkpoint_interval {
                let offsets = inner.checkpoint(None)?;
                drop(inner);
                source.commit(&offsets).context("committing offsets")?;
                last_checkpoint = Instant::now();
                inner = shared.lock();
            }
            if last_tick.elapsed() >= TICK_EVERY {
                let inner = &mut *inner;
                for stage in &mut inner.stages {
                    stage.tick(&inner.engine);
                }
                last_tick = Instant::now();
            }
            // Owning nothing for long: rejoin, backing off (an extra instance in a
            // group with more members than partitions legitimately owns nothing).
            if inner.engine.partitions().next().is_some() {
                empty_since = None;
                rejoin_after = REJOIN_AFTER;
            } else if empty_since.get_or_insert_with(Instant::now).elapsed() >= rejoin_after {
                tracing::warn!(
                    waited_s = rejoin_after.as_secs(),
                    "no partitions assigned; rejoining the consumer group"
                );
                drop(inner);
                source.rejoin().context("rejoining the consumer group")?;
                inner = shared.lock();
                empty_since = Some(Instant::now());
                rejoin_after = (rejoin_after * 2).min(Duration::from_secs(300));
            }
        }
    }
}
