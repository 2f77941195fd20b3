//! `veriflow demo`: the seeded simulator feeds the pipeline in-process, and the
//! terminal shows a live summary. No external services.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use veriflow_pipelines::time::format_rfc3339;
use veriflow_pipelines::{Engine, InputRecord, PipelineConfig, ValidationLimits};
use veriflow_simulator::{SimConfig, SimEvent, SimItem, Simulator};

use crate::pace::Pacer;
use crate::summary::{Gauges, Summary};

pub struct DemoOptions {
    pub duration: Option<Duration>,
    pub seed: u64,
    pub rate: f64,
    /// Simulated seconds per wall-clock second; `None` runs as fast as possible.
    pub speed: Option<f64>,
    pub fraud_share: f64,
    pub partitions: u32,
}

const REFRESH: Duration = Duration::from_secs(1);

pub fn demo(options: DemoOptions, shutdown: Arc<AtomicBool>) -> anyhow::Result<()> {
    let pipeline = PipelineConfig {
        limits: ValidationLimits {
            max_future_skew_ms: None,
            ..ValidationLimits::default()
        },
        // KPI windows feed the alert rules, shown live (no InfluxDB here).
        kpi_window_ms: Some(60_000),
        alert_rules: veriflow_pipelines::alerts::AlertRule::defaults(),
        ..PipelineConfig::default()
    };
    let sim_config = SimConfig {
        seed: options.seed,
        duration_ms: None,
        rate: options.rate,
        fraud_share: options.fraud_share,
        malformed_share: 0.001,
        max_arrival_delay_ms: pipeline.allowed_lateness_ms / 2,
        ..SimConfig::default()
    };
    let sim_start = sim_config.start;
    let mut sim = Simulator::new(sim_config);
    let mut engine = Engine::new(pipeline.clone(), "demo", None);
    let mut summary = Summary::default();
    let mut offsets = vec![0i64; options.partitions.max(1) as usize];
    let mut out = Vec::new();
    // Fast-forward past the first TTL + lateness, so that the live view opens in a
    // steady state (expiries happen only that long after the first requests).
    let warmup_ms = pipeline.ttl_ms + pipeline.allowed_lateness_ms + 3 * 60_000;
    let pacer = Pacer::new(sim_start + warmup_ms, options.speed);
    if options.speed.is_some() {
        println!(
            "veriflow demo: fast-forwarding the first {} simulated minutes ...",
            warmup_ms / 60_000
        );
    }
    let mut stashed: Option<SimEvent> = None;
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut last_refresh = Instant::now();
    let mut sim_now = sim_start;

    loop {
        if shutdown.load(Ordering::Relaxed)
            || options.duration.is_some_and(|d| started.elapsed() >= d)
        {
            break;
        }
        let horizon = pacer.horizon();
        let mut processed = 0;
        loop {
            let event = match stashed.take() {
                Some(e) => e,
                None => match sim.next() {
                    Some(SimItem::Event(e)) => e,
                    Some(SimItem::Truth(_)) => continue,
                    None => break,
                },
            };
            if event.arrival > horizon {
                stashed = Some(event);
                break;
            }
            sim_now = event.arrival;
            let partition = (veriflow_pipelines::lifecycle::fnv1a64(event.key.as_bytes())
                % offsets.len() as u64) as usize;
            let record = InputRecord {
                offset: offsets[partition],
                key: Some(event.key.as_bytes()),
                payload: &event.payload,
            };
            offsets[partition] += 1;
            engine.process(partition as i32, record, 0, &mut out);
            processed += 1;
            if processed % 4096 == 0 {
                break; // let the clock and the screen move
            }
        }
        engine.fire_timers(&mut out);
        for o in out.drain(..) {
            summary.observe(&o);
        }
        if last_refresh.elapsed() >= REFRESH {
            render(&mut summary, &engine, sim_now, tty);
            last_refresh = Instant::now();
        }
        if processed == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    render(&mut summary, &engine, sim_now, tty);
    println!(
        "stopped after {:.1} s; {} verifications still in flight were left undecided",
        started.elapsed().as_secs_f64(),
        engine.in_flight()
    );
    Ok(())
}

fn render(summary: &mut Summary, engine: &Engine, sim_now: i64, tty: bool) {
    let stats = engine.stats();
    let gauges = Gauges {
        received: stats.received,
        in_flight: engine.in_flight() as u64,
        duplicates: stats.duplicates,
    };
    let rate = summary.tick_rate(gauges.received);
    let header = format!(
        "veriflow demo — simulated time {}  (Ctrl-C to stop)",
        format_rfc3339(sim_now)
    );
    let table = summary.table(gauges, rate, &header);
    let mut stdout = std::io::stdout().lock();
    if tty {
        let _ = write!(stdout, "\x1b[2J\x1b[H{table}");
    } else {
        let _ = writeln!(stdout, "{table}");
    }
    let _ = stdout.flush();
}
