//! veriflow's benchmark harness.
//!
//! Every figure is measured side by side with a baseline in the same run, so the
//! ratios stay meaningful on a noisy machine:
//!
//! * in-process: validate + dedup + lifecycle join + timers over simulator events,
//!   at 1 and 2 threads (partitions split between threads), against the cost of
//!   merely parsing the same bytes into `serde_json::Value`;
//! * end to end: `veriflow run --until-end` draining a topic on the broker, per CPU
//!   second of the veriflow process.
//!
//! `cargo run --release -p veriflow-bench -- --help`; results go to stdout as a table.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use clap::Parser;
use std::sync::atomic::AtomicBool;

use veriflow_common::hash::partition_of;
use veriflow_connectors::kafka::{KafkaConfig, KafkaSink, ensure_topics};
use veriflow_connectors::stream::TopicSpec;
use veriflow_pipelines::{InputRecord, Output, PartitionPipeline, PipelineConfig};
use veriflow_runtime::driver::{BATCH, Stage};
use veriflow_runtime::replay::Replay;
use veriflow_simulator::{SimConfig, SimItem, Simulator};

/// Many small, short-lived allocations per event: mimalloc is markedly faster here
/// than glibc malloc (see bench/REPORT.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Events to generate (approximately).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Repetitions of each in-process measurement; the best is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Also measure end to end through this broker (e.g. 127.0.0.1:9092).
    #[arg(long)]
    brokers: Option<String>,
    /// Partitions of the in-process run and of the benchmark topic.
    #[arg(long, default_value_t = 4)]
    partitions: usize,
    /// Also measure state: memory, checkpoint size and time, and recovery time with
    /// this many verifications in flight (e.g. 1000000).
    #[arg(long)]
    in_flight: Option<usize>,
}

struct Event {
    key: String,
    payload: Vec<u8>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    eprintln!("generating ~{} simulator events ...", args.events);
    let events = generate(args.events);
    let bytes: usize = events.iter().map(|e| e.payload.len()).sum();
    eprintln!("{} events, {:.1} MB", events.len(), bytes as f64 / 1e6);

    let mut rows: Vec<(String, f64, String)> = Vec::new();
    let baseline = best(args.repeat, || parse_only(&events));
    rows.push((
        "parse only (serde_json::Value), 1 thread".into(),
        baseline,
        "baseline".into(),
    ));
    let one = best(args.repeat, || pipeline(&events, args.partitions, 1, false));
    rows.push((
        "pipeline v1, 1 thread".into(),
        one,
        format!("{:.2}× baseline", one / baseline),
    ));
    let kpi = best(args.repeat, || pipeline(&events, args.partitions, 1, true));
    rows.push((
        "pipeline v1 + KPI windows, alerts, forecasts, 1 thread".into(),
        kpi,
        format!("{:.2}× pipeline v1", kpi / one),
    ));
    let two = best(args.repeat, || pipeline(&events, args.partitions, 2, false));
    rows.push((
        "pipeline v1, 2 threads (total)".into(),
        two,
        format!("{:.2}× 1 thread; {:.0}/s per core", two / one, two / 2.0),
    ));
    if let Some(brokers) = &args.brokers {
        let (wall, cpu) = end_to_end(brokers, &events, args.partitions as i32)?;
        let n = events.len() as f64;
        rows.push((
            "end to end via broker, wall clock".into(),
            n / wall,
            format!("{:.1} s incl. group join", wall),
        ));
        rows.push((
            "end to end via broker, per CPU second".into(),
            n / cpu,
            format!("{:.2}× in-process 1 thread", (n / cpu) / one),
        ));
    }

    println!("\n| measurement | events/s | relative |\n|---|---:|---|");
    for (name, rate, rel) in rows {
        println!("| {name} | {rate:.0} | {rel} |");
    }
    if let Some(n) = args.in_flight {
        state(n)?;
    }
    Ok(())
}

/// Resident memory of this process, in bytes (Linux).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// `n` verifications requested and sent, none decided yet: the state a partition
/// holds at peak, checkpointed and restored.
fn state(n: usize) -> anyhow::Result<()> {
    let cfg = PipelineConfig::default();
    let t0: i64 = 1_767_571_200_000;
    let before = rss_bytes();
    let mut pipe = PartitionPipeline::new(0);
    let mut out = Vec::new();
    let started = Instant::now();
    for i in 0..n {
        // Spread over 9 minutes of event time: all still in flight (TTL 10 min), and,
        // as in steady state, only the last `allowed_lateness` of requests still wait
        // for their features.
        let at = veriflow_pipelines::time::format_rfc3339(t0 + (i as i64 * 540_000) / n as i64);
        let vid = format!("v-{i:09}");
        let phone = format!("+55119{:08}", i % 100_000_000);
        let requested = format!(
            r#"{{"event_id":"{vid}-r","type":"verification.requested","verification_id":"{vid}","tenant_id":"t{}","occurred_at":"{at}","phone_number":"{phone}","country":"BR","channel":"sms","service":"login","ip":"100.{}.{}.{}","device_id":"d-{i}"}}"#,
            i % 50,
            (i >> 16) % 256,
            (i >> 8) % 256,
            i % 256
        );
        let sent = format!(
            r#"{{"event_id":"{vid}-s","type":"verification.sent","verification_id":"{vid}","tenant_id":"t{}","occurred_at":"{at}","provider":"sinch","attempt":1,"cost":0.01,"currency":"USD"}}"#,
            i % 50
        );
        for (k, payload) in [requested, sent].iter().enumerate() {
            let record = InputRecord {
                offset: (2 * i + k) as i64,
                key: None,
                payload: payload.as_bytes(),
            };
            pipe.process(&cfg, record, 0, &mut out);
        }
        if i % 4096 == 0 {
            pipe.fire_timers(&cfg, &mut out);
            out.clear();
        }
    }
    pipe.fire_timers(&cfg, &mut out);
    let load = started.elapsed();
    let in_flight = pipe.in_flight();
    let pipe_queue = pipe.features_pending();
    let memory = rss_bytes().saturating_sub(before);

    let dir = std::env::temp_dir().join(format!("veriflow-bench-state-{}", std::process::id()));
    let store = veriflow_pipelines::checkpoint::CheckpointStore::new(&dir, 1);
    let started = Instant::now();
    let bytes = store.save("bench", &pipe.snapshot())?;
    let save = started.elapsed();
    drop(pipe);
    let started = Instant::now();
    let restored = store
        .load_latest("bench", 0)?
        .context("checkpoint just written")?;
    let pipe = PartitionPipeline::restore(&cfg, restored);
    let recover = started.elapsed();
    assert_eq!(pipe.in_flight(), in_flight);
    let _ = std::fs::remove_dir_all(&dir);

    let per_million = |x: f64| x * 1e6 / in_flight as f64;
    println!("\n| state with {in_flight} verifications in flight | value |\n|---|---:|");
    println!(
        "| build (2 events each, features on) | {:.1} s |",
        load.as_secs_f64()
    );
    println!("| of which still waiting for features (the last 2 min) | {pipe_queue} |");
    println!(
        "| resident memory | {:.0} MiB ({:.0} MiB per 1M) |",
        memory as f64 / 1048576.0,
        per_million(memory as f64) / 1048576.0
    );
    println!(
        "| checkpoint size | {:.0} MiB ({:.0} MiB per 1M) |",
        bytes as f64 / 1048576.0,
        per_million(bytes as f64) / 1048576.0
    );
    println!(
        "| checkpoint write (snapshot + encode + fsync) | {:.2} s |",
        save.as_secs_f64()
    );
    println!(
        "| recovery (read + decode + rebuild) | {:.2} s |",
        recover.as_secs_f64()
    );
    Ok(())
}

fn generate(n: usize) -> Vec<Event> {
    let mut sim = Simulator::new(SimConfig {
        seed: 7,
        rate: 400.0,
        duration_ms: None,
        duplicate_share: 0.01,
        fraud_share: 0.03,
        ..SimConfig::default()
    });
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match sim.next() {
            Some(SimItem::Event(e)) => out.push(Event {
                key: e.key,
                payload: e.payload,
            }),
            Some(SimItem::Truth(_)) => {}
            None => break,
        }
    }
    out
}

fn best(repeat: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..repeat.max(1)).map(|_| f()).fold(0.0, f64::max)
}

fn parse_only(events: &[Event]) -> f64 {
    let started = Instant::now();
    let mut ok = 0usize;
    for e in events {
        ok += usize::from(serde_json::from_slice::<serde_json::Value>(&e.payload).is_ok());
    }
    std::hint::black_box(ok);
    events.len() as f64 / started.elapsed().as_secs_f64()
}

/// Counts what a replay emits (so nothing is optimized away).
#[derive(Default)]
struct Count(usize);

impl Stage for Count {
    fn observe(&mut self, _output: &Output) {
        self.0 += 1;
    }
}

/// Events/s of the full v1 pipeline through the runtime's driver (the loop
/// `veriflow run` uses), partitions split over `threads`; `kpi` adds the KPI
/// window facts, alert rules and forecasts (the SQL itself runs per window
/// emission in the KPI stage, not per event).
fn pipeline(events: &[Event], partitions: usize, threads: usize, kpi: bool) -> f64 {
    let pipeline = PipelineConfig {
        kpi_window_ms: kpi.then_some(60_000),
        alert_rules: if kpi {
            veriflow_pipelines::alerts::AlertRule::defaults()
        } else {
            Vec::new()
        },
        ..PipelineConfig::default()
    };
    let partitions = partitions.max(1) as u32;
    // Each thread takes the partitions `p % threads == t`, split before the clock starts.
    let mut by_thread: Vec<Vec<&Event>> = vec![Vec::new(); threads.max(1)];
    for e in events {
        let p = partition_of(e.key.as_bytes(), partitions) as usize;
        by_thread[p % threads.max(1)].push(e);
    }
    let started = Instant::now();
    std::thread::scope(|s| {
        for mine in &by_thread {
            let replay = Replay {
                pipeline: pipeline.clone(),
                partitions,
                batch: BATCH,
            };
            s.spawn(move || {
                let records = mine
                    .iter()
                    .map(|e| (Some(e.key.as_bytes()), e.payload.as_slice()));
                match replay.run(records, Count::default(), &AtomicBool::new(false)) {
                    Ok((count, _)) => {
                        std::hint::black_box(count.0);
                    }
                    Err(e) => eprintln!("replay failed: {e}"),
                }
            });
        }
    });
    events.len() as f64 / started.elapsed().as_secs_f64()
}

/// Produces the events to a fresh topic, then times `veriflow run --until-end`.
/// Returns (wall seconds, CPU seconds of the veriflow process).
fn end_to_end(brokers: &str, events: &[Event], partitions: i32) -> anyhow::Result<(f64, f64)> {
    let exe = veriflow_binary()?;
    let tag = format!(
        "bench-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let topic = format!("{tag}.in");
    let cfg = KafkaConfig {
        brokers: brokers.to_owned(),
        group_id: tag.clone(),
        ..KafkaConfig::default()
    };
    ensure_topics(
        &cfg,
        &[TopicSpec {
            name: topic.clone(),
            partitions,
            compacted: false,
        }],
    )?;
    eprintln!("producing {} events to {topic} ...", events.len());
    let sink = KafkaSink::new(&cfg)?;
    for e in events {
        sink.send(&topic, Some(e.key.as_bytes()), &e.payload, &[])?;
    }
    sink.flush(Duration::from_secs(300))?;
    let checkpoints = std::env::temp_dir().join(&tag);
    eprintln!("running {} run --until-end ...", exe.display());
    let cpu_before = children_cpu_seconds();
    let started = Instant::now();
    let status = Command::new(&exe)
        .args(["run", "--until-end", "--brokers", brokers, "--group", &tag])
        .arg("--checkpoint-dir")
        .arg(&checkpoints)
        .env("VERIFLOW_TOPICS__INPUT", &topic)
        .env("VERIFLOW_TOPICS__OUTCOMES", format!("{tag}.outcomes"))
        .env("VERIFLOW_TOPICS__FEATURES", format!("{tag}.features"))
        .env("VERIFLOW_TOPICS__ROUTE_STATS", format!("{tag}.route-stats"))
        .env("VERIFLOW_TOPICS__DLQ", format!("{tag}.dlq"))
        .env("VERIFLOW_TOPICS__LATE", format!("{tag}.late"))
        .env("VERIFLOW_PIPELINE__MAX_FUTURE_SKEW", "off")
        .env("VERIFLOW_METRICS__LISTEN", "off")
        .env("VERIFLOW_API__LISTEN", "off")
        .env("VERIFLOW_LOG", "warn")
        .stdout(Stdio::null())
        .status()
        .context("running veriflow")?;
    let wall = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&checkpoints);
    if !status.success() {
        bail!("veriflow run failed: {status}");
    }
    Ok((wall, children_cpu_seconds() - cpu_before))
}

/// CPU time of waited-for children so far (including, after `exec`, the shell's).
fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The `veriflow` binary built beside this one (`cargo build --release` first).
fn veriflow_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name("veriflow");
    if !path.exists() {
        bail!(
            "{} not found: run `cargo build --release` first (the bench script does)",
            path.display()
        );
    }
    Ok(path)
}
