//! Demand forecasts: requests per hour per tenant × country for the next 24 hours,
//! with prediction intervals, from an additive Holt-Winters model with daily
//! seasonality, updated online as each hour completes.
//!
//! Hourly counts come from the KPI windows' first emissions (every request of a
//! window is known then), so they are exact and event-time based; an hour is
//! complete once the watermark passes its end. The first (partial) hour of a stream
//! is skipped. Smoothing parameters are fixed (α 0.3, β 0.01, γ 0.25); the interval
//! uses the running variance of one-step errors, widened with the horizon as for
//! simple exponential smoothing (σ²·(1 + (h−1)·α²)), at 95 %.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Text;
use crate::time::EventTime;

pub const HOUR_MS: i64 = 3_600_000;
pub const SEASON: usize = 24;
pub const HORIZON: usize = 24;
const ALPHA: f64 = 0.3;
const BETA: f64 = 0.01;
const GAMMA: f64 = 0.25;
const Z95: f64 = 1.96;

/// One forecast point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastPoint {
    /// Start of the forecast hour.
    pub target: EventTime,
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
    /// Seconds from when it was made to the target hour's start.
    pub horizon_s: i64,
}

/// The forecasts for one key, made when an hour completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub partition: i32,
    pub tenant: Text,
    pub country: Text,
    /// The end of the hour just completed: when the forecast was made.
    pub made_at: EventTime,
    /// The count of the hour just completed (for accuracy reports).
    pub observed: f64,
    pub points: Vec<ForecastPoint>,
}

/// Holt-Winters state of one series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HoltWinters {
    /// The first day, collected to initialise the seasonals.
    warmup: Vec<f64>,
    level: f64,
    trend: f64,
    seasonal: Vec<f64>,
    /// Index into `seasonal` of the next observation.
    phase: usize,
    /// EWMA of squared one-step errors.
    error_var: f64,
    observations: u64,
}

impl HoltWinters {
    pub fn observe(&mut self, y: f64) {
        self.observations += 1;
        if self.seasonal.is_empty() {
            self.warmup.push(y);
            if self.warmup.len() == SEASON {
                let mean = self.warmup.iter().sum::<f64>() / SEASON as f64;
                self.level = mean;
                self.trend = 0.0;
                self.seasonal = self.warmup.iter().map(|v| v - mean).collect();
                self.error_var = self.warmup.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
                    / SEASON as f64
                    * 0.25;
                self.warmup.clear();
                self.phase = 0;
            }
            return;
        }
        let s = self.seasonal[self.phase];
        let predicted = self.level + self.trend + s;
        let error = y - predicted;
        self.error_var = 0.9 * self.error_var + 0.1 * error * error;
        let level = ALPHA * (y - s) + (1.0 - ALPHA) * (self.level + self.trend);
        self.trend = BETA * (level - self.level) + (1.0 - BETA) * self.trend;
        self.seasonal[self.phase] = GAMMA * (y - level) + (1.0 - GAMMA) * s;
        self.level = level;
        self.phase = (self.phase + 1) % SEASON;
    }

    /// (value, lower, upper) for `h` = 1..=HORIZON hours ahead; before a full day
    /// of history, the mean so far with a wide interval.
    pub fn forecast(&self, h: usize) -> (f64, f64, f64) {
        if self.seasonal.is_empty() {
            let n = self.warmup.len().max(1) as f64;
            let mean = self.warmup.iter().sum::<f64>() / n;
            let var = self.warmup.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            let half = Z95 * var.sqrt().max(mean.sqrt());
            return (mean, (mean - half).max(0.0), mean + half);
        }
        let s = self.seasonal[(self.phase + h - 1) % SEASON];
        let value = (self.level + h as f64 * self.trend + s).max(0.0);
        let var = self.error_var * (1.0 + (h as f64 - 1.0) * ALPHA * ALPHA);
        // Counts are at least Poisson-noisy.
        let half = Z95 * var.max(value).sqrt();
        (value, (value - half).max(0.0), value + half)
    }

    pub fn is_warm(&self) -> bool {
        !self.seasonal.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Forecaster {
    /// Hour start → key → requests counted so far.
    hours: BTreeMap<EventTime, BTreeMap<(Text, Text), u64>>,
    models: BTreeMap<(Text, Text), HoltWinters>,
    /// The next hour to complete; `None` until the first full hour is known.
    next_hour: Option<EventTime>,
    /// The latest hour with a counted window: hours after it are not completed
    /// yet even when the watermark jumps far ahead (a drained or idle stream).
    latest_hour: Option<EventTime>,
}

impl Forecaster {
    /// Requests of one KPI window (first emission), by tenant and country.
    pub fn add(&mut self, window_start: EventTime, counts: &BTreeMap<(Text, Text), u64>) {
        let hour = window_start.div_euclid(HOUR_MS) * HOUR_MS;
        if self.next_hour.is_none() {
            // The stream's first hour is partial unless it starts on the hour.
            self.next_hour = Some(if window_start == hour {
                hour
            } else {
                hour + HOUR_MS
            });
        }
        if self.next_hour.is_some_and(|next| hour < next) {
            return;
        }
        self.latest_hour = Some(self.latest_hour.map_or(hour, |h| h.max(hour)));
        let bucket = self.hours.entry(hour).or_default();
        for (key, n) in counts {
            *bucket.entry(key.clone()).or_default() += n;
        }
    }

    /// Hours completed by `watermark`: update every model and forecast.
    pub fn advance(&mut self, partition: i32, watermark: EventTime) -> Vec<Forecast> {
        let mut out = Vec::new();
        while let Some(hour) = self.next_hour {
            let end = hour + HOUR_MS;
            if watermark < end || self.latest_hour.is_none_or(|latest| hour > latest) {
                break;
            }
            let counts = self.hours.remove(&hour).unwrap_or_default();
            for key in counts.keys() {
                self.models.entry(key.clone()).or_default();
            }
            for (key, model) in &mut self.models {
                let y = counts.get(key).copied().unwrap_or(0) as f64;
                model.observe(y);
                let points = (1..=HORIZON)
                    .map(|h| {
                        let (value, lower, upper) = model.forecast(h);
                        let target = end + (h as i64 - 1) * HOUR_MS;
                        ForecastPoint {
                            target,
                            value,
                            lower,
                            upper,
                            horizon_s: (target - end) / 1000,
                        }
                    })
                    .collect();
                out.push(Forecast {
                    partition,
                    tenant: key.0.clone(),
                    country: key.1.clone(),
                    made_at: end,
                    observed: y,
                    points,
                });
            }
            self.next_hour = Some(end);
        }
        out
    }

    /// The next hour's forecast for a tenant × country, once its model has a day
    /// of history (for volume alerts): requests per hour.
    pub fn expected_per_hour(&self, key: &(Text, Text)) -> Option<f64> {
        let m = self.models.get(key).filter(|m| m.is_warm())?;
        Some(m.forecast(1).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_daily_pattern() {
        let mut m = HoltWinters::default();
        let pattern: Vec<f64> = (0..24)
            .map(|h| 100.0 + 80.0 * ((h as f64) / 24.0 * std::f64::consts::TAU).sin())
            .collect();
        for _day in 0..5 {
            for y in &pattern {
                m.observe(*y);
            }
        }
        for h in 1..=24 {
            let (v, lo, hi) = m.forecast(h);
            let want = pattern[(h - 1) % 24];
            assert!((v - want).abs() < 5.0, "h={h}: {v} vs {want}");
            assert!(lo <= v && v <= hi);
        }
    }

    #[test]
    fn skips_the_partial_first_hour_and_counts_zero_hours() {
        // A drained stream (watermark at the end of time) completes no empty hours
        // past its data.
        let mut g = Forecaster::default();
        g.add(
            0,
            &BTreeMap::from([((Text::from("t"), Text::from("BR")), 1u64)]),
        );
        assert_eq!(g.advance(0, i64::MAX).len(), 1);
        let mut f = Forecaster::default();
        let key = (Text::from("acme"), Text::from("BR"));
        let one = BTreeMap::from([(key.clone(), 5u64)]);
        f.add(HOUR_MS / 2, &one); // partial hour 0: skipped
        f.add(HOUR_MS, &one);
        f.add(HOUR_MS + 60_000, &one);
        f.add(HOUR_MS * 3, &one); // data in hour 3: hour 2 is known to be empty
        assert!(f.advance(0, HOUR_MS * 2 - 1).is_empty());
        let made = f.advance(0, HOUR_MS * 3);
        assert_eq!(made.len(), 2, "hour 1 (10) and hour 2 (0)");
        assert_eq!(made[0].observed, 10.0);
        assert_eq!(made[1].observed, 0.0);
        assert_eq!(made[1].points.len(), HORIZON);
        assert_eq!(made[1].points[0].target, HOUR_MS * 3);
        assert_eq!(made[1].points[0].horizon_s, 0);
    }
}
