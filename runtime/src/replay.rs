//! History through the engine in-process: the same driver as `veriflow run`,
//! over an [`IterSource`], with no checkpoints and no topics — every output
//! goes to one stage, which the caller gets back. Training, forecast
//! evaluation and the bench replay this way, so they compute exactly what
//! the stream computes.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use veriflow_connectors::memory::{Fed, IterSource};
use veriflow_models::dataset::{Example, ExampleBuilder};
use veriflow_pipelines::{CheckpointReport, Engine, Output, PartitionStats, PipelineConfig};

use crate::driver::{Driver, DriverOptions, Stage};
use crate::error::Result;

/// How a replay runs.
#[derive(Debug, Clone)]
pub struct Replay {
    pub pipeline: PipelineConfig,
    /// Input partitions; records are spread over them by key.
    pub partitions: u32,
    /// Records between timer firings.
    pub batch: usize,
}

/// A stage shared between the driver and the replay's caller.
struct Shared<S>(Arc<Mutex<S>>);

impl<S> Shared<S> {
    fn get(&self) -> std::sync::MutexGuard<'_, S> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S: Stage> Stage for Shared<S> {
    fn observe(&mut self, output: &Output) {
        self.get().observe(output)
    }
    fn after_batch(&mut self, engine: &mut Engine) {
        self.get().after_batch(engine)
    }
    fn durable(&mut self, timeout: Duration) -> bool {
        self.get().durable(timeout)
    }
    fn drain(&mut self) {
        self.get().drain()
    }
    fn tick(&mut self, engine: &Engine) {
        self.get().tick(engine)
    }
    fn checkpointed(&mut self, report: &CheckpointReport) {
        self.get().checkpointed(report)
    }
    fn finish(&mut self, engine: &Engine) {
        self.get().finish(engine)
    }
}

/// Totals of a replay, taken as it ended.
struct Totals(Arc<Mutex<PartitionStats>>);

impl Stage for Totals {
    fn finish(&mut self, engine: &Engine) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = engine.stats();
    }
}

impl Replay {
    /// Replays `records` — `(key, payload)` in arrival order — to their end
    /// (every open verification decided), and returns `stage` with the
    /// engine's totals. `shutdown` stops it early.
    pub fn run<I, K, V, S>(
        &self,
        records: I,
        stage: S,
        shutdown: &AtomicBool,
    ) -> Result<(S, PartitionStats)>
    where
        I: Iterator<Item = (Option<K>, V)> + Send,
        K: AsRef<[u8]> + Send,
        V: AsRef<[u8]> + Send,
        S: Stage + 'static,
    {
        let shared = Arc::new(Mutex::new(stage));
        let totals = Arc::new(Mutex::new(PartitionStats::default()));
        let mut pipeline = self.pipeline.clone();
        // The future-skew guard compares with the wall clock, which a replay
        // of history does not have.
        pipeline.limits.max_future_skew_ms = None;
        let engine = Engine::new(pipeline, "replay", None);
        let options = DriverOptions {
            batch: self.batch.max(1),
            // No store: checkpoints only flush stages; keep them out of the way.
            checkpoint_interval: Duration::from_secs(3600),
            input_partitions: (0..self.partitions.max(1) as i32).collect(),
            ..DriverOptions::default()
        };
        let stages: Vec<Box<dyn Stage>> = vec![
            Box::new(Shared(shared.clone())),
            Box::new(Totals(totals.clone())),
        ];
        let driver = Driver::new(engine, None, stages, options);
        let records = records.map(|(k, v)| Fed::Record(k, v));
        let source = IterSource::new(records, self.partitions, driver.listener());
        driver.run(source, shutdown)?;
        let stage = match Arc::try_unwrap(shared) {
            Ok(m) => m.into_inner().unwrap_or_else(PoisonError::into_inner),
            Err(_) => return Err(crate::invalid!("the replay's stage is still shared")),
        };
        let totals = totals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Ok((stage, totals))
    }
}

/// The training set of a replay: examples from the outputs, with the route
/// statistics each request saw (as of the request, as the scorer sees them).
pub struct TrainingSet(pub ExampleBuilder);

impl Stage for TrainingSet {
    fn observe(&mut self, output: &Output) {
        self.0.observe(output);
    }
}

/// The batch training replays use (the statistics a request sees do not
/// depend on it: they are the partition's as of the request).
pub const TRAINING_BATCH: usize = 1024;

/// Replays `payloads` (one partition, arrival order) with `pipeline` and
/// returns one example per verification with a truth record.
pub fn examples<'a>(
    payloads: impl Iterator<Item = &'a [u8]> + Send,
    truth: std::collections::HashMap<String, veriflow_common::truth::TruthRecord>,
    mut pipeline: PipelineConfig,
) -> Result<Vec<Example>> {
    pipeline.request_routes = true;
    let ttl_ms = pipeline.ttl_ms;
    let replay = Replay {
        pipeline,
        partitions: 1,
        batch: TRAINING_BATCH,
    };
    let records = payloads.map(|p| (None::<&[u8]>, p));
    let (set, _) = replay.run(
        records,
        TrainingSet(ExampleBuilder::new(truth, ttl_ms)),
        &AtomicBool::new(false),
    )?;
    Ok(set.0.finish())
}
