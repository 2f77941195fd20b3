//! The KPI stage of `veriflow run`: KPI window batches from the pipeline →
//! DataFusion SQL (`veriflow-analytics`) → points → the InfluxDB sink.

use std::time::Duration;

use anyhow::Context;
use veriflow_analytics::KpiEngine;
use veriflow_connectors::influx::{Backlog, FieldValue, InfluxSink, InfluxStats, Point};
use veriflow_pipelines::alerts::Alert;
use veriflow_pipelines::forecast::Forecast;
use veriflow_pipelines::kpi::KpiWindowBatch;

use crate::config::Config;

pub struct KpiStage {
    engine: KpiEngine,
    sink: InfluxSink,
    provisional: bool,
    pub windows_emitted: u64,
    pub errors: u64,
}

impl KpiStage {
    /// `None` when KPIs are off (`kpi.window = "off"` or no `influx.url`). A bad
    /// KPI SQL file or InfluxDB setting is an error here, before any input is read.
    pub fn start(config: &Config) -> anyhow::Result<Option<KpiStage>> {
        if config.kpi_window_ms()?.is_none() {
            return Ok(None);
        }
        let dir =
            (!config.kpi.sql_dir.is_empty()).then(|| std::path::Path::new(&config.kpi.sql_dir));
        let engine = KpiEngine::load(dir).context("loading the KPI SQL")?;
        let influx = config.influx()?;
        let sink = InfluxSink::start(influx).context("starting the InfluxDB sink")?;
        tracing::info!(
            endpoint = %sink.endpoint(),
            queries = ?engine.queries().iter().map(|q| q.measurement.as_str()).collect::<Vec<_>>(),
            "KPIs to InfluxDB"
        );
        Ok(Some(KpiStage {
            engine,
            sink,
            provisional: config.kpi.provisional,
            windows_emitted: 0,
            errors: 0,
        }))
    }

    /// The hopping windows the KPI files declare; each size and step must be a
    /// whole number of KPI windows.
    pub fn hops(&self, window_ms: Option<i64>) -> anyhow::Result<Vec<(i64, i64)>> {
        let window = window_ms.unwrap_or(60_000);
        for q in self.engine.queries() {
            if let Some((size, every)) = q.hop {
                anyhow::ensure!(
                    size % window == 0 && every % window == 0,
                    "{}: a hopping window's size and step must be multiples of kpi.window ({} ms)",
                    q.path,
                    window
                );
            }
        }
        Ok(self.engine.hops())
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

    pub fn close(self, timeout: Duration) {
        self.sink.close(timeout);
    }
}
