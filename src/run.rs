//! `veriflow run`: Kafka in, Kafka out, with checkpoints.
//!
//! Order of effects, which is what makes a restart safe:
//! 1. records are processed; outputs are queued to the producer as they appear;
//! 2. at each checkpoint the producer is flushed (every output acknowledged), then
//!    each changed partition's state is saved with its next offset;
//! 3. only then are those offsets committed to the consumer group.
//!
//! A crash anywhere resumes from the newest checkpoint, and inputs after it are
//! replayed. Outputs the crashed run already wrote are not written again: each
//! checkpoint records where the output topics ended, and on restore the records past
//! that point are read back and their ids (in headers) suppressed from the replay.
//! See ARCHITECTURE.md for the precise guarantee.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use veriflow_connectors::influx::Backlog;
use veriflow_connectors::kafka::records::RouteStatsRecord;
use veriflow_connectors::kafka::{
    KafkaSink, KafkaSource, OffsetsReader, PartitionListener, SourceEvent, TopicSpec,
    ensure_topics, follow, records,
};
use veriflow_connectors::s3::S3Backend;
use veriflow_pipelines::checkpoint::CheckpointStore;
use veriflow_pipelines::time::now_millis;
use veriflow_pipelines::{Engine, InputRecord, Output, OutputId, SinkPosition};

use crate::api_server::ApiServer;
use crate::config::{Config, TopicsSection};
use crate::kpi_stage::KpiStage;
use crate::live_scoring::LiveScoring;
use crate::metrics::{self, Metrics, PartitionGauges};
use crate::routes_view::RouteView;
use crate::scoring_stage::{ScoringStage, StreamScorer};
use crate::summary::{Gauges, Summary};
use crate::webhook_fanout::FanOut;
use veriflow_pipelines::scoring::ScorerHandle;

pub struct RunOptions {
    /// Stop at the end of the input: decide everything still open, commit, exit.
    pub until_end: bool,
}

/// Records processed between timer firings.
const BATCH: usize = 4096;
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_EVERY: Duration = Duration::from_secs(5);
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// Twice the consumer's 6 s session timeout: long enough for a normal join.
const REJOIN_AFTER: Duration = Duration::from_secs(12);
/// While input is paused for back-pressure, poll (one record) this often.
const PAUSED_POLL_EVERY: Duration = Duration::from_secs(5);
/// How long a checkpoint waits for InfluxDB to take the KPI points before it.
const KPI_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

struct Inner {
    engine: Engine,
    sink: Arc<KafkaSink>,
    offsets: OffsetsReader,
    topics: TopicsSection,
    out: Vec<Output>,
    summary: Summary,
    /// An error raised inside a rebalance callback, surfaced by the main loop.
    error: Option<anyhow::Error>,
    /// Counts assignments and revocations, so the loop notices them.
    rebalances: u64,
    /// See `kafka.resume_rewind`.
    resume_rewind: i64,
    metrics: Arc<Metrics>,
    routes: Arc<RouteView>,
    /// KPI SQL into InfluxDB, when configured.
    kpi: Option<KpiStage>,
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
        let mut out = std::mem::take(&mut self.out);
        for output in out.drain(..) {
            self.summary.observe(&output);
            self.metrics.observe(&output);
            match &output {
                Output::Outcome(o) => {
                    records::send_outcome(&self.sink, &self.topics.outcomes, &self.topics.input, o)?
                }
                Output::Rejected(r) => {
                    let topic = if r.rejection.reason.is_dead_letter() {
                        &self.topics.dlq
                    } else {
                        &self.topics.late
                    };
                    records::send_rejected(&self.sink, topic, &self.topics.input, r)?;
                }
                Output::Features(f) => {
                    // Scored first: a crash between the two re-sends both (same
                    // id) instead of losing the score.
                    if let Some(scored) = &f.scored {
                        records::send_scored(
                            &self.sink,
                            &self.topics.scored,
                            &self.topics.input,
                            f,
                            &scored.record,
                        )?;
                    }
                    records::send_features(
                        &self.sink,
                        &self.topics.features,
                        &self.topics.input,
                        f,
                    )?
                }
                Output::Kpi(k) => {
                    if let Some(kpi) = &mut self.kpi {
                        kpi.handle(k);
                    }
                }
                Output::Forecast(f) => {
                    if let Some(kpi) = &mut self.kpi {
                        kpi.forecast(f);
                    }
                }
                Output::Alert(a) => {
                    tracing::warn!(rule = %a.rule, tenant = %a.tenant, "alert: {}", a.message);
                    records::send_alert(&self.sink, &self.topics.alerts, &self.topics.input, a)?;
                    if let Some(kpi) = &mut self.kpi {
                        kpi.alert(a);
                    }
                }
            }
        }
        // Keep the buffer's capacity for the next batch.
        self.out = out;
        Ok(())
    }

    fn end_batch(&mut self) -> anyhow::Result<()> {
        self.engine.fire_timers(&mut self.out);
        self.emit()
    }

    /// Makes outputs durable, then saves state. Returns the offsets now safe to commit.
    fn checkpoint(&mut self, only: Option<&[i32]>) -> anyhow::Result<Vec<(i32, i64)>> {
        self.end_batch()?;
        // Route statistics travel with the checkpoint: published before the flush,
        // so the state saved below never claims more than the topic holds.
        for (partition, (country, provider), snapshot) in self.engine.take_route_updates() {
            let record = RouteStatsRecord::new(
                &self.topics.input,
                partition,
                &country,
                &provider,
                &snapshot,
            );
            records::send_route_stats(&self.sink, &self.topics.route_stats, &record)?;
        }
        self.sink
            .flush(FLUSH_TIMEOUT)
            .context("flushing outputs before a checkpoint")?;
        // KPI points emitted before this checkpoint must be in InfluxDB before the
        // checkpoint says so; if it is down, the checkpoint waits for the next
        // turn (a restart then replays from the previous one and re-emits: the
        // points overwrite themselves).
        if let Some(kpi) = &self.kpi
            && !kpi.flush(KPI_FLUSH_TIMEOUT)
        {
            tracing::warn!(
                queued = kpi.queued(),
                error = kpi.stats().last_error().unwrap_or_default(),
                "checkpoint deferred: InfluxDB has not accepted the KPI points before it"
            );
            return Ok(Vec::new());
        }
        let positions = self.sink_positions()?;
        let report = self.engine.checkpoint(only, &positions)?;
        if report.written > 0 {
            self.metrics
                .checkpointed(report.duration.as_secs_f64(), report.bytes);
            tracing::debug!(
                partitions = report.written,
                bytes = report.bytes,
                millis = report.duration.as_millis() as u64,
                "checkpoint"
            );
        }
        Ok(report.offsets)
    }

    /// The current end of every output partition.
    fn sink_positions(&self) -> anyhow::Result<Vec<SinkPosition>> {
        let mut positions = Vec::new();
        for topic in [
            &self.topics.outcomes,
            &self.topics.features,
            &self.topics.dlq,
            &self.topics.late,
            &self.topics.alerts,
        ] {
            for (partition, offset) in self.offsets.high_watermarks(topic)? {
                positions.push(SinkPosition {
                    topic: topic.clone(),
                    partition,
                    offset,
                });
            }
        }
        Ok(positions)
    }

    /// After restoring `restored` partitions: read the outputs written since their
    /// checkpoints and remember the ones that came from them.
    fn learn_written_outputs(
        &mut self,
        restored: &[(i32, Vec<SinkPosition>)],
    ) -> anyhow::Result<()> {
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
        let tail = self.offsets.read_tail(&from)?;
        let mut written: HashMap<i32, Vec<OutputId>> = HashMap::new();
        for record in &tail {
            let header = |k: &str| record.header(k).map(str::to_owned);
            let Some((partition, id)) = records::output_identity(&self.topics.input, header) else {
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

    /// Engine totals and per-partition gauges (lag, watermark delay, state size).
    fn publish_metrics(&self) {
        let ends: HashMap<i32, i64> = self
            .offsets
            .high_watermarks(&self.topics.input)
            .map(|v| v.into_iter().collect())
            .unwrap_or_default();
        let now = now_millis();
        let views: Vec<PartitionGauges> = self
            .engine
            .partition_views()
            .into_iter()
            .map(|v| PartitionGauges {
                partition: v.partition,
                lag: ends.get(&v.partition).map_or(0, |end| end - v.next_offset),
                watermark_delay_s: v.watermark.map(|w| (now - w) as f64 / 1000.0),
                open: v.open as i64,
                decided: v.decided as i64,
            })
            .collect();
        self.metrics.publish(&self.engine.stats(), &views);
        if let Some(kpi) = &self.kpi {
            self.metrics.publish_kpi(kpi);
        }
        self.metrics
            .publish_routes(&self.routes.merged(&self.topics.input));
        self.metrics.set_ready(!views.is_empty());
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
    fn assigned(&self, partitions: &[i32]) -> Vec<(i32, i64)> {
        let mut inner = self.lock();
        inner.rebalances += 1;
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
                    inner
                        .error
                        .get_or_insert(anyhow!(e).context(format!("restoring partition {p}")));
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
            inner
                .error
                .get_or_insert(e.context("reading back outputs written after the last checkpoint"));
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

/// `checkpoint.dir` is a directory, or `s3://bucket/prefix` for an object store; one
/// consumer group's checkpoints live under `<dir>/<group id>`.
/// Before the last checkpoint: the KPI points emitted so far must reach InfluxDB,
/// however long it is down (a second Ctrl-C leaves at once; the points are then
/// re-emitted from the previous checkpoint on restart).
fn wait_for_kpi_points(shared: &Shared) {
    let mut inner = shared.lock();
    if let Err(e) = inner.end_batch() {
        tracing::warn!(error = %e, "emitting the last outputs failed");
    }
    let Some(kpi) = &inner.kpi else { return };
    let mut waited = Duration::ZERO;
    while !kpi.flush(Duration::from_secs(1)) {
        waited += Duration::from_secs(1);
        if waited.as_secs() % 10 == 1 {
            tracing::warn!(
                queued = kpi.queued(),
                error = kpi.stats().last_error().unwrap_or_default(),
                "waiting for InfluxDB to accept the KPI points before the final checkpoint \
                 (Ctrl-C again leaves now; they are re-emitted on restart)"
            );
        }
    }
}

fn checkpoint_store(config: &Config, group: &str) -> anyhow::Result<CheckpointStore> {
    let dir = config.checkpoint.dir.to_string_lossy();
    if dir.starts_with("s3://") {
        let url = format!("{}/{group}", dir.trim_end_matches('/'));
        let backend = S3Backend::from_url(&url)?;
        Ok(CheckpointStore::with_backend(
            Arc::new(backend),
            config.checkpoint.keep,
        ))
    } else {
        Ok(CheckpointStore::new(
            config.checkpoint.dir.join(group),
            config.checkpoint.keep,
        ))
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
                spec(&topics.features),
                spec(&topics.dlq),
                spec(&topics.late),
                spec(&topics.alerts),
                spec(&topics.scored),
                TopicSpec {
                    compacted: true,
                    ..spec(&topics.route_stats)
                },
            ],
        )
        .with_context(|| format!("creating topics on {}", kafka.brokers))?;
    }
    let sink = Arc::new(KafkaSink::new(&kafka)?);
    let offsets = OffsetsReader::new(&kafka)?;
    let routes = Arc::new(RouteView::default());
    let stop_following = Arc::new(AtomicBool::new(false));
    let follower = {
        let routes = routes.clone();
        follow(
            &kafka,
            &topics.route_stats,
            stop_following.clone(),
            move |_, value| routes.update(value),
        )
        .with_context(|| format!("following {}", topics.route_stats))?
    };
    let store = checkpoint_store(config, &kafka.group_id)?;
    tracing::info!(store = %store.describe(), "checkpoints");
    let kpi = KpiStage::start(config)?;
    let scoring = if config.scoring.models.is_empty() {
        None
    } else {
        Some(Arc::new(ScoringStage::load(
            std::path::Path::new(&config.scoring.models),
            config.rollout()?,
            config.scoring_reload()?,
        )?))
    };
    let metrics = Arc::new(Metrics::default());
    if config.metrics.listen != "off" {
        let addr = metrics::serve(&config.metrics.listen, metrics.clone())?;
        tracing::info!("metrics on http://{addr}/metrics");
    }
    let api = if config.api.listen != "off" {
        Some(ApiServer::start(config, shutdown.clone())?)
    } else {
        None
    };
    let mut pipeline = config.pipeline()?;
    if let Some(kpi) = &kpi {
        pipeline.kpi_hops = kpi.hops(pipeline.kpi_window_ms)?;
    }
    if let Some(stage) = &scoring {
        pipeline.scorer = Some(ScorerHandle(Arc::new(StreamScorer {
            stage: stage.clone(),
            routes: routes.clone(),
            topic: topics.input.clone(),
            settings: api.as_ref().map(|a| a.scoring_settings.clone()),
        })));
    }
    let engine = Engine::new(pipeline, topics.input.clone(), Some(store));
    if let (Some(api), Some(stage)) = (&api, &scoring) {
        api.attach_scorer(Arc::new(LiveScoring {
            stage: stage.clone(),
            features: engine.live_features(),
            routes: routes.clone(),
            topic: topics.input.clone(),
        }));
    }
    // Webhooks live with the API's database: no API, no fan-out.
    let fan_out = match &api {
        Some(api) if config.webhooks.enabled && config.webhooks.fan_out => Some(FanOut::start(
            config,
            api.webhooks.clone(),
            api.runtime.clone(),
        )?),
        _ => None,
    };
    let shared = Arc::new(Shared(Mutex::new(Inner {
        engine,
        sink,
        offsets,
        topics: topics.clone(),
        out: Vec::with_capacity(BATCH),
        summary: Summary::default(),
        error: None,
        rebalances: 0,
        resume_rewind: config.kafka.resume_rewind.max(0),
        metrics,
        routes: routes.clone(),
        kpi,
    })));
    let source = KafkaSource::subscribe(&kafka, &topics.input, shared.clone())?;
    tracing::info!(brokers = %kafka.brokers, group = %kafka.group_id, topic = %topics.input, "consuming");

    let interval = Duration::from_millis(config.checkpoint_interval_ms()? as u64);
    let mut last_checkpoint = Instant::now();
    let mut last_log = Instant::now();
    let mut last_publish = Instant::now();
    let mut at_end: BTreeSet<i32> = BTreeSet::new();
    let mut batch = 0usize;
    let mut rebalances_seen = 0u64;
    let mut empty_since: Option<Instant> = None;
    let mut rejoin_after = REJOIN_AFTER;
    let mut last_record: HashMap<i32, Instant> = HashMap::new();
    let mut paused_since: Option<Instant> = None;
    // Checked on every record: an atomic load, not the engine lock.
    let backlog = shared.lock().kpi.as_ref().map(KpiStage::backlog);
    let idle_timeout = config
        .idle_timeout_ms()?
        .map(|ms| Duration::from_millis(ms as u64));
    let input_partitions: BTreeSet<i32> = shared
        .lock()
        .offsets
        .high_watermarks(&topics.input)?
        .into_iter()
        .map(|(p, _)| p)
        .collect();

    let result = (|| -> anyhow::Result<()> {
        loop {
            if shutdown.load(Ordering::Relaxed) {
                tracing::info!("shutting down: checkpointing and committing");
                return Ok(());
            }
            // Back-pressure: while InfluxDB is behind by a full buffer, stop taking
            // input. The group membership lives on (heartbeats run on librdkafka's
            // own thread); one poll every few seconds serves rebalances and keeps
            // max.poll.interval.ms satisfied, at the cost of one record each.
            // (Pausing the partitions instead stalls fetching on tansu 0.6.0.)
            if let Some(queued) = backlog.as_ref().and_then(Backlog::pressing) {
                if paused_since.is_none() {
                    tracing::warn!(
                        queued,
                        "InfluxDB is behind by a full buffer (influx.buffer_points): input paused"
                    );
                    shared.lock().metrics.set_input_paused(true);
                }
                let since = *paused_since.get_or_insert_with(Instant::now);
                if since.elapsed() < PAUSED_POLL_EVERY {
                    std::thread::sleep(Duration::from_millis(100));
                    if last_publish.elapsed() >= PUBLISH_EVERY {
                        shared.lock().publish_metrics();
                        last_publish = Instant::now();
                    }
                    continue;
                }
                paused_since = Some(Instant::now());
            } else if paused_since.take().is_some() {
                shared.lock().metrics.set_input_paused(false);
                tracing::info!("InfluxDB caught up: input resumed");
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
                    last_record.insert(partition, Instant::now());
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
                if let Some(idle_timeout) = idle_timeout {
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
            if last_checkpoint.elapsed() >= interval {
                let offsets = inner.checkpoint(None)?;
                drop(inner);
                source.commit(&offsets)?;
                last_checkpoint = Instant::now();
                inner = shared.lock();
            }
            if last_publish.elapsed() >= PUBLISH_EVERY {
                inner.publish_metrics();
                last_publish = Instant::now();
            }
            if last_log.elapsed() >= LOG_EVERY {
                let gauges = inner.gauges();
                let rate = inner.summary.tick_rate(gauges.received);
                tracing::info!("{}", inner.summary.line(gauges, rate));
                last_log = Instant::now();
            }
            if inner.rebalances != rebalances_seen {
                // Positions may have moved: end-of-partition must be seen afresh.
                rebalances_seen = inner.rebalances;
                at_end.clear();
                // Silence is counted from when a partition arrived here at the earliest.
                for p in inner.engine.partitions() {
                    last_record.entry(p).or_insert_with(Instant::now);
                }
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
                source.rejoin()?;
                inner = shared.lock();
                empty_since = Some(Instant::now());
                rejoin_after = (rejoin_after * 2).min(Duration::from_secs(300));
            }
            if options.until_end && idle {
                // Only when this instance owns the whole topic: while a crashed
                // predecessor is still in the group, it may hold some partitions.
                let assigned: BTreeSet<i32> = inner.engine.partitions().collect();
                if assigned == input_partitions && assigned.iter().all(|p| at_end.contains(p)) {
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
        wait_for_kpi_points(&shared);
        let offsets = shared.lock().checkpoint(None)?;
        source.commit(&offsets)?;
        Ok(())
    })();
    let mut inner = shared.lock();
    if let Some(kpi) = inner.kpi.take() {
        kpi.close(Duration::from_secs(30));
    }
    let gauges = inner.gauges();
    let rate = inner.summary.tick_rate(gauges.received);
    tracing::info!(
        "final: {} suppressed_replays={} skipped_offsets={}",
        inner.summary.line(gauges, rate),
        inner.engine.stats().suppressed,
        inner.engine.stats().skipped_offsets
    );
    drop(inner);
    source.close();
    stop_following.store(true, Ordering::Relaxed);
    let _ = follower.join();
    if let Some(fan_out) = fan_out {
        fan_out.stop_and_join();
    }
    let api_result = api.map_or(Ok(()), ApiServer::stop_and_join);
    result.and(finish).and(api_result)
}
