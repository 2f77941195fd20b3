//! `veriflow simulate`: contract events to Kafka or a file, with the ground truth beside.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use veriflow_connectors::file::JsonLinesWriter;
use veriflow_connectors::kafka::{KafkaConfig, KafkaSink, ensure_topics};
use veriflow_connectors::stream::TopicSpec;
use veriflow_simulator::{SimConfig, SimItem, Simulator};

use crate::error::{Context, Result};
use crate::pace::Pacer;

/// Where events go: `kafka://host:port[,host:port]/topic` or `file://path`.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Kafka { brokers: String, topic: String },
    File(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::File(path) => write!(f, "{}", path.display()),
            Target::Kafka { brokers, topic } => write!(f, "kafka://{brokers}/{topic}"),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("kafka://") {
            match rest.split_once('/') {
                Some((brokers, topic))
                    if !brokers.is_empty() && !topic.is_empty() && !topic.contains('/') =>
                {
                    Ok(Target::Kafka {
                        brokers: brokers.to_owned(),
                        topic: topic.to_owned(),
                    })
                }
                _ => Err(format!("`{s}`: expected kafka://host:port/topic")),
            }
        } else if let Some(path) = s.strip_prefix("file://") {
            if path.is_empty() {
                return Err(format!("`{s}`: expected file://path/to/events.jsonl"));
            }
            Ok(Target::File(PathBuf::from(path)))
        } else {
            Err(format!(
                "`{s}`: expected kafka://host:port/topic or file://path"
            ))
        }
    }
}

pub struct SimulateOptions {
    pub sim: SimConfig,
    pub out: Target,
    /// Ground-truth JSON lines; default beside the events.
    pub truth: Option<PathBuf>,
    /// Partitions when the Kafka topic has to be created.
    pub partitions: i32,
    /// Simulated seconds per wall second; `None` = as fast as possible.
    pub speed: Option<f64>,
}

pub fn default_truth_path(out: &Target) -> PathBuf {
    match out {
        Target::File(path) => {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "events".into());
            path.with_file_name(format!("{stem}.truth.jsonl"))
        }
        Target::Kafka { topic, .. } => PathBuf::from(format!("{topic}.truth.jsonl")),
    }
}

enum Writer {
    Kafka { sink: KafkaSink, topic: String },
    File(JsonLinesWriter),
}

pub fn simulate(options: SimulateOptions) -> Result<()> {
    crate::ensure!(
        options.sim.duration_ms.is_some(),
        "simulate needs a --duration"
    );
    let truth_path = options
        .truth
        .clone()
        .unwrap_or_else(|| default_truth_path(&options.out));
    let mut truth = JsonLinesWriter::create(&truth_path)
        .with_context(|| format!("creating {}", truth_path.display()))?;
    let mut writer = match &options.out {
        Target::Kafka { brokers, topic } => {
            let cfg = KafkaConfig {
                brokers: brokers.clone(),
                group_id: "veriflow-simulate".into(),
                ..KafkaConfig::default()
            };
            ensure_topics(
                &cfg,
                &[TopicSpec {
                    name: topic.clone(),
                    partitions: options.partitions,
                    compacted: false,
                }],
            )
            .with_context(|| format!("creating topic {topic} on {brokers}"))?;
            Writer::Kafka {
                sink: KafkaSink::new(&cfg).context("starting the producer")?,
                topic: topic.clone(),
            }
        }
        Target::File(path) => Writer::File(
            JsonLinesWriter::create(path)
                .with_context(|| format!("creating {}", path.display()))?,
        ),
    };
    let pacer = Pacer::new(options.sim.start, options.speed);
    let mut sim = Simulator::new(options.sim);
    let (mut events, mut verifications) = (0u64, 0u64);
    let started = Instant::now();
    let mut last_progress = Instant::now();
    while let Some(item) = sim.next() {
        match item {
            SimItem::Event(e) => {
                pacer.wait_for(e.arrival);
                match &mut writer {
                    Writer::Kafka { sink, topic } => sink
                        .send(topic, Some(e.key.as_bytes()), &e.payload, &[])
                        .context("producing")?,
                    Writer::File(w) => w.write_line(&e.payload).context("writing events")?,
                }
                events += 1;
            }
            SimItem::Truth(t) => {
                let line = serde_json::to_vec(&t).context("encoding the truth")?;
                truth.write_line(&line).context("writing the truth")?;
                verifications += 1;
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(2) {
            eprintln!("simulate: {events} events, {verifications} verifications");
            last_progress = Instant::now();
        }
    }
    match writer {
        Writer::Kafka { sink, .. } => sink
            .flush(Duration::from_secs(120))
            .context("waiting for the broker to acknowledge")?,
        Writer::File(w) => w.finish().context("writing events")?,
    }
    truth.finish().context("writing the truth")?;
    eprintln!(
        "simulate: wrote {events} events for {verifications} verifications in {:.1} s; ground truth in {}",
        started.elapsed().as_secs_f64(),
        truth_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        assert_eq!(
            "kafka://127.0.0.1:9092/verifications"
                .parse::<Target>()
                .unwrap(),
            Target::Kafka {
                brokers: "127.0.0.1:9092".into(),
                topic: "verifications".into()
            }
        );
        assert_eq!(
            "file://out/ev.jsonl".parse::<Target>().unwrap(),
            Target::File("out/ev.jsonl".into())
        );
        assert_eq!(
            "file:///tmp/ev.jsonl".parse::<Target>().unwrap(),
            Target::File("/tmp/ev.jsonl".into())
        );
        assert!("kafka://host:9092".parse::<Target>().is_err());
        assert!("http://x".parse::<Target>().is_err());
        assert_eq!(
            default_truth_path(&Target::File("out/ev.jsonl".into())),
            PathBuf::from("out/ev.truth.jsonl")
        );
    }
}
