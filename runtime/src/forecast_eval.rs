//! `veriflow forecast-eval`: how good the demand forecasts are on simulated traffic.
//!
//! Runs days of seeded traffic through the pipeline in-process (KPI windows on),
//! keeps every forecast made at each hour's end, and scores them against the hourly
//! counts that then happened, beside the seasonal-naive forecast (the same hour a
//! day earlier), the standard baseline for daily-seasonal series. Reports MASE
//! (mean absolute error over the mean absolute error of the one-day-lag naive
//! forecast in the same period: < 1 beats it) and sMAPE, by horizon.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use veriflow_pipelines::forecast::{Forecast, HOUR_MS};
use veriflow_pipelines::{Output, PipelineConfig};
use veriflow_simulator::{SimConfig, SimItem, Simulator};

use crate::driver::Stage;
use crate::error::Result;
use crate::replay::Replay;

/// Collects every forecast a replay makes.
#[derive(Default)]
struct Forecasts(Vec<Forecast>);

impl Stage for Forecasts {
    fn observe(&mut self, output: &Output) {
        if let Output::Forecast(f) = output {
            self.0.push(f.clone());
        }
    }
}

/// What to simulate and score.
pub struct EvalOptions {
    pub days: u32,
    /// Verification requests per simulated second.
    pub rate: f64,
    pub seed: u64,
    /// Days of history before scoring starts.
    pub warmup_days: u32,
}

#[derive(Default)]
struct Errors {
    abs: f64,
    naive_abs: f64,
    smape: f64,
    naive_smape: f64,
    n: f64,
}

pub fn forecast_eval(o: EvalOptions) -> Result<()> {
    crate::ensure!(
        o.days > o.warmup_days + 1,
        "--days must exceed --warmup-days by 2 or more"
    );
    let pipeline = PipelineConfig {
        kpi_window_ms: Some(60_000),
        ..PipelineConfig::default()
    };
    let sim = SimConfig {
        seed: o.seed,
        rate: o.rate,
        duration_ms: Some(i64::from(o.days) * 24 * HOUR_MS),
        fraud_share: 0.0,
        ..SimConfig::default()
    };
    let start = sim.start;
    eprintln!(
        "forecast-eval: simulating {} days at {} requests/s ...",
        o.days, o.rate
    );
    let mut sim = Simulator::new(sim);
    let events = std::iter::from_fn(move || sim.next()).filter_map(|item| match item {
        SimItem::Event(e) => Some((None::<Vec<u8>>, e.payload)),
        SimItem::Truth(_) => None,
    });
    let replay = Replay {
        pipeline,
        partitions: 1,
        batch: 4096,
    };
    let (Forecasts(forecasts), _) =
        replay.run(events, Forecasts::default(), &AtomicBool::new(false))?;

    // Observed count per (tenant, country, hour start), from the forecasts' own
    // record of each completed hour.
    let mut observed: BTreeMap<(String, String, i64), f64> = BTreeMap::new();
    for f in &forecasts {
        observed.insert(
            (
                f.tenant.to_string(),
                f.country.to_string(),
                f.made_at - HOUR_MS,
            ),
            f.observed,
        );
    }
    let score_from = start + i64::from(o.warmup_days) * 24 * HOUR_MS;
    let mut by_horizon: BTreeMap<usize, Errors> = BTreeMap::new();
    for f in forecasts.iter().filter(|f| f.made_at >= score_from) {
        for (h, point) in f.points.iter().enumerate() {
            let key = |t: i64| (f.tenant.to_string(), f.country.to_string(), t);
            let (Some(y), Some(naive)) = (
                observed.get(&key(point.target)),
                observed.get(&key(point.target - 24 * HOUR_MS)),
            ) else {
                continue;
            };
            let e = by_horizon.entry(h + 1).or_default();
            e.abs += (y - point.value).abs();
            e.naive_abs += (y - naive).abs();
            e.smape += smape(*y, point.value);
            e.naive_smape += smape(*y, *naive);
            e.n += 1.0;
        }
    }
    println!("horizon  forecasts  MASE (Holt-Winters vs seasonal naive)  sMAPE HW  sMAPE naive");
    let mut total = Errors::default();
    for (h, e) in &by_horizon {
        if [1, 3, 6, 12, 24].contains(h) {
            println!("{}", e.row(&format!("{h:>5} h")));
        }
        total.add(e);
    }
    crate::ensure!(
        total.n > 0.0,
        "no forecast could be scored; try more --days"
    );
    println!("{}", total.row("  all  "));
    Ok(())
}

impl Errors {
    fn add(&mut self, e: &Errors) {
        self.abs += e.abs;
        self.naive_abs += e.naive_abs;
        self.smape += e.smape;
        self.naive_smape += e.naive_smape;
        self.n += e.n;
    }

    /// One report line: forecasts, MASE, sMAPE of ours and of the naive forecast.
    fn row(&self, label: &str) -> String {
        format!(
            "{label}  {:>9}  {:>37.3}  {:>7.1}%  {:>10.1}%",
            self.n,
            self.abs / self.naive_abs.max(1e-9),
            100.0 * self.smape / self.n,
            100.0 * self.naive_smape / self.n
        )
    }
}

/// Symmetric absolute percentage error of one forecast (0 when both are 0).
fn smape(y: f64, f: f64) -> f64 {
    let d = y.abs() + f.abs();
    if d == 0.0 {
        0.0
    } else {
        2.0 * (y - f).abs() / d
    }
}
