//! The delivery guarantees of `veriflow run`, checked on the in-memory broker
//! in seconds: the same runtime code as over Kafka (`veriflow_runtime::run`
//! on a `Broker`), killed at random points (a panic: no final checkpoint, no
//! revoke, the sink's unflushed records lost), restored, handed over between
//! instances. Every output topic must hold each record exactly once, and the
//! same records as a run that was never interrupted.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use veriflow_connectors::memory::{MemoryBroker, MemoryMessage, MemorySource, StoredRecord};
use veriflow_connectors::stream::{
    Broker, OnRecord, OutputLog, PartitionListener, RecordSink, Source, SourceEvent, StreamError,
    TopicSpec,
};
use veriflow_runtime::topics::OutputTopic;
use veriflow_runtime::{Config, RunOptions};
use veriflow_simulator::{SimConfig, SimItem, Simulator};

/// A broker whose engine source dies (panics, as a `kill -9` would: nothing
/// after it runs) once it has handed out `budget` records; negative: never.
#[derive(Clone)]
struct Mortal {
    inner: MemoryBroker,
    budget: Arc<AtomicI64>,
    /// Records handed out by every source of this handle so far.
    seen: Arc<AtomicI64>,
}

struct MortalSource {
    inner: MemorySource,
    budget: Arc<AtomicI64>,
    seen: Arc<AtomicI64>,
}

impl Source for MortalSource {
    type Message<'a> = MemoryMessage;

    fn poll(&self, timeout: Duration) -> Result<SourceEvent<MemoryMessage>, StreamError> {
        let event = self.inner.poll(timeout)?;
        if matches!(event, SourceEvent::Record(_)) {
            self.seen.fetch_add(1, Ordering::Relaxed);
            if self.budget.fetch_sub(1, Ordering::Relaxed) == 1 {
                std::panic::panic_any(Killed);
            }
        }
        Ok(event)
    }
    fn commit(&self, offsets: &[(i32, i64)]) -> Result<(), StreamError> {
        self.inner.commit(offsets)
    }
    fn rejoin(&self) -> Result<(), StreamError> {
        self.inner.rejoin()
    }
    fn close(self) {
        self.inner.close()
    }
}

struct Killed;

impl Broker for Mortal {
    type Source = MortalSource;
    fn describe(&self) -> String {
        "memory (mortal)".into()
    }
    fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), StreamError> {
        self.inner.ensure_topics(topics)
    }
    fn subscribe(
        &self,
        group: &str,
        topic: &str,
        listener: Arc<dyn PartitionListener>,
    ) -> Result<MortalSource, StreamError> {
        Ok(MortalSource {
            inner: self.inner.subscribe(group, topic, listener)?,
            budget: self.budget.clone(),
            seen: self.seen.clone(),
        })
    }
    fn sink(&self) -> Result<Arc<dyn RecordSink>, StreamError> {
        self.inner.sink()
    }
    fn log(&self, group: &str) -> Result<Arc<dyn OutputLog>, StreamError> {
        self.inner.log(group)
    }
    fn follow(
        &self,
        group: &str,
        topic: &str,
        stop: Arc<AtomicBool>,
        on_record: OnRecord,
    ) -> Result<JoinHandle<()>, StreamError> {
        self.inner.follow(group, topic, stop, on_record)
    }
}

impl Mortal {
    fn new(inner: &MemoryBroker, budget: i64) -> Mortal {
        Mortal {
            inner: inner.clone(),
            budget: Arc::new(AtomicI64::new(budget)),
            seen: Arc::new(AtomicI64::new(0)),
        }
    }
}

/// Seeded traffic: (key, payload) lines and the number of verifications.
fn traffic(seed: u64, minutes: i64) -> (Vec<(String, Vec<u8>)>, usize) {
    let mut sim = Simulator::new(SimConfig {
        seed,
        rate: 6.0,
        duration_ms: Some(minutes * 60_000),
        fraud_share: 0.05,
        malformed_share: 0.003,
        duplicate_share: 0.02,
        max_arrival_delay_ms: 150_000,
        ..SimConfig::default()
    });
    let (mut events, mut verifications) = (Vec::new(), 0);
    while let Some(item) = sim.next() {
        match item {
            SimItem::Event(e) => events.push((e.key, e.payload)),
            SimItem::Truth(_) => verifications += 1,
        }
    }
    (events, verifications)
}

fn config(checkpoints: &std::path::Path, models: Option<PathBuf>) -> Config {
    let mut c = Config::default();
    c.kafka.group_id = "engine".into();
    c.kafka.resume_rewind = 16;
    c.checkpoint.dir = checkpoints.to_path_buf();
    c.checkpoint.interval = Duration::from_millis(15);
    c.metrics.listen = None;
    c.api.listen = None;
    c.pipeline.idle_timeout = None;
    c.scoring.models = models;
    c.scoring.reload_interval = None;
    c
}

fn produce(broker: &MemoryBroker, topic: &str, events: &[(String, Vec<u8>)]) {
    broker.create_topic(topic, 4);
    for (key, payload) in events {
        broker.produce(topic, Some(key.as_bytes()), payload);
    }
}

/// One life of `veriflow run --until-end`; `Err` when it was killed.
fn life(broker: Mortal, config: Config) -> std::thread::Result<veriflow_runtime::Result<()>> {
    // A kill is not news: keep the default report for real panics only.
    static QUIET_KILLS: std::sync::Once = std::sync::Once::new();
    QUIET_KILLS.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Killed>() {
                report(info);
            }
        }));
    });
    std::thread::spawn(move || {
        veriflow_runtime::run(
            &config,
            &broker,
            RunOptions { until_end: true },
            Arc::new(AtomicBool::new(false)),
        )
    })
    .join()
}

/// Every record of every output topic as (identity, value), with the
/// identity the runtime uses to suppress replays.
fn outputs(
    broker: &MemoryBroker,
    config: &Config,
) -> BTreeMap<&'static str, Vec<(String, Vec<u8>)>> {
    let mut all = BTreeMap::new();
    for topic in OutputTopic::ALL.into_iter().filter(|t| t.exactly_once()) {
        let records = broker.records(config.topics.name(topic));
        let rows = records
            .into_iter()
            .map(|(_, _, r)| (identity(&r), r.value))
            .collect();
        all.insert(topic.key(), rows);
    }
    all
}

fn identity(r: &StoredRecord) -> String {
    for h in [
        "veriflow.outcome_id",
        "veriflow.features_id",
        "veriflow.scored_id",
        "veriflow.alert_id",
    ] {
        if let Some(id) = r.header(h) {
            return format!("{h}={id}");
        }
    }
    format!(
        "source={}/{}",
        r.header("veriflow.source.partition").unwrap_or("?"),
        r.header("veriflow.source.offset").unwrap_or("?")
    )
}

/// Each identity once per topic; returns the sorted values per topic.
fn exactly_once(
    outputs: &BTreeMap<&'static str, Vec<(String, Vec<u8>)>>,
) -> BTreeMap<&'static str, Vec<Vec<u8>>> {
    let mut sorted = BTreeMap::new();
    for (topic, rows) in outputs {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (id, _) in rows {
            *seen.entry(id.as_str()).or_default() += 1;
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
        assert!(
            twice.is_empty(),
            "{topic}: written more than once: {twice:?}"
        );
        let mut values: Vec<Vec<u8>> = rows.iter().map(|(_, v)| v.clone()).collect();
        values.sort();
        sorted.insert(*topic, values);
    }
    sorted
}

/// A clean run of `events`: the reference.
fn reference(
    events: &[(String, Vec<u8>)],
    models: Option<PathBuf>,
) -> BTreeMap<&'static str, Vec<Vec<u8>>> {
    let broker = MemoryBroker::new(4);
    produce(&broker, "verifications", events);
    let checkpoints = tempfile::tempdir().unwrap();
    let config = config(checkpoints.path(), models);
    life(Mortal::new(&broker, -1), config.clone())
        .expect("the clean run does not panic")
        .expect("the clean run succeeds");
    exactly_once(&outputs(&broker, &config))
}

fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

#[test]
fn kills_at_random_points_then_restores_write_every_output_exactly_once() {
    let (events, verifications) = traffic(41, 20);
    let expected = reference(&events, None);
    // Requests that arrive later than the lateness make orphans (the late
    // topic), so a few verifications have no outcome.
    assert!(expected["outcomes"].len() * 10 > verifications * 9);
    assert!(!expected["dlq"].is_empty() && !expected["late"].is_empty());

    // Linger 32: a dying instance has written part of what it emitted since
    // its last checkpoint, and lost the rest.
    let broker = MemoryBroker::new(4).with_linger(32);
    produce(&broker, "verifications", &events);
    let checkpoints = tempfile::tempdir().unwrap();
    let config = config(checkpoints.path(), None);
    let mut next = xorshift(0x51f1_5eed);
    let mut kills = 0;
    for _ in 0..8 {
        // Each life dies within its first third of the stream (it re-reads
        // from its checkpoint, so it dies having made some progress, or none).
        let budget = 1 + (next() % (events.len() as u64 / 3)) as i64;
        match life(Mortal::new(&broker, budget), config.clone()) {
            Err(panic) if panic.is::<Killed>() => kills += 1,
            Err(_) => panic!("the engine panicked by itself"),
            Ok(result) => {
                result.expect("a life that reached the end succeeds");
                break;
            }
        }
    }
    assert!(kills >= 3, "the test killed too rarely ({kills})");
    life(Mortal::new(&broker, -1), config.clone())
        .expect("the last life is not killed")
        .expect("the last life succeeds");
    assert_eq!(exactly_once(&outputs(&broker, &config)), expected);
}

#[test]
fn partitions_handed_over_between_instances_keep_outputs_exactly_once() {
    let (events, _) = traffic(43, 20);
    let expected = reference(&events, None);
    let broker = MemoryBroker::new(4).with_linger(16);
    produce(&broker, "verifications", &events);
    let checkpoints = tempfile::tempdir().unwrap();
    let config = config(checkpoints.path(), None);

    // A runs; B joins a third of the way in (A revokes half its partitions,
    // B restores them from A's checkpoints) and is killed later; A takes
    // B's partitions back from B's last checkpoint and finishes.
    let a = Mortal::new(&broker, -1);
    let a_seen = a.seen.clone();
    let a_thread = {
        let config = config.clone();
        std::thread::spawn(move || life(a, config))
    };
    let third = events.len() as i64 / 3;
    while a_seen.load(Ordering::Relaxed) < third {
        std::thread::sleep(Duration::from_millis(1));
    }
    let b = Mortal::new(&broker, third / 2);
    let b_result = life(b, config.clone());
    assert!(
        matches!(&b_result, Err(p) if p.is::<Killed>()),
        "B was to be killed mid-stream"
    );
    a_thread
        .join()
        .unwrap()
        .expect("A does not panic")
        .expect("A finishes the stream");
    assert_eq!(exactly_once(&outputs(&broker, &config)), expected);
}

#[test]
fn scored_records_are_exactly_once_across_kills_too() {
    let models = tempfile::tempdir().unwrap();
    let version = train(models.path());
    let (events, verifications) = traffic(47, 12);
    let expected = reference(&events, Some(version.clone()));
    assert_eq!(expected["scored"].len(), expected["features"].len());
    assert!(expected["scored"].len() * 10 > verifications * 9);

    let broker = MemoryBroker::new(4).with_linger(24);
    produce(&broker, "verifications", &events);
    let checkpoints = tempfile::tempdir().unwrap();
    let config = config(checkpoints.path(), Some(version));
    let mut next = xorshift(0x5c0_4ed);
    for _ in 0..5 {
        let budget = 1 + (next() % (events.len() as u64 / 3)) as i64;
        if life(Mortal::new(&broker, budget), config.clone()).is_ok() {
            break;
        }
    }
    life(Mortal::new(&broker, -1), config.clone())
        .expect("the last life is not killed")
        .expect("the last life succeeds");
    let got = exactly_once(&outputs(&broker, &config));
    // The scorer reads the global route view, which follows checkpoints (wall
    // clock): a restarted run may score with other statistics. What must
    // hold is one scored record per request, and the rest byte for byte.
    assert_eq!(got["scored"].len(), expected["scored"].len());
    for topic in ["features", "dlq", "late"] {
        assert_eq!(got[topic], expected[topic], "{topic}");
    }
}

/// A quickly trained model version in `dir`.
fn train(dir: &std::path::Path) -> PathBuf {
    let mut sim = Simulator::new(SimConfig {
        seed: 5,
        rate: 8.0,
        duration_ms: Some(30 * 60_000),
        fraud_share: 0.03,
        ..SimConfig::default()
    });
    let (mut payloads, mut truth) = (Vec::new(), HashMap::new());
    while let Some(item) = sim.next() {
        match item {
            SimItem::Event(e) => payloads.push(e.payload),
            SimItem::Truth(t) => {
                truth.insert(t.verification_id.clone(), *t);
            }
        }
    }
    let examples = veriflow_runtime::replay::examples(
        payloads.iter().map(Vec::as_slice),
        truth,
        veriflow_pipelines::PipelineConfig::default(),
    )
    .unwrap();
    let history = veriflow_models::evaluate::History {
        source: "seed 5".into(),
        pipeline: Default::default(),
    };
    let config = veriflow_models::logistic::TrainConfig {
        epochs: 60,
        ..Default::default()
    };
    let models = veriflow_models::evaluate::train(&examples, &history, "g1", 5, &config).unwrap();
    let path = dir.join("g1");
    models.save(&path).unwrap();
    path
}
