//! All partitions of one input topic on this instance, and their checkpoints.
//!
//! Sources drive it: `assign` when a partition arrives (state restored from its
//! newest checkpoint), `process` per record, `fire_timers` after a batch,
//! `checkpoint` when the caller has made all emitted outputs durable, `revoke` when a
//! partition leaves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checkpoint::{CheckpointError, CheckpointStore};
use crate::config::PipelineConfig;
use crate::live::LiveFeatures;
use crate::partition::{
    InputRecord, Output, OutputId, PartitionPipeline, PartitionStats, SinkPosition,
};
use crate::routes::RouteSnapshot;
use crate::time::EventTime;

struct Slot {
    pipeline: PartitionPipeline,
    /// `next_offset` at the last checkpoint: unchanged partitions are not rewritten.
    checkpointed_at: Option<i64>,
}

pub struct Engine {
    cfg: PipelineConfig,
    topic: String,
    store: Option<CheckpointStore>,
    slots: BTreeMap<i32, Slot>,
    /// Stats of partitions that left this instance, so totals never go backwards.
    retired: PartitionStats,
    /// The held partitions' feature state, for readers on other threads.
    live: Arc<LiveFeatures>,
}

/// One partition as metrics see it.
#[derive(Debug, Clone)]
pub struct PartitionView {
    pub partition: i32,
    pub next_offset: i64,
    pub watermark: Option<EventTime>,
    pub open: usize,
    pub decided: usize,
}

/// What [`Engine::assign`] found in a partition's checkpoint.
#[derive(Debug, Clone)]
pub struct Restored {
    pub next_offset: i64,
    pub sink_positions: Vec<SinkPosition>,
}

impl Restored {
    fn of(p: &PartitionPipeline) -> Self {
        Restored {
            next_offset: p.next_offset(),
            sink_positions: p.sink_positions().to_vec(),
        }
    }
}

/// What a checkpoint round did.
#[derive(Debug, Clone, Default)]
pub struct CheckpointReport {
    /// `(partition, next offset)`: safe to commit to the source now.
    pub offsets: Vec<(i32, i64)>,
    pub written: usize,
    pub bytes: u64,
    pub duration: Duration,
}

impl Engine {
    pub fn new(
        cfg: PipelineConfig,
        topic: impl Into<String>,
        store: Option<CheckpointStore>,
    ) -> Self {
        Engine {
            cfg,
            topic: topic.into(),
            store,
            slots: BTreeMap::new(),
            retired: PartitionStats::default(),
            live: Arc::default(),
        }
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    /// The feature state of every partition held, as it changes.
    pub fn live_features(&self) -> Arc<LiveFeatures> {
        self.live.clone()
    }

    pub fn partitions(&self) -> impl Iterator<Item = i32> + '_ {
        self.slots.keys().copied()
    }

    /// Takes a partition on, restoring its newest checkpoint. Returns what was
    /// restored, or `None` when the partition starts with empty state.
    pub fn assign(&mut self, partition: i32) -> Result<Option<Restored>, CheckpointError> {
        if let Some(slot) = self.slots.get(&partition) {
            return Ok(Some(Restored::of(&slot.pipeline)));
        }
        let restored = match &self.store {
            Some(store) => store.load_latest(&self.topic, partition)?,
            None => None,
        };
        let fresh = restored.is_none();
        let pipeline = match restored {
            Some(state) => PartitionPipeline::restore(&self.cfg, state),
            None => PartitionPipeline::new(partition),
        };
        let info = (!fresh).then(|| Restored::of(&pipeline));
        // A fresh partition is saved at the next checkpoint even before it processed
        // anything: that first checkpoint records where the outputs stood, which is
        // what lets a crash before any later checkpoint be replayed without duplicates.
        let checkpointed_at = (!fresh).then(|| pipeline.next_offset());
        self.live.register(partition, pipeline.shared());
        self.slots.insert(
            partition,
            Slot {
                pipeline,
                checkpointed_at,
            },
        );
        Ok(info)
    }

    /// Lets a partition go (after the caller checkpointed it).
    pub fn revoke(&mut self, partition: i32) {
        self.live.remove(partition);
        if let Some(slot) = self.slots.remove(&partition) {
            add_stats(&mut self.retired, slot.pipeline.stats());
        }
    }

    pub fn process(
        &mut self,
        partition: i32,
        record: InputRecord<'_>,
        now: EventTime,
        out: &mut Vec<Output>,
    ) {
        let live = &self.live;
        let slot = self.slots.entry(partition).or_insert_with(|| {
            let pipeline = PartitionPipeline::new(partition);
            live.register(partition, pipeline.shared());
            Slot {
                pipeline,
                checkpointed_at: None,
            }
        });
        slot.pipeline.process(&self.cfg, record, now, out);
    }

    /// See [`PartitionPipeline::mark_already_written`].
    pub fn mark_already_written(&mut self, partition: i32, ids: Vec<OutputId>) {
        if let Some(slot) = self.slots.get_mut(&partition) {
            slot.pipeline.mark_already_written(ids);
        }
    }

    pub fn fire_timers(&mut self, out: &mut Vec<Output>) {
        for slot in self.slots.values_mut() {
            slot.pipeline.fire_timers(&self.cfg, out);
        }
    }

    /// See [`PartitionPipeline::advance_idle`].
    pub fn advance_idle(
        &mut self,
        partition: i32,
        idle_for_ms: i64,
        now: EventTime,
        out: &mut Vec<Output>,
    ) {
        if let Some(slot) = self.slots.get_mut(&partition) {
            slot.pipeline.advance_idle(&self.cfg, idle_for_ms, now, out);
        }
    }

    /// End of a bounded input: decide everything still open.
    pub fn drain(&mut self, out: &mut Vec<Output>) {
        for slot in self.slots.values_mut() {
            slot.pipeline.drain(&self.cfg, out);
        }
    }

    /// Saves every partition that changed since its last checkpoint (or only
    /// `only`, if given), recording where the outputs stand. Call only when all
    /// outputs emitted so far are durable.
    pub fn checkpoint(
        &mut self,
        only: Option<&[i32]>,
        sink_positions: &[SinkPosition],
    ) -> Result<CheckpointReport, CheckpointError> {
        let started = Instant::now();
        let mut report = CheckpointReport::default();
        for (&partition, slot) in &mut self.slots {
            if only.is_some_and(|o| !o.contains(&partition)) {
                continue;
            }
            let offset = slot.pipeline.next_offset();
            if slot.checkpointed_at != Some(offset) {
                slot.pipeline.set_sink_positions(sink_positions.to_vec());
                if let Some(store) = &self.store {
                    report.bytes += store.save(&self.topic, &slot.pipeline.snapshot())?;
                    report.written += 1;
                }
                slot.checkpointed_at = Some(offset);
            }
            if offset > 0 {
                report.offsets.push((partition, offset));
            }
        }
        report.duration = started.elapsed();
        Ok(report)
    }

    pub fn stats(&self) -> PartitionStats {
        let mut total = self.retired.clone();
        for slot in self.slots.values() {
            add_stats(&mut total, slot.pipeline.stats());
        }
        total
    }

    /// Route statistics changed since the last call: `(partition, (country, provider), snapshot)`.
    pub fn take_route_updates(&mut self) -> Vec<(i32, (crate::Text, crate::Text), RouteSnapshot)> {
        let mut out = Vec::new();
        for (&p, slot) in &mut self.slots {
            out.extend(
                slot.pipeline
                    .take_route_updates()
                    .into_iter()
                    .map(|(k, s)| (p, k, s)),
            );
        }
        out
    }

    /// Per-partition state for metrics.
    pub fn partition_views(&self) -> Vec<PartitionView> {
        self.slots
            .iter()
            .map(|(&partition, slot)| PartitionView {
                partition,
                next_offset: slot.pipeline.next_offset(),
                watermark: slot.pipeline.watermark(&self.cfg),
                open: slot.pipeline.in_flight(),
                decided: slot.pipeline.decided_remembered(),
            })
            .collect()
    }

    pub fn in_flight(&self) -> usize {
        self.slots.values().map(|s| s.pipeline.in_flight()).sum()
    }
}

fn add_stats(total: &mut PartitionStats, s: &PartitionStats) {
    total.received += s.received;
    total.accepted += s.accepted;
    total.duplicates += s.duplicates;
    total.dead_lettered += s.dead_lettered;
    total.late += s.late;
    total.orphaned += s.orphaned;
    total.after_decision += s.after_decision;
    total.outcomes += s.outcomes;
    total.suppressed += s.suppressed;
    total.skipped_offsets += s.skipped_offsets;
    total.featurized += s.featurized;
}
