//! The `veriflow` command line: flags parsed into validated options, then
//! handed to `veriflow-runtime`. CLI and glue only.

mod train;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use veriflow_analytics::lake::{ResultFormat, Scope};
use veriflow_common::config::parse_duration;
use veriflow_connectors::kafka::KafkaBroker;
use veriflow_pipelines::time::parse_rfc3339;
use veriflow_runtime::Config;
use veriflow_runtime::demo::DemoOptions;
use veriflow_runtime::forecast_eval::EvalOptions;
use veriflow_runtime::simulate::{SimulateOptions, Target};
use veriflow_simulator::SimConfig;

/// Many small, short-lived allocations per event: mimalloc is markedly faster here
/// than glibc malloc (see bench/REPORT.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "veriflow",
    version,
    about = "Stream processing and scoring for phone/SMS verification traffic"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume verification events from Kafka and write outcomes, dead letters and
    /// late events back to Kafka, checkpointing as it goes.
    Run(RunArgs),
    /// Serve the HTTP API only (tenants, API keys, templates), until Ctrl-C.
    Api(ApiArgs),
    /// Score the demand forecasts on simulated days (MASE and sMAPE against the
    /// seasonal-naive forecast, by horizon).
    ForecastEval(ForecastEvalArgs),
    /// Train the scoring models (fraud, delivery success) from history: events
    /// replayed through the pipeline, labelled by their ground truth.
    Train(train::TrainOptions),
    /// Print a trained model version's metrics and routing report on (other) history.
    Evaluate(train::EvaluateOptions),
    /// Run the pipeline in-process on simulated traffic and show a live summary.
    Demo(DemoArgs),
    /// Produce simulated contract events (and a ground-truth file) to Kafka or a file.
    Simulate(SimulateArgs),
    /// Run one read-only SQL query over the history lake (lake.dir) and print
    /// the result. Tables and views: verifications, outcomes, scored_requests,
    /// kpi_minute, route_scorecard, fraud_signals, alerts.
    Sql(SqlArgs),
}

#[derive(Args)]
struct SqlArgs {
    /// The query; `-` reads it from standard input.
    query: String,
    /// TOML configuration (see veriflow.toml). Env: VERIFLOW_SECTION__KEY.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Overrides lake.dir (a directory or s3://bucket/prefix).
    #[arg(long)]
    lake: Option<String>,
    /// Answer as this tenant would see it (default: every tenant).
    #[arg(long)]
    tenant: Option<String>,
    /// table, csv, json, arrow or parquet (the last two are binary).
    #[arg(long, default_value = "table", value_parser = parse_format)]
    format: ResultFormat,
}

fn parse_format(s: &str) -> Result<ResultFormat, String> {
    ResultFormat::from_name(s)
        .ok_or_else(|| format!("`{s}` is not one of table, csv, json, arrow, parquet"))
}

#[derive(Args)]
struct RunArgs {
    /// TOML configuration (see veriflow.toml). Env: VERIFLOW_SECTION__KEY.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Overrides kafka.brokers.
    #[arg(long)]
    brokers: Option<String>,
    /// Overrides kafka.group_id.
    #[arg(long)]
    group: Option<String>,
    /// Overrides checkpoint.dir.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Stop at the end of the input: decide every open verification, commit, exit.
    #[arg(long)]
    until_end: bool,
}

#[derive(Args)]
struct ApiArgs {
    /// TOML configuration (see veriflow.toml). Env: VERIFLOW_SECTION__KEY.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Overrides api.listen.
    #[arg(long)]
    listen: Option<String>,
    /// Overrides api.database_url.
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Args)]
struct ForecastEvalArgs {
    #[arg(long, default_value_t = 6)]
    days: u32,
    /// Verification requests per simulated second.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Days of history before scoring starts.
    #[arg(long, default_value_t = 2)]
    warmup_days: u32,
}

#[derive(Args)]
struct DemoArgs {
    /// Wall-clock run time (e.g. 30s); runs until Ctrl-C when omitted.
    #[arg(long, value_parser = parse_std_duration)]
    duration: Option<Duration>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Verification requests per simulated second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Simulated seconds per wall second, or `max`.
    #[arg(long, default_value = "120", value_parser = parse_speed)]
    speed: Speed,
    /// Share of verifications that are SMS-pumping attacks.
    #[arg(long, default_value_t = 0.03)]
    fraud_share: f64,
}

#[derive(Args)]
struct SimulateArgs {
    /// Verification requests per simulated second.
    #[arg(long)]
    rate: f64,
    /// Span of simulated request times (e.g. 10m, 2h).
    #[arg(long, value_parser = parse_ms)]
    duration: i64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// kafka://host:port/topic or file://path/events.jsonl
    #[arg(long)]
    out: Target,
    /// Ground-truth JSON lines (default: beside the events, or <topic>.truth.jsonl).
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Simulated start (RFC 3339).
    #[arg(long, default_value = "2026-01-05T00:00:00Z", value_parser = parse_instant)]
    start: i64,
    #[arg(long, default_value_t = 0.02)]
    fraud_share: f64,
    /// Attack shapes to draw pumping traffic from, comma-separated: sweep,
    /// scatter, single-source, trickle, mimicry, slow-spread (default: the
    /// first four).
    #[arg(long, value_delimiter = ',')]
    attacks: Vec<veriflow_simulator::AttackShape>,
    /// The world: `standard` (fixed countries, providers, tenants) or
    /// `varied:<family>` (a world drawn for the seed from a family's ranges:
    /// other providers and how many, number plans, outage lengths,
    /// conversion, tenants).
    #[arg(long, default_value = "standard")]
    world: veriflow_simulator::WorldKind,
    /// Hard provider outages per simulated day, fleet-wide.
    #[arg(long, default_value_t = 8.0)]
    outages_per_day: f64,
    /// Slow provider degradations per simulated day, fleet-wide.
    #[arg(long, default_value_t = 4.0)]
    degradations_per_day: f64,
    /// Multiplies every route's slow quality drift (0 = none).
    #[arg(long, default_value_t = 1.0)]
    drift_scale: f64,
    /// Share of events delivered twice.
    #[arg(long, default_value_t = 0.01)]
    duplicate_share: f64,
    /// Share of events followed by a malformed message.
    #[arg(long, default_value_t = 0.0)]
    malformed_share: f64,
    /// Largest delay between an event and its arrival; keep it within the
    /// engine's allowed lateness.
    #[arg(long, default_value = "60s", value_parser = parse_ms)]
    max_delay: i64,
    /// Partitions if the topic must be created.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Simulated seconds per wall second, or `max`.
    #[arg(long, default_value = "max", value_parser = parse_speed)]
    speed: Speed,
}

#[derive(Clone, Copy)]
struct Speed(Option<f64>);

fn parse_speed(s: &str) -> Result<Speed, String> {
    if s == "max" {
        return Ok(Speed(None));
    }
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(Speed(Some(x))),
        _ => Err(format!("`{s}` is not a positive number or `max`")),
    }
}

fn parse_std_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
        .ok_or_else(|| format!("`{s}` is not a duration (examples: 500ms, 30s, 10m, 2h)"))
}

fn parse_ms(s: &str) -> Result<i64, String> {
    parse_std_duration(s).map(|d| d.as_millis() as i64)
}

fn parse_instant(s: &str) -> Result<i64, String> {
    parse_rfc3339(s).ok_or_else(|| format!("`{s}` is not an RFC 3339 timestamp"))
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VERIFLOW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let shutdown = install_shutdown_handler()?;
    match cli.command {
        Command::Run(a) => {
            let mut config = Config::load(a.config.as_deref())?;
            if let Some(b) = a.brokers {
                config.kafka.brokers = b;
            }
            if let Some(g) = a.group {
                config.kafka.group_id = g;
            }
            if let Some(d) = a.checkpoint_dir {
                config.checkpoint.dir = d;
            }
            let broker = KafkaBroker::new(config.kafka.clone());
            let options = veriflow_runtime::RunOptions {
                until_end: a.until_end,
            };
            Ok(veriflow_runtime::run(&config, &broker, options, shutdown)?)
        }
        Command::Api(a) => {
            let mut config = Config::load(a.config.as_deref())?;
            if let Some(l) = a.listen {
                config.api.listen = (l != "off").then_some(l);
            }
            if let Some(d) = a.database_url {
                config.api.database_url = d;
            }
            anyhow::ensure!(config.api.listen.is_some(), "api.listen is \"off\"");
            Ok(veriflow_runtime::serve_api(&config, shutdown)?)
        }
        Command::ForecastEval(a) => Ok(veriflow_runtime::forecast_eval::forecast_eval(
            EvalOptions {
                days: a.days,
                rate: a.rate,
                seed: a.seed,
                warmup_days: a.warmup_days,
            },
        )?),
        Command::Train(options) => train::run_train(options),
        Command::Evaluate(options) => train::run_evaluate(options),
        Command::Demo(a) => Ok(veriflow_runtime::demo::demo(
            DemoOptions {
                duration: a.duration,
                seed: a.seed,
                rate: a.rate,
                speed: a.speed.0,
                fraud_share: a.fraud_share,
                partitions: 4,
            },
            shutdown,
        )?),
        Command::Simulate(a) => simulate(a),
        Command::Sql(a) => sql(a),
    }
}

fn sql(a: SqlArgs) -> anyhow::Result<()> {
    let mut config = Config::load(a.config.as_deref())?;
    if let Some(lake) = a.lake {
        config.lake.dir = (lake != "off").then_some(lake);
    }
    let lake = veriflow_runtime::sql::open(&config)?
        .context("lake.dir is \"off\": set it (or pass --lake DIR) to query history")?;
    let query = if a.query == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the query from stdin")?
    } else {
        a.query
    };
    let scope = match a.tenant {
        Some(t) => Scope::Tenant(t),
        None => Scope::Operator,
    };
    let bytes = veriflow_runtime::sql::query_blocking(&lake, &scope, &query, a.format)?;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes).context("writing the result")?;
    if a.format == ResultFormat::Json {
        out.write_all(b"\n").context("writing the result")?;
    }
    out.flush().context("writing the result")?;
    Ok(())
}

fn simulate(a: SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.rate > 0.0, "--rate must be positive");
    for (flag, value) in [
        ("--outages-per-day", a.outages_per_day),
        ("--degradations-per-day", a.degradations_per_day),
        ("--drift-scale", a.drift_scale),
    ] {
        anyhow::ensure!(
            value >= 0.0 && value.is_finite(),
            "{flag} must be a number ≥ 0"
        );
    }
    let defaults = SimConfig::default();
    let sim = SimConfig {
        seed: a.seed,
        start: a.start,
        duration_ms: Some(a.duration),
        rate: a.rate,
        fraud_share: a.fraud_share,
        attack_shapes: if a.attacks.is_empty() {
            defaults.attack_shapes.clone()
        } else {
            a.attacks
        },
        outages_per_day: a.outages_per_day,
        degradations_per_day: a.degradations_per_day,
        drift_scale: a.drift_scale,
        duplicate_share: a.duplicate_share,
        malformed_share: a.malformed_share,
        max_arrival_delay_ms: a.max_delay,
        world: a.world,
        ..defaults
    };
    Ok(veriflow_runtime::simulate::simulate(SimulateOptions {
        sim,
        out: a.out,
        truth: a.truth,
        partitions: a.partitions,
        speed: a.speed.0,
    })?)
}

/// First Ctrl-C / SIGTERM: finish cleanly. Second: leave at once.
fn install_shutdown_handler() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")?;
    Ok(flag)
}
