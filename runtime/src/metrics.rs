//! Prometheus metrics and the health endpoints of `veriflow run`.
//!
//! `GET /metrics` (Prometheus text format), `GET /healthz` (the process is up),
//! `GET /readyz` (200 once partitions are assigned, 503 before). Served on
//! `metrics.listen` by axum on a small tokio runtime of its own, so scrapes never
//! touch the processing thread: the loop publishes into these atomics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use veriflow_pipelines::routes::{HALF_LIVES, RouteSnapshot};

use veriflow_connectors::stream::OutputLog;
use veriflow_pipelines::time::now_millis;
use veriflow_pipelines::{CheckpointReport, Engine, OutcomeKind, Output, PartitionStats};

use crate::driver::Stage;
use crate::routes::GlobalRouteStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    country: String,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteWindowLabel {
    country: String,
    provider: String,
    window: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

/// One partition's gauges, as the loop sees them.
pub struct PartitionGauges {
    pub partition: i32,
    pub lag: i64,
    pub watermark_delay_s: Option<f64>,
    pub open: i64,
    pub decided: i64,
}

pub struct Metrics {
    registry: Registry,
    received: Counter,
    duplicates: Counter,
    suppressed: Counter,
    skipped_offsets: Counter,
    rejected: Family<ReasonLabel, Counter>,
    outcomes: Family<OutcomeLabel, Counter>,
    features: Counter,
    lag: Family<PartitionLabel, Gauge>,
    watermark_delay: Family<PartitionLabel, Gauge<f64, AtomicU64>>,
    open: Family<PartitionLabel, Gauge>,
    decided: Family<PartitionLabel, Gauge>,
    route_attempts: Family<RouteLabel, Gauge>,
    route_delivery: Family<RouteWindowLabel, Gauge<f64, AtomicU64>>,
    route_conversion: Family<RouteWindowLabel, Gauge<f64, AtomicU64>>,
    route_latency: Family<RouteWindowLabel, Gauge<f64, AtomicU64>>,
    checkpoint_seconds: Histogram,
    checkpoint_bytes: Gauge,
    ready: AtomicBool,
    /// Engine totals at the last publish, to turn totals into counter increments.
    last: std::sync::Mutex<PartitionStats>,
    kpi: KpiMetrics,
}

/// The KPI stage's totals, as it publishes them.
#[derive(Debug, Clone, Copy, Default)]
pub struct KpiTotals {
    pub windows: u64,
    pub query_errors: u64,
    pub written: u64,
    pub retries: u64,
    pub rejected: u64,
    pub queued: usize,
    /// InfluxDB's last attempt failed with a retryable error.
    pub down: bool,
    /// Input waits for InfluxDB (back-pressure).
    pub input_paused: bool,
}

/// The KPI stage and its InfluxDB sink.
#[derive(Default)]
struct KpiMetrics {
    windows: Counter,
    query_errors: Counter,
    written: Counter,
    retries: Counter,
    rejected: Counter,
    queued: Gauge,
    down: Gauge,
    input_paused: Gauge,
    /// Totals at the last publish: windows, errors, written, retries, rejected.
    last: std::sync::Mutex<[u64; 5]>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("veriflow");
        let m = Metrics {
            received: Counter::default(),
            duplicates: Counter::default(),
            suppressed: Counter::default(),
            skipped_offsets: Counter::default(),
            rejected: Family::default(),
            outcomes: Family::default(),
            features: Counter::default(),
            lag: Family::default(),
            watermark_delay: Family::default(),
            open: Family::default(),
            decided: Family::default(),
            route_attempts: Family::default(),
            route_delivery: Family::default(),
            route_conversion: Family::default(),
            route_latency: Family::default(),
            checkpoint_seconds: Histogram::new([0.001, 0.005, 0.02, 0.1, 0.5, 2.0, 10.0]),
            checkpoint_bytes: Gauge::default(),
            ready: AtomicBool::new(false),
            last: std::sync::Mutex::new(PartitionStats::default()),
            kpi: KpiMetrics::default(),
            registry: Registry::default(),
        };
        let k = &m.kpi;
        registry.register(
            "kpi_windows_emitted",
            "KPI window emissions evaluated",
            k.windows.clone(),
        );
        registry.register(
            "kpi_query_errors",
            "KPI queries that failed at run time",
            k.query_errors.clone(),
        );
        registry.register(
            "influx_points_written",
            "Points InfluxDB accepted",
            k.written.clone(),
        );
        registry.register(
            "influx_write_retries",
            "InfluxDB writes retried (connection errors, 5xx, 429)",
            k.retries.clone(),
        );
        registry.register(
            "influx_points_rejected",
            "Points in batches InfluxDB refused with a 4xx (dropped, logged)",
            k.rejected.clone(),
        );
        registry.register(
            "influx_queued_points",
            "Points waiting for InfluxDB",
            k.queued.clone(),
        );
        registry.register(
            "influx_down",
            "1 while InfluxDB writes are failing",
            k.down.clone(),
        );
        registry.register(
            "input_paused",
            "1 while input is paused because InfluxDB is a full buffer behind",
            k.input_paused.clone(),
        );
        registry.register("events_received", "Input records read", m.received.clone());
        registry.register(
            "duplicate_events",
            "Events dropped as duplicates of an event_id",
            m.duplicates.clone(),
        );
        registry.register(
            "suppressed_replays",
            "Outputs not written again after a crash because they already were",
            m.suppressed.clone(),
        );
        registry.register(
            "skipped_offsets",
            "Offsets the source jumped over",
            m.skipped_offsets.clone(),
        );
        registry.register(
            "rejected_events",
            "Inputs sent to the dead-letter or late topic, by reason (late = beyond allowed lateness)",
            m.rejected.clone(),
        );
        registry.register(
            "outcomes",
            "Verifications decided, by outcome",
            m.outcomes.clone(),
        );
        registry.register(
            "features",
            "Feature vectors computed (one per request)",
            m.features.clone(),
        );
        registry.register(
            "consumer_lag",
            "Records in the input partition not processed yet",
            m.lag.clone(),
        );
        registry.register(
            "watermark_delay_seconds",
            "Wall clock minus the partition's watermark",
            m.watermark_delay.clone(),
        );
        registry.register(
            "open_verifications",
            "Verifications in flight (state size)",
            m.open.clone(),
        );
        registry.register(
            "decided_verifications_remembered",
            "Decided verifications kept to recognise stragglers (state size)",
            m.decided.clone(),
        );
        registry.register(
            "checkpoint_duration_seconds",
            "Time to save a checkpoint",
            m.checkpoint_seconds.clone(),
        );
        registry.register(
            "checkpoint_bytes",
            "Size of the last checkpoint round",
            m.checkpoint_bytes.clone(),
        );
        registry.register(
            "route_attempts",
            "Attempts of decided verifications per country and provider, all instances (lifetime)",
            m.route_attempts.clone(),
        );
        registry.register(
            "route_delivery_rate",
            "Delivered share of receipts per route, decayed with the window's half-life, all instances",
            m.route_delivery.clone(),
        );
        registry.register(
            "route_conversion_rate",
            "Approved share of attempts per route, decayed, all instances",
            m.route_conversion.clone(),
        );
        registry.register(
            "route_latency_seconds",
            "Mean delivery latency per route, decayed, all instances",
            m.route_latency.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn observe(&self, output: &Output) {
        match output {
            Output::Outcome(o) => {
                let outcome = match o.outcome {
                    OutcomeKind::Approved => "approved",
                    OutcomeKind::Expired => "expired",
                };
                self.outcomes
                    .get_or_create(&OutcomeLabel {
                        outcome: outcome.into(),
                    })
                    .inc();
            }
            Output::Rejected(r) => {
                let reason = r.rejection.reason.as_str().to_owned();
                self.rejected.get_or_create(&ReasonLabel { reason }).inc();
            }
            Output::Kpi(_) | Output::Alert(_) | Output::Forecast(_) => {}
            Output::Features(_) => {
                self.features.inc();
            }
            Output::Scored(_) => {}
        }
    }

    /// Publishes engine totals (as counter increments) and per-partition gauges.
    pub fn publish(&self, totals: &PartitionStats, partitions: &[PartitionGauges]) {
        if let Ok(mut last) = self.last.lock() {
            self.received
                .inc_by(totals.received.saturating_sub(last.received));
            self.duplicates
                .inc_by(totals.duplicates.saturating_sub(last.duplicates));
            self.suppressed
                .inc_by(totals.suppressed.saturating_sub(last.suppressed));
            self.skipped_offsets
                .inc_by(totals.skipped_offsets.saturating_sub(last.skipped_offsets));
            *last = totals.clone();
        }
        for p in partitions {
            let label = PartitionLabel {
                partition: p.partition.to_string(),
            };
            self.lag.get_or_create(&label).set(p.lag.max(0));
            self.open.get_or_create(&label).set(p.open);
            self.decided.get_or_create(&label).set(p.decided);
            if let Some(delay) = p.watermark_delay_s {
                self.watermark_delay.get_or_create(&label).set(delay);
            }
        }
    }

    /// The global route view (every instance's partitions).
    pub fn publish_routes(&self, routes: &BTreeMap<(String, String), RouteSnapshot>) {
        for ((country, provider), s) in routes {
            let label = RouteLabel {
                country: country.clone(),
                provider: provider.clone(),
            };
            self.route_attempts
                .get_or_create(&label)
                .set(s.total.sent as i64);
            for ((window, _), c) in HALF_LIVES.iter().zip(s.decayed) {
                let label = RouteWindowLabel {
                    country: country.clone(),
                    provider: provider.clone(),
                    window: (*window).to_owned(),
                };
                if let Some(rate) = c.delivery_rate() {
                    self.route_delivery.get_or_create(&label).set(rate);
                }
                if let Some(rate) = c.conversion_rate() {
                    self.route_conversion.get_or_create(&label).set(rate);
                }
                if let Some(ms) = c.mean_latency_ms() {
                    self.route_latency.get_or_create(&label).set(ms / 1000.0);
                }
            }
        }
    }

    pub fn checkpointed(&self, seconds: f64, bytes: u64) {
        self.checkpoint_seconds.observe(seconds);
        self.checkpoint_bytes.set(bytes as i64);
    }

    pub fn publish_kpi(&self, t: &KpiTotals) {
        let now = [t.windows, t.query_errors, t.written, t.retries, t.rejected];
        let k = &self.kpi;
        let mut last = k.last.lock().unwrap_or_else(|e| e.into_inner());
        let counters = [
            &k.windows,
            &k.query_errors,
            &k.written,
            &k.retries,
            &k.rejected,
        ];
        for ((c, n), l) in counters.iter().zip(now).zip(last.iter()) {
            c.inc_by(n.saturating_sub(*l));
        }
        *last = now;
        k.queued.set(t.queued as i64);
        k.down.set(i64::from(t.down));
        k.input_paused.set(i64::from(t.input_paused));
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The driver's stage that keeps [`Metrics`] current: output counters as
/// outputs pass, engine gauges (lag, watermark delay, state) and the global
/// route view every tick, checkpoint timings.
pub struct MetricsStage {
    pub metrics: Arc<Metrics>,
    /// Where the input's ends are read for lag.
    pub log: Option<Arc<dyn OutputLog>>,
    pub input: String,
    pub routes: Option<Arc<GlobalRouteStats>>,
}

impl Stage for MetricsStage {
    fn observe(&mut self, output: &Output) {
        self.metrics.observe(output);
    }

    fn tick(&mut self, engine: &Engine) {
        let ends: HashMap<i32, i64> = self
            .log
            .as_ref()
            .and_then(|log| log.high_watermarks(&self.input).ok())
            .map(|v| v.into_iter().collect())
            .unwrap_or_default();
        let now = now_millis();
        let views: Vec<PartitionGauges> = engine
            .partition_views()
            .into_iter()
            .map(|v| PartitionGauges {
                partition: v.partition,
                lag: ends.get(&v.partition).map_or(0, |end| end - v.next_offset),
                watermark_delay_s: v.watermark.map(|w| (now - w) as f64 / 1000.0),
                open: v.open as i64,
                decided: v.decided as i64,
            })
            .collect();
        self.metrics.publish(&engine.stats(), &views);
        if let Some(routes) = &self.routes {
            self.metrics.publish_routes(&routes.merged(&self.input));
        }
        self.metrics.set_ready(!views.is_empty());
    }

    fn checkpointed(&mut self, report: &CheckpointReport) {
        self.metrics
            .checkpointed(report.duration.as_secs_f64(), report.bytes);
    }
}

/// The metrics endpoints, served on a thread of their own until stopped.
pub struct MetricsServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `listen` now (a port clash is reported at start, not lost in a
    /// thread) and serves `metrics` from a background thread.
    pub fn start(listen: &str, metrics: Arc<Metrics>) -> Result<MetricsServer> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .context("starting the metrics runtime")?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(listen))
            .with_context(|| format!("binding metrics.listen = {listen}"))?;
        let addr = listener
            .local_addr()
            .context("reading the metrics address")?;
        let app = Router::new()
            .route("/metrics", get(metrics_text))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready))
            .with_state(metrics);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                let served = runtime.block_on(async {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await
                });
                if let Err(e) = served {
                    tracing::error!(error = %e, "metrics endpoint stopped");
                }
            })
            .context("starting the metrics thread")?;
        Ok(MetricsServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops serving and waits for the thread.
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn metrics_text(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    match m.render() {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn ready(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no partitions assigned yet\n",
        )
    }
}
