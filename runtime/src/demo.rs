//! `veriflow demo`: the seeded simulator feeds the engine in-process through
//! the driver, and the terminal shows a live summary. No external services.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use veriflow_connectors::memory::{Fed, IterSource};
use veriflow_pipelines::time::format_rfc3339;
use veriflow_pipelines::{Engine, Output, PipelineConfig};
use veriflow_simulator::{SimConfig, SimItem, Simulator};

use crate::driver::{Driver, DriverOptions, Stage};
use crate::error::Result;
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

/// The live view: the summary of what the engine emitted, redrawn each tick.
struct Screen {
    summary: Summary,
    sim_now: Arc<AtomicI64>,
    tty: bool,
    started: Instant,
}

impl Screen {
    fn render(&mut self, engine: &Engine) {
        let gauges = Gauges::of(engine);
        let rate = self.summary.tick_rate(gauges.received);
        let header = format!(
            "veriflow demo — simulated time {}  (Ctrl-C to stop)",
            format_rfc3339(self.sim_now.load(Ordering::Relaxed))
        );
        let table = self.summary.table(gauges, rate, &header);
        let mut stdout = std::io::stdout().lock();
        if self.tty {
            let _ = write!(stdout, "\x1b[2J\x1b[H{table}");
        } else {
            let _ = writeln!(stdout, "{table}");
        }
        let _ = stdout.flush();
    }
}

impl Stage for Screen {
    fn observe(&mut self, output: &Output) {
        self.summary.observe(output);
    }

    fn tick(&mut self, engine: &Engine) {
        self.render(engine);
    }

    fn finish(&mut self, engine: &Engine) {
        self.render(engine);
        println!(
            "stopped after {:.1} s; {} verifications still in flight were left undecided",
            self.started.elapsed().as_secs_f64(),
            engine.in_flight()
        );
    }
}

pub fn demo(options: DemoOptions, shutdown: Arc<AtomicBool>) -> Result<()> {
    let pipeline = PipelineConfig {
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
    let started = Instant::now();
    let sim_now = Arc::new(AtomicI64::new(sim_start));
    // Stops the driver on Ctrl-C or when the duration is up.
    let stop = Arc::new(AtomicBool::new(false));
    let feed = {
        let (stop, sim_now, duration) = (stop.clone(), sim_now.clone(), options.duration);
        let mut sim = Simulator::new(sim_config);
        let mut stashed = None;
        std::iter::from_fn(move || {
            if shutdown.load(Ordering::Relaxed) || duration.is_some_and(|d| started.elapsed() >= d)
            {
                stop.store(true, Ordering::Relaxed);
                return Some(Fed::Pending);
            }
            let event = match stashed.take() {
                Some(e) => e,
                None => loop {
                    match sim.next() {
                        Some(SimItem::Event(e)) => break e,
                        Some(SimItem::Truth(_)) => continue,
                        None => return None,
                    }
                },
            };
            if event.arrival > pacer.horizon() {
                stashed = Some(event);
                std::thread::sleep(Duration::from_millis(5));
                return Some(Fed::Pending);
            }
            sim_now.store(event.arrival, Ordering::Relaxed);
            Some(Fed::Record(Some(event.key), event.payload))
        })
    };
    let screen = Screen {
        summary: Summary::default(),
        sim_now,
        tty: std::io::stdout().is_terminal(),
        started,
    };
    let engine = Engine::new(pipeline, "demo", None);
    let options = DriverOptions {
        until_end: false,
        checkpoint_interval: Duration::from_secs(3600),
        input_partitions: (0..options.partitions.max(1) as i32).collect(),
        ..DriverOptions::default()
    };
    let partitions = options.input_partitions.len() as u32;
    let driver = Driver::new(engine, None, vec![Box::new(screen)], options);
    let source = IterSource::new(feed, partitions, driver.listener());
    driver.run(source, &stop)
}
