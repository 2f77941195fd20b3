//! The lake writer: reads what the pipeline wrote (outcomes, scored requests,
//! alerts) back from the broker and keeps it as Parquet under `lake.dir`.
//!
//! Why a follower of the topics and not a [`crate::driver::Stage`]: a stage
//! sees outputs as the engine emits them, and after a crash the driver
//! suppresses replayed outputs that are already in the topics, so a stage would
//! never see the rows of the files a crash tore. The topics hold every record
//! once; the lake's own positions (written after each batch's files, see
//! [`veriflow_analytics::lake::writer`]) make the copy exact, and a consumer
//! group of its own (`<group>-lake-<topic>`) spreads the writing over
//! instances by partition like the engine. So the lake commits with its own
//! read position, not with the engine's checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use veriflow_analytics::lake::LakeWriter;
use veriflow_analytics::lake::tables::{AlertRow, LakeRow, OutcomeRow, ScoredRow};
use veriflow_connectors::records::AlertRecord;
use veriflow_connectors::stream::{
    Broker, Message, OutputLog, PartitionListener, Source, SourceEvent,
};
use veriflow_pipelines::outcome::OutcomeRecord;
use veriflow_pipelines::time::parse_rfc3339;

use crate::config::LakeConfig;
use crate::error::{Context, Result};
use crate::scoring::verdict::ScoredRecord;
use crate::topics::{OutputTopic, TopicsConfig};

/// The lake writer's threads (one per topic) and the I/O runtime they share.
pub struct LakeService {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl LakeService {
    pub fn start<B: Broker>(
        broker: &B,
        group: &str,
        topics: &TopicsConfig,
        rewind: i64,
        config: &LakeConfig,
    ) -> Result<Option<LakeService>> {
        let Some(dir) = &config.dir else {
            return Ok(None);
        };
        let log = broker
            .log(group)
            .context("starting the lake's offsets reader")?;
        let writer = LakeWriter::open(dir).context("lake.dir")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lake-io")
            .enable_all()
            .build()
            .context("starting the lake's I/O runtime")?;
        let stop = Arc::new(AtomicBool::new(false));
        let common = Common {
            writer,
            io: runtime.handle().clone(),
            rewind: rewind.max(0),
            flush_interval: config.flush_interval,
            max_rows: config.max_rows,
            log,
        };
        let threads = vec![
            spawn::<B, OutcomeRow>(
                broker,
                group,
                topics.name(OutputTopic::Outcomes),
                &common,
                &stop,
                outcome_row,
            )?,
            spawn::<B, ScoredRow>(
                broker,
                group,
                topics.name(OutputTopic::Scored),
                &common,
                &stop,
                scored_row,
            )?,
            spawn::<B, AlertRow>(
                broker,
                group,
                topics.name(OutputTopic::Alerts),
                &common,
                &stop,
                alert_row,
            )?,
        ];
        tracing::info!(lake = %common.writer.describe(), "lake writer started");
        Ok(Some(LakeService {
            stop,
            threads,
            runtime: Some(runtime),
        }))
    }

    /// Writes what was read, then stops.
    pub fn stop_and_join(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// What every topic's writer shares.
#[derive(Clone)]
struct Common {
    writer: LakeWriter,
    io: tokio::runtime::Handle,
    rewind: i64,
    flush_interval: Duration,
    max_rows: usize,
    /// The topics' ends, so stopping first reads up to them.
    log: Arc<dyn OutputLog>,
}

/// How long stopping waits for the lake to read up to the topics' ends.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// ... and for how long nothing must arrive before it believes it is there.
const QUIET: Duration = Duration::from_millis(500);

/// A topic record's row; `None` for what is not the pipeline's output.
type Decode<R> = fn(&[u8]) -> Option<R>;

fn spawn<B: Broker, R: LakeRow + Send + 'static>(
    broker: &B,
    group: &str,
    topic: &str,
    common: &Common,
    stop: &Arc<AtomicBool>,
    decode: Decode<R>,
) -> Result<JoinHandle<()>> {
    let consumer = format!("{group}-lake-{topic}");
    let shared = Arc::new(Shared::default());
    let listener = Arc::new(Positions {
        common: common.clone(),
        table: R::TABLE,
        topic: topic.to_owned(),
        shared: shared.clone(),
    });
    let source = broker
        .subscribe(&consumer, topic, listener)
        .with_context(|| format!("subscribing the lake writer to {topic}"))?;
    let worker = Worker {
        common: common.clone(),
        topic: topic.to_owned(),
        shared,
        decode,
        pending: BTreeMap::new(),
        read: HashMap::new(),
    };
    let stop = stop.clone();
    std::thread::Builder::new()
        .name(format!("lake-{}", R::TABLE))
        .spawn(move || worker.run(source, &stop))
        .context("starting a lake writer thread")
}

/// What the partition listener (inside `poll`, on the worker's thread) tells
/// the worker.
#[derive(Default)]
struct Shared {
    /// Per assigned partition, the first offset not yet in the lake: records
    /// below it (the rewind) are skipped.
    floor: Mutex<HashMap<i32, i64>>,
    /// Partitions assigned or revoked since the worker last looked: their
    /// unwritten rows are dropped (they are read again from the position).
    reset: Mutex<Vec<i32>>,
}

struct Positions {
    common: Common,
    table: &'static str,
    topic: String,
    shared: Arc<Shared>,
}

impl PartitionListener for Positions {
    fn assigned(&self, partitions: &[i32]) -> Vec<(i32, i64)> {
        let c = &self.common;
        let mut starts = Vec::new();
        for &p in partitions {
            let floor = match c.io.block_on(async {
                let next = c.writer.position(self.table, p).await?.unwrap_or(0);
                let torn = c.writer.discard_from(self.table, p, next).await?;
                Ok::<_, veriflow_analytics::lake::LakeError>((next, torn))
            }) {
                Ok((next, torn)) => {
                    if torn > 0 {
                        tracing::info!(
                            table = self.table,
                            partition = p,
                            files = torn,
                            "removed the files of a batch that never committed"
                        );
                    }
                    starts.push((p, (next - c.rewind).max(0)));
                    next
                }
                Err(e) => {
                    // Nothing of this partition is written until it is assigned
                    // again: the topic keeps it, the position did not move.
                    tracing::error!(error = %e, table = self.table, topic = %self.topic, partition = p, "reading the lake position failed; the partition is paused");
                    i64::MAX
                }
            };
            lock(&self.shared.floor).insert(p, floor);
            lock(&self.shared.reset).push(p);
        }
        starts
    }

    fn revoked(&self, partitions: &[i32]) -> Vec<(i32, i64)> {
        let mut floor = lock(&self.shared.floor);
        for p in partitions {
            floor.remove(p);
        }
        lock(&self.shared.reset).extend_from_slice(partitions);
        Vec::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Rows read from one partition since its last commit.
struct Pending<R> {
    first: i64,
    next: i64,
    rows: Vec<R>,
    since: Instant,
}

struct Worker<R> {
    common: Common,
    topic: String,
    shared: Arc<Shared>,
    decode: Decode<R>,
    pending: BTreeMap<i32, Pending<R>>,
    /// The next offset to read per partition, as far as this worker got.
    read: HashMap<i32, i64>,
}

impl<R: LakeRow> Worker<R> {
    fn run<S: Source>(mut self, source: S, stop: &AtomicBool) {
        let mut skipped = 0u64;
        // Set once stopping: the topics' ends to read up to, and until when.
        let mut drain: Option<(HashMap<i32, i64>, Instant)> = None;
        let mut last_record = Instant::now();
        loop {
            if drain.is_none() && stop.load(Ordering::Relaxed) {
                drain = Some((self.ends(), Instant::now() + DRAIN_LIMIT));
            }
            // Done when every held partition reached the ends, nothing arrived
            // for a while, and the ends read again have not moved (a broker may
            // report an end behind what it has just acknowledged).
            let mut finished = false;
            if let Some((ends, until)) = &mut drain {
                if Instant::now() >= *until {
                    tracing::warn!(topic = %self.topic, "the lake did not reach the topic's end in time; the rest is copied at the next start");
                    finished = true;
                } else if last_record.elapsed() >= QUIET && self.caught_up(ends) {
                    let fresh = self.ends();
                    if fresh == *ends {
                        finished = true;
                    } else {
                        *ends = fresh;
                    }
                }
            }
            if !finished {
                let event = source.poll(Duration::from_millis(50));
                // The listener ran inside poll: forget what it reset before
                // taking the record (which may be of a newly assigned partition).
                for p in std::mem::take(&mut *lock(&self.shared.reset)) {
                    self.pending.remove(&p);
                    self.read.remove(&p);
                }
                match event {
                    Ok(SourceEvent::Record(record)) => {
                        last_record = Instant::now();
                        let (p, offset) = (record.partition(), record.offset());
                        let floor = lock(&self.shared.floor).get(&p).copied();
                        if floor.is_some_and(|f| offset >= f) {
                            let row = (self.decode)(record.payload());
                            if row.is_none() {
                                skipped += 1;
                            }
                            let pending = self.pending.entry(p).or_insert_with(|| Pending {
                                first: offset,
                                next: offset,
                                rows: Vec::new(),
                                since: Instant::now(),
                            });
                            pending.next = offset + 1;
                            pending.rows.extend(row);
                        }
                        self.read.insert(p, offset + 1);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, topic = %self.topic, "lake consume error")
                    }
                }
            }
            let waiting: usize = self.pending.values().map(|p| p.rows.len()).sum();
            let due = finished
                || waiting >= self.common.max_rows
                || self
                    .pending
                    .values()
                    .any(|p| p.since.elapsed() >= self.common.flush_interval);
            if due && !self.pending.is_empty() {
                if !self.commit(&source, stop) {
                    tracing::error!(topic = %self.topic, "lake writer stopped; it resumes from its last position at the next start");
                    break;
                }
                if skipped > 0 {
                    tracing::warn!(skipped, topic = %self.topic, "records that are not pipeline output were not kept");
                    skipped = 0;
                }
            }
            if finished {
                if let Some((ends, _)) = &drain {
                    let floor = lock(&self.shared.floor).clone();
                    tracing::debug!(topic = %self.topic, ?ends, ?floor, read = ?self.read, "lake writer stopped");
                }
                break;
            }
        }
        source.close();
    }

    /// The current end of every partition of the topic.
    fn ends(&self) -> HashMap<i32, i64> {
        match self.common.log.high_watermarks(&self.topic) {
            Ok(ends) => ends.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, topic = %self.topic, "reading the topic's end failed; the lake stops where it is");
                HashMap::new()
            }
        }
    }

    /// Every partition this worker holds read up to `ends` (a partition whose
    /// position is already there needs no record). A worker that holds nothing
    /// yet of a topic with records is not done: its assignment may still be on
    /// its way (a short run stops before the group has settled).
    fn caught_up(&self, ends: &HashMap<i32, i64>) -> bool {
        let floor = lock(&self.shared.floor);
        if floor.is_empty() {
            return ends.values().all(|end| *end <= 0);
        }
        floor.iter().all(|(p, f)| {
            let at = self.read.get(p).copied().unwrap_or(0).max(*f);
            at >= ends.get(p).copied().unwrap_or(0)
        })
    }

    /// Commits every partition's pending rows, retrying while the store is
    /// unreachable (nothing is read meanwhile). False when stopping before
    /// the store came back (the rows are read again at the next start).
    fn commit<S: Source>(&mut self, source: &S, stop: &AtomicBool) -> bool {
        let c = &self.common;
        let mut offsets = Vec::new();
        for (&p, pending) in &self.pending {
            let rows: Vec<&R> = pending.rows.iter().collect();
            let mut backoff = Duration::from_millis(200);
            loop {
                match c
                    .io
                    .block_on(c.writer.commit(p, pending.first, pending.next, &rows))
                {
                    Ok(bytes) => {
                        tracing::debug!(
                            table = R::TABLE,
                            partition = p,
                            rows = rows.len(),
                            bytes,
                            "lake batch committed"
                        );
                        break;
                    }
                    Err(e) if !stop.load(Ordering::Relaxed) => {
                        tracing::warn!(error = %e, table = R::TABLE, "writing the lake failed; retrying");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, table = R::TABLE, "writing the lake failed while stopping");
                        return false;
                    }
                }
            }
            offsets.push((p, pending.next));
        }
        self.pending.clear();
        // For lag monitoring only: the lake's positions are the truth.
        if let Err(e) = source.commit(&offsets) {
            tracing::debug!(error = %e, "committing lake offsets failed (positions are in the lake)");
        }
        true
    }
}

fn outcome_row(payload: &[u8]) -> Option<OutcomeRow> {
    OutcomeRow::of(&serde_json::from_slice::<OutcomeRecord>(payload).ok()?)
}

fn alert_row(payload: &[u8]) -> Option<AlertRow> {
    AlertRow::of(&serde_json::from_slice::<AlertRecord>(payload).ok()?)
}

/// A scored record's row: identity, the verdict flattened, the features.
fn scored_row(payload: &[u8]) -> Option<ScoredRow> {
    let r: ScoredRecord = serde_json::from_slice(payload).ok()?;
    let v = &r.verdict;
    let top = v.routes.first();
    Some(ScoredRow {
        scored_id: r.scored_id.to_string(),
        tenant_id: r.tenant_id.to_string(),
        verification_id: r.verification_id.to_string(),
        event_id: r.event_id.to_string(),
        requested_at: parse_rfc3339(&r.requested_at)?,
        country: r.country.to_string(),
        variant: r.variant.to_string(),
        fraud_score: v.fraud_score,
        fraud_decision: v.fraud_decision.as_str().to_owned(),
        fraud_reasons: v.fraud_reasons.join(","),
        review_threshold: v.fraud_thresholds.review,
        block_threshold: v.fraud_thresholds.block,
        routes: v
            .routes
            .iter()
            .map(|r| format!("{}:{:.4}", r.provider, r.p_success))
            .collect::<Vec<_>>()
            .join(","),
        top_provider: top.map(|t| t.provider.clone()),
        top_p_success: top.map(|t| t.p_success),
        chosen_provider: v.choice.clone(),
        fraud_model: format!("{}@{}", v.model.fraud.name, v.model.fraud.version),
        success_model: format!("{}@{}", v.model.success.name, v.model.success.version),
        features: r.features.into_owned(),
    })
}
