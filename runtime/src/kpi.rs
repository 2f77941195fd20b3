//! The KPI stage: KPI window batches from the pipeline → DataFusion SQL
//! (`veriflow-analytics`) → points → the InfluxDB sink; alerts and forecasts
//! as points too.
//!
//! Planned apart from started: [`KpiStage::plan`] loads and plans the SQL
//! (a bad file is an error before anything is created), [`KpiPlan::start`]
//! starts the sink's writer thread.

use std::time::Duration;

use crate::error::{Context, Result};
use veriflow_analytics::KpiEngine;
use veriflow_connectors::influx::{Backlog, FieldValue, InfluxSink, InfluxStats, Point};
use veriflow_pipelines::alerts::Alert;
use veriflow_pipelines::forecast::Forecast;
use veriflow_pipelines::kpi::KpiWindowBatch;

use crate::config::Config;

/// The KPI queries, planned; nothing started yet.
pub struct KpiPlan {
    engine: KpiEngine,
    influx: veriflow_connectors::influx::InfluxConfig,
    provisional: bool,
    hops: Vec<(i64, i64)>,
}

impl KpiPlan {
    /// The hopping windows the KPI files declare (size, every), in ms.
    pub fn hops(&self) -> &[(i64, i64)] {
        &self.hops
    }

    /// Starts the InfluxDB sink.
    pub fn start(self) -> Result<KpiStage> {
        let sink = InfluxSink::start(self.influx).context("starting the InfluxDB sink")?;
        tracing::info!(
            endpoint = %sink.endpoint(),
            queries = ?self.engine.queries().iter().map(|q| q.measurement.as_str()).collect::<Vec<_>>(),
            "KPIs to InfluxDB"
        );
        Ok(KpiStage {
            engine: self.engine,
            sink,
            provisional: self.provisional,
            metrics: None,
            windows_emitted: 0,
            errors: 0,
        })
    }
}

pub struct KpiStage {
    engine: KpiEngine,
    sink: InfluxSink,
    /// Where its counters are published, when metrics are served.
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    provisional: bool,
    pub windows_emitted: u64,
    pub errors: u64,
}

impl KpiStage {
    /// `None` when KPIs are off (`kpi.window = "off"` or no `influx.url`). A bad
    /// KPI SQL file, or a hopping window that is not a whole number of KPI
    /// windows, is an error here, before anything is created.
    pub fn plan(config: &Config) -> Result<Option<KpiPlan>> {
        let Some(window) = config.kpi_window() else {
            return Ok(None);
        };
        let window = window.as_millis() as i64;
        let engine =
            KpiEngine::load(config.kpi.sql_dir.as_deref()).context("loading the KPI SQL")?;
        for q in engine.queries() {
            if let Some((size, every)) = q.hop {
                crate::ensure!(
                    size % window == 0 && every % window == 0,
                    "{}: a hopping window's size and step must be multiples of kpi.window ({} ms)",
                    q.path,
                    window
                );
            }
        }
        Ok(Some(KpiPlan {
            hops: engine.hops(),
            engine,
            influx: config.influx.clone(),
            provisional: config.kpi.provisional,
        }))
    }

    pub fn handle(&mut self, batch: &KpiWindowBatch) {
        if !self.provisional && !batch.is_final {
            return;
        }
        match self.engine.evaluate(batch) {
            Ok(points) => {
                self.windows_emitted += 1;
                self.sink.send(points);
            }
            Err(e) => {
                // A query that plans but fails at run time (a cast, a division):
                // loud, counted, and the engine goes on with the other windows.
                self.errors += 1;
                tracing::error!(error = %e, window_start = batch.window_start, "KPI query failed");
            }
        }
    }

    /// An alert as a `veriflow_alert` point (contract §2), at its window's start.
    pub fn alert(&mut self, a: &Alert) {
        let point = Point::new("veriflow_alert", a.window_start)
            .tag("tenant", a.tenant.as_str())
            .tag("rule", a.rule.as_str())
            .tag("severity", a.severity.as_str())
            .tag("country", a.country.as_str())
            .tag("provider", a.provider.as_str())
            .field("value", FieldValue::Float(a.value))
            .field("threshold", FieldValue::Float(a.threshold))
            .field("message", FieldValue::Text(a.message.clone()));
        self.sink.send([point]);
    }

    /// Forecasts as `veriflow_forecast` points (contract §2), one per target hour;
    /// a newer forecast of the same hour overwrites the older one.
    pub fn forecast(&mut self, f: &Forecast) {
        let points = f.points.iter().map(|p| {
            Point::new("veriflow_forecast", p.target)
                .tag("tenant", f.tenant.as_str())
                .tag("country", f.country.as_str())
                .tag("metric", "requests_per_hour")
                .field("value", FieldValue::Float(p.value))
                .field("lower", FieldValue::Float(p.lower))
                .field("upper", FieldValue::Float(p.upper))
                .field("horizon_s", FieldValue::Int(p.horizon_s))
        });
        self.sink.send(points);
    }

    /// Lock-free view of the sink's backlog, for the input loop's pressure check.
    pub fn backlog(&self) -> Backlog {
        self.sink.backlog()
    }

    pub fn queued(&self) -> usize {
        self.sink.queued()
    }

    /// Waits until every point emitted so far is written; false on timeout.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.sink.flush(timeout)
    }

    pub fn stats(&self) -> &InfluxStats {
        self.sink.stats()
    }

    /// Publishes its counters into `metrics` every tick.
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

impl crate::driver::Stage for KpiStage {
    fn observe(&mut self, output: &veriflow_pipelines::Output) {
        use veriflow_pipelines::Output;
        match output {
            Output::Kpi(k) => self.handle(k),
            Output::Forecast(f) => self.forecast(f),
            Output::Alert(a) => {
                tracing::warn!(rule = %a.rule, tenant = %a.tenant, "alert: {}", a.message);
                self.alert(a);
            }
            _ => {}
        }
    }

    fn durable(&mut self, timeout: Duration) -> bool {
        let flushed = self.flush(timeout);
        if !flushed {
            tracing::warn!(
                queued = self.queued(),
                error = self.stats().last_error().unwrap_or_default(),
                "checkpoint deferred: InfluxDB has not accepted the KPI points before it"
            );
        }
        flushed
    }

    /// The points emitted so far must reach InfluxDB, however long it is down
    /// (a second Ctrl-C leaves at once; they are then re-emitted from the
    /// previous checkpoint on restart).
    fn drain(&mut self) {
        let mut waited = Duration::ZERO;
        while !self.flush(Duration::from_secs(1)) {
            waited += Duration::from_secs(1);
            if waited.as_secs() % 10 == 1 {
                tracing::warn!(
                    queued = self.queued(),
                    error = self.stats().last_error().unwrap_or_default(),
                    "waiting for InfluxDB to accept the KPI points before the final checkpoint \
                     (Ctrl-C again leaves now; they are re-emitted on restart)"
                );
            }
        }
    }

    fn tick(&mut self, _engine: &veriflow_pipelines::Engine) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(metrics) = &self.metrics {
            let s = self.sink.stats();
            metrics.publish_kpi(&crate::metrics::KpiTotals {
                windows: self.windows_emitted,
                query_errors: self.errors,
                written: s.written.load(Relaxed),
                retries: s.retries.load(Relaxed),
                rejected: s.rejected.load(Relaxed),
                queued: self.sink.queued(),
                down: s.down.load(Relaxed),
                input_paused: self.sink.backlog().pressing().is_some(),
            });
        }
    }

    fn finish(&mut self, _engine: &veriflow_pipelines::Engine) {
        self.sink.close(Duration::from_secs(30));
    }
}
