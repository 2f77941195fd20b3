//! History for `veriflow train` and `evaluate`: an events file in arrival
//! order (what `veriflow simulate --out` writes) or a Kafka topic read from
//! the beginning, with its ground truth beside it (`<name>.truth.jsonl`,
//! `<topic>.truth.jsonl`), replayed through the stream's own pipeline under
//! the `[pipeline]` settings the stream runs with.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};

use veriflow_common::truth::TruthRecord;
use veriflow_connectors::kafka::{KafkaConfig, OffsetsReader};
use veriflow_models::dataset::Example;
use veriflow_models::evaluate::History;
use veriflow_pipelines::PipelineConfig;

use crate::config::Config;
use crate::error::{Context, Result};
use crate::simulate::{Target, default_truth_path};

/// History for `--from`: `kafka://host:port/topic`, `file://path`, or a plain path.
pub fn parse_history(s: &str) -> std::result::Result<Target, String> {
    if s.starts_with("kafka://") || s.starts_with("file://") {
        s.parse()
    } else {
        Ok(Target::File(PathBuf::from(s)))
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal (a log
/// file gets a line at the end instead of carriage returns).
pub struct Progress {
    what: &'static str,
    shown: usize,
    terminal: bool,
}

impl Progress {
    pub fn new(what: &'static str) -> Self {
        Progress {
            what,
            shown: 0,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    pub fn set(&mut self, pct: usize) {
        let pct = pct.min(100);
        if !self.terminal || pct < self.shown + 5 {
            return;
        }
        self.shown = pct;
        let filled = pct / 5;
        eprint!(
            "\r{} [{}{}] {pct:>3}%",
            self.what,
            "#".repeat(filled),
            ".".repeat(20 - filled)
        );
        let _ = std::io::stderr().flush();
    }

    pub fn done(mut self) {
        if self.terminal {
            self.shown = 0;
            self.set(100);
            eprintln!();
        } else {
            eprintln!("{}: done", self.what);
        }
    }
}

/// The event payloads of `history` in arrival order. A topic's partitions are
/// merged by record timestamp (producer time), each kept in offset order;
/// `kafka` lends its `properties` (TLS, SASL) to the reader.
fn payloads(history: &Target, kafka: &KafkaConfig) -> Result<Vec<Vec<u8>>> {
    match history {
        Target::File(path) => read_lines(path),
        Target::Kafka { brokers, topic } => {
            let reader = OffsetsReader::new(&KafkaConfig {
                brokers: brokers.clone(),
                group_id: "veriflow-train".into(),
                ..kafka.clone()
            })
            .context("starting a Kafka reader")?;
            eprintln!("reading {history} from the beginning ...");
            let mut records = reader
                .read_topic(topic)
                .with_context(|| format!("reading {history}"))?;
            crate::ensure!(!records.is_empty(), "{history} holds no records");
            records.sort_by_key(|r| (r.timestamp_ms.unwrap_or(i64::MAX), r.partition, r.offset));
            Ok(records.into_iter().map(|r| r.payload).collect())
        }
    }
}

fn read_lines(events: &Path) -> Result<Vec<Vec<u8>>> {
    let file =
        std::fs::File::open(events).with_context(|| format!("reading {}", events.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0).max(1);
    let mut payloads = Vec::new();
    let mut read = 0u64;
    let mut progress = Progress::new("reading");
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("reading {}", events.display()))?;
        read += line.len() as u64 + 1;
        progress.set((read * 100 / size) as usize);
        payloads.push(line.into_bytes());
    }
    progress.done();
    Ok(payloads)
}

/// The ground truth, by verification id.
fn read_truth(path: &Path) -> Result<HashMap<String, TruthRecord>> {
    let file = std::fs::File::open(path).with_context(|| {
        format!(
            "reading the ground truth {} (give it with --truth)",
            path.display()
        )
    })?;
    let mut lines = HashMap::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let t: TruthRecord = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a truth line", path.display(), i + 1))?;
        lines.insert(t.verification_id.clone(), t);
    }
    Ok(lines)
}

/// Reads events and their truth, and replays them with `config`'s
/// `[pipeline]` into examples; also says what it replayed.
pub fn load(
    history: &Target,
    truth: Option<&Path>,
    config: &Config,
) -> Result<(Vec<Example>, History)> {
    let truth_path = truth
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_truth_path(history));
    let truth = read_truth(&truth_path)?;
    let payloads = payloads(history, &config.kafka)?;
    eprintln!(
        "replaying {} events through the pipeline ...",
        payloads.len()
    );
    let examples = crate::replay::examples(
        payloads.iter().map(Vec::as_slice),
        truth,
        PipelineConfig::new(&config.pipeline),
    )?;
    eprintln!("{} verifications with ground truth", examples.len());
    Ok((
        examples,
        History {
            source: history.to_string(),
            pipeline: config.pipeline.clone(),
        },
    ))
}
