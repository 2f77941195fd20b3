//! `veriflow train` and `veriflow evaluate`: the scoring models from history.
//!
//! History is an events file in arrival order (what `veriflow simulate --out`
//! writes) or a Kafka topic read from the beginning, with its ground truth
//! beside it (`<name>.truth.jsonl`, `<topic>.truth.jsonl`). Events are replayed
//! through the stream's own pipeline code (`veriflow_models::dataset::replay`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use veriflow_connectors::kafka::{KafkaConfig, OffsetsReader};
use veriflow_models::ScoringModels;
use veriflow_models::dataset::{Example, TruthLine, replay};
use veriflow_models::evaluate::{Report, evaluate, train};
use veriflow_models::logistic::TrainConfig;
use veriflow_pipelines::time::parse_rfc3339;

use crate::config::Config;
use crate::simulate::{Target, default_truth_path};

/// `veriflow train`'s flags.
#[derive(clap::Args)]
pub struct TrainOptions {
    /// The history: an events file (one JSON per line, in arrival order, as
    /// `veriflow simulate --out file://…` writes) or `kafka://host:port/topic`
    /// (read from the beginning).
    #[arg(long, value_parser = parse_history)]
    pub from: Target,
    /// For `kafka://` history: the configuration whose `[kafka] properties`
    /// (TLS, SASL, ...) the reader uses; `VERIFLOW_KAFKA__*` variables apply too.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Ground truth; default: `<from without .jsonl>.truth.jsonl`.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Train on requests before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Where model versions are written (`<out>/<version>/`).
    #[arg(long, default_value = "models/trained")]
    pub out: PathBuf,
    #[arg(long)]
    pub version: Option<String>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 400)]
    pub epochs: usize,
}

pub fn run_train(o: TrainOptions) -> anyhow::Result<()> {
    let until = o
        .until
        .as_deref()
        .map(|t| parse_rfc3339(t).with_context(|| format!("--until {t:?} is not an RFC 3339 time")))
        .transpose()?;
    let mut examples = load(&o.from, o.truth.as_deref(), o.config.as_deref())?;
    if let Some(until) = until {
        examples.retain(|e| e.requested_at < until);
    }
    anyhow::ensure!(
        examples.len() >= 1000,
        "only {} verifications with ground truth before --until; train on more history",
        examples.len()
    );
    let version = o.version.unwrap_or_else(|| {
        let last = examples.last().map_or(0, |e| e.requested_at);
        let stamp = veriflow_pipelines::time::format_rfc3339(last)
            .replace([':', '-'], "")
            .chars()
            .take(13)
            .collect::<String>();
        format!("{stamp}-s{}", o.seed)
    });
    eprintln!(
        "training on {} verifications ({} epochs) ...",
        examples.len(),
        o.epochs
    );
    let config = TrainConfig {
        epochs: o.epochs,
        ..TrainConfig::default()
    };
    let models = train(&examples, &o.from.to_string(), &version, o.seed, &config)?;
    let dir = o.out.join(&version);
    models
        .save(&dir)
        .with_context(|| format!("writing {}", dir.display()))?;
    print_card(&models);
    println!("saved {} (model.safetensors, card.json)", dir.display());
    Ok(())
}

pub fn run_evaluate(
    models: &Path,
    from: &Target,
    truth: Option<&Path>,
    config: Option<&Path>,
) -> anyhow::Result<()> {
    let models = ScoringModels::load(models)
        .with_context(|| format!("loading the models in {}", models.display()))?;
    let examples = load(from, truth, config)?;
    let report = evaluate(
        &models,
        &examples,
        mean_approved(&examples),
        Some(models.card.block_threshold),
    )?;
    println!(
        "model {} {} on {} ({} verifications)",
        models.card.name,
        models.card.version,
        from,
        examples.len()
    );
    print_report(&report);
    Ok(())
}

fn mean_approved(examples: &[Example]) -> f64 {
    let sent: Vec<&Example> = examples
        .iter()
        .filter(|e| e.first_provider.is_some())
        .collect();
    sent.iter().filter(|e| e.approved).count() as f64 / sent.len().max(1) as f64
}

fn print_card(m: &ScoringModels) {
    let c = &m.card;
    println!(
        "model {} {}: trained on {} rows ({} → {}), holdout {} rows from {}, {:.1}s",
        c.name,
        c.version,
        c.training.train_rows,
        c.training.from,
        c.training.until,
        c.training.holdout_rows,
        c.training.holdout_from,
        c.training.seconds
    );
    print_report(&Report {
        fraud: c.fraud.clone(),
        success: c.success.clone(),
        routing: c.routing.clone(),
    });
    println!(
        "suggested thresholds: review {:.4}, block {:.4}",
        c.review_threshold, c.block_threshold
    );
}

fn print_report(r: &Report) {
    if r.fraud.base_rate == 0.0 {
        println!("fraud    no pumping in these verifications: fraud metrics are undefined");
    }
    println!(
        "fraud    average precision {:.3} (base rate {:.3}), recall {:.3} at ≤0.5 % false blocks (threshold {:.4})",
        r.fraud.average_precision,
        r.fraud.base_rate,
        r.fraud.recall_at_0_5pct_fpr,
        r.fraud.threshold_at_0_5pct_fpr
    );
    println!(
        "         at the block threshold {:.4}: {:.1} % of pumping blocked, {:.2} % of legitimate",
        r.fraud.block_threshold,
        r.fraud.recall_at_block_threshold * 100.0,
        r.fraud.false_block_rate * 100.0
    );
    for (shape, m) in &r.fraud.by_attack {
        println!(
            "         {shape:<14} {:>6} verifications: average precision {:.3}, {:.1} % blocked",
            m.verifications,
            m.average_precision,
            m.recall_at_block_threshold * 100.0
        );
    }
    println!(
        "success  Brier {:.4} (constant {:.4}), expected calibration error {:.4}",
        r.success.brier, r.success.brier_constant, r.success.ece
    );
    println!(
        "routing  first-attempt success: uniform {:.3}, router {:.3}, oracle {:.3}; uplift captured {:.1} %",
        r.routing.baseline_success,
        r.routing.router_success,
        r.routing.oracle_success,
        r.routing.uplift_captured * 100.0
    );
    println!(
        "         failed first attempts per 1,000 legitimate verifications: uniform {:.0}, router {:.0}",
        r.routing.failed_per_1000_baseline, r.routing.failed_per_1000_router
    );
    match &r.routing.during_outages {
        Some(o) => println!(
            "         during outages ({} verifications with a failing candidate): uniform {:.3}, \
             router {:.3}, oracle {:.3}; uplift captured {:.1} %; sent into the outage {:.1} % \
             (uniform {:.1} %)",
            o.verifications,
            o.baseline_success,
            o.router_success,
            o.oracle_success,
            o.uplift_captured * 100.0,
            o.sent_into_outage * 100.0,
            o.uniform_into_outage * 100.0
        ),
        None => println!("         no provider outage in this history"),
    }
    match &r.routing.outage_reaction {
        Some(o) if o.never_chosen == o.outages => println!(
            "         outage reaction: the router chose none of the {} failing routes while a \
             healthy one was there",
            o.outages
        ),
        Some(o) => println!(
            "         outage reaction (event time): of {} outages, {} on a route the router was \
             choosing; it left them {:.0} s after the start at the median, {:.0} s at most",
            o.outages,
            o.outages - o.never_chosen,
            o.median_s,
            o.max_s
        ),
        None => {}
    }
}

/// History for `--from`: `kafka://host:port/topic`, `file://path`, or a plain path.
pub fn parse_history(s: &str) -> Result<Target, String> {
    if s.starts_with("kafka://") || s.starts_with("file://") {
        s.parse()
    } else {
        Ok(Target::File(PathBuf::from(s)))
    }
}

/// The event payloads of `history` in arrival order. A topic's partitions are
/// merged by record timestamp (producer time), each kept in offset order.
fn payloads(history: &Target, config: Option<&Path>) -> anyhow::Result<Vec<Vec<u8>>> {
    match history {
        Target::File(path) => read_lines(path),
        Target::Kafka { brokers, topic } => {
            let config = Config::load(config)?;
            let reader = OffsetsReader::new(&KafkaConfig {
                brokers: brokers.clone(),
                group_id: "veriflow-train".into(),
                properties: config.kafka.properties,
            })?;
            eprintln!("reading {history} from the beginning ...");
            let mut records = reader
                .read_topic(topic)
                .with_context(|| format!("reading {history}"))?;
            anyhow::ensure!(!records.is_empty(), "{history} holds no records");
            records.sort_by_key(|r| (r.timestamp_ms.unwrap_or(i64::MAX), r.partition, r.offset));
            Ok(records.into_iter().map(|r| r.payload).collect())
        }
    }
}

fn read_lines(events: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let file =
        std::fs::File::open(events).with_context(|| format!("reading {}", events.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0).max(1);
    let mut payloads = Vec::new();
    let mut read = 0u64;
    let mut shown = 0;
    for line in BufReader::new(file).lines() {
        let line = line?;
        read += line.len() as u64 + 1;
        let pct = (read * 100 / size) as usize;
        if pct >= shown + 5 {
            shown = pct;
            progress("reading", pct);
        }
        payloads.push(line.into_bytes());
    }
    progress("reading", 100);
    eprintln!();
    Ok(payloads)
}

/// Reads events and their truth, and replays them into examples.
fn load(
    history: &Target,
    truth: Option<&Path>,
    config: Option<&Path>,
) -> anyhow::Result<Vec<Example>> {
    let truth_path = truth
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_truth_path(history));
    let mut lines: HashMap<String, TruthLine> = HashMap::new();
    let file = std::fs::File::open(&truth_path).with_context(|| {
        format!(
            "reading the ground truth {} (give it with --truth)",
            truth_path.display()
        )
    })?;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let t: TruthLine = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a truth line", truth_path.display(), i + 1))?;
        lines.insert(t.verification_id.clone(), t);
    }
    let payloads = payloads(history, config)?;
    eprintln!(
        "replaying {} events through the pipeline ...",
        payloads.len()
    );
    let examples = replay(payloads.iter().map(Vec::as_slice), &lines);
    eprintln!("{} verifications with ground truth", examples.len());
    Ok(examples)
}

fn progress(what: &str, pct: usize) {
    let filled = pct.min(100) / 5;
    eprint!(
        "\r{what} [{}{}] {pct:>3}%",
        "#".repeat(filled),
        ".".repeat(20 - filled)
    );
    let _ = std::io::stderr().flush();
}
