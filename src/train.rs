//! `veriflow train` and `veriflow evaluate`: the scoring models from history
//! (read and replayed by `veriflow_runtime::history`), and their reports.

use std::path::PathBuf;

use anyhow::Context;
use veriflow_models::ScoringModels;
use veriflow_models::dataset::Example;
use veriflow_models::evaluate::{Report, evaluate, train};
use veriflow_models::logistic::TrainConfig;
use veriflow_pipelines::time::parse_rfc3339;
use veriflow_runtime::Config;
use veriflow_runtime::history::{load, parse_history};
use veriflow_runtime::scoring::trained_under_other_settings;
use veriflow_runtime::simulate::Target;

/// `veriflow train`'s flags.
#[derive(clap::Args)]
pub struct TrainOptions {
    /// The history: an events file (one JSON per line, in arrival order, as
    /// `veriflow simulate --out file://…` writes) or `kafka://host:port/topic`
    /// (read from the beginning).
    #[arg(long, value_parser = parse_history)]
    pub from: Target,
    /// The configuration the stream runs with: its `[pipeline]` settings are
    /// the ones history is replayed with (recorded in the model card), and
    /// `kafka://` history uses its `[kafka] properties` (TLS, SASL, ...);
    /// `VERIFLOW_*` variables apply too.
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

/// `veriflow evaluate`'s flags.
#[derive(clap::Args)]
pub struct EvaluateOptions {
    /// A model version directory (`models/trained/<version>`).
    #[arg(long)]
    pub models: PathBuf,
    /// An events file, or `kafka://host:port/topic` (read from the beginning).
    #[arg(long, value_parser = parse_history)]
    pub from: Target,
    /// Ground truth; default: beside the events (`<name>.truth.jsonl`).
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// The configuration whose `[pipeline]` settings history is replayed with
    /// (and whose `[kafka] properties` a `kafka://` reader uses).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

pub fn run_train(o: TrainOptions) -> anyhow::Result<()> {
    let until = o
        .until
        .as_deref()
        .map(|t| parse_rfc3339(t).with_context(|| format!("--until {t:?} is not an RFC 3339 time")))
        .transpose()?;
    let config = Config::load(o.config.as_deref())?;
    let (mut examples, history) = load(&o.from, o.truth.as_deref(), &config)?;
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
    let train_config = TrainConfig {
        epochs: o.epochs,
        ..TrainConfig::default()
    };
    let models = train(&examples, &history, &version, o.seed, &train_config)?;
    let dir = o.out.join(&version);
    models
        .save(&dir)
        .with_context(|| format!("writing {}", dir.display()))?;
    print_card(&models);
    println!("saved {} (model.safetensors, card.json)", dir.display());
    Ok(())
}

pub fn run_evaluate(o: EvaluateOptions) -> anyhow::Result<()> {
    let models = ScoringModels::load(&o.models)
        .with_context(|| format!("loading the models in {}", o.models.display()))?;
    let config = Config::load(o.config.as_deref())?;
    let (examples, _) = load(&o.from, o.truth.as_deref(), &config)?;
    let report = evaluate(&models, &examples, mean_first_attempt_approved(&examples))?;
    println!(
        "model {} {} on {} ({} verifications)",
        models.card.name,
        models.card.version,
        o.from,
        examples.len()
    );
    for difference in trained_under_other_settings(&models, &config.pipeline) {
        println!("warning  {difference}");
    }
    print_report(&report);
    Ok(())
}

fn mean_first_attempt_approved(examples: &[Example]) -> f64 {
    let sent: Vec<&Example> = examples
        .iter()
        .filter(|e| e.first_provider.is_some())
        .collect();
    sent.iter().filter(|e| e.first_attempt_approved).count() as f64 / sent.len().max(1) as f64
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
        "         as served (thresholds learned per tenant, floor {:.4}): {:.1} % of pumping blocked, {:.2} % of legitimate blocked, {:.2} % reviewed",
        r.fraud.block_threshold,
        r.fraud.recall_at_block_threshold * 100.0,
        r.fraud.false_block_rate * 100.0,
        r.fraud.review_rate * 100.0
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
        "success  Brier {:.4} (constant {:.4}), expected calibration error {:.4} against outcomes as served ({:.4} before online recalibration)",
        r.success.brier, r.success.brier_constant, r.success.ece, r.success.ece_uncalibrated
    );
    if let (Some(ece), Some(mae)) = (r.success.ece_truth, r.success.mean_abs_error_truth) {
        println!(
            "         against the truth's probabilities: expected calibration error {ece:.4}, mean |p − true P| {mae:.3}"
        );
    }
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
    if let Some(c) = &r.routing.chosen {
        println!(
            "         the route actually chosen (exploration included): {:.3}; uplift captured {:.1} %",
            c.router_success,
            c.uplift_captured * 100.0
        );
        if let Some(o) = &c.during_outages {
            println!(
                "         chosen during outages: {:.3}; uplift captured {:.1} %; sent into the outage {:.1} % (uniform {:.1} %)",
                o.router_success,
                o.uplift_captured * 100.0,
                o.sent_into_outage * 100.0,
                o.uniform_into_outage * 100.0
            );
        }
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
